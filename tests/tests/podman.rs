//! podman drives `rbox-runc` (`podman --runtime`) as it drives crun: run, run -it, exec,
//! stop, kill. podman gets its own storage, run directory and containers.conf inside a
//! lab host, so nothing touches the machine's podman state.

use std::path::PathBuf;
use std::process::{Command, Output};

use rbox_tests::{Host, bin, expect_ok, have, test_image_dir};

struct Podman {
    host: Host,
    dir: PathBuf,
}

impl Podman {
    fn new() -> Podman {
        let host = Host::new("podman");
        let dir = host.dir().join("podman");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        // podman's defaults ask for more open files and processes than this machine's
        // hard limits allow (root lacks CAP_SYS_RESOURCE here).
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        Podman { host, dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.host.command("podman");
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        cmd.args(["--root", self.path("root").as_str()])
            .args(["--runroot", self.path("runroot").as_str()])
            .args(["--tmpdir", self.path("tmp").as_str()])
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--runtime"])
            .arg(bin("rbox-runc"))
            .args(args);
        cmd
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// The podman command line as one shell string (for `script`).
    fn shell(&self, args: &str) -> String {
        format!(
            "CONTAINERS_CONF={conf} podman --root {root} --runroot {run} --tmpdir {tmp} \
             --storage-driver vfs --cgroup-manager cgroupfs --events-backend file \
             --runtime {rt} {args}",
            conf = self.dir.join("containers.conf").display(),
            root = self.path("root"),
            run = self.path("runroot"),
            tmp = self.path("tmp"),
            rt = bin("rbox-runc").display()
        )
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        expect_ok(&format!("podman {}", args.join(" ")), self.run(args))
    }

    /// `podman run` arguments common to every container of the test.
    fn run_args<'a>(&'a self, cgroup_parent: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["run", "--network", "none", "--cgroup-parent", cgroup_parent];
        v.extend_from_slice(rest);
        v
    }
}

#[test]
fn podman_runs_containers_with_rbox_runc() {
    if !have("podman") {
        eprintln!("skipped: podman is not installed (scripts/install-deps installs it)");
        return;
    }
    let p = Podman::new();
    let archive = test_image_dir().join("busybox.tar");
    p.ok(&["load", "-i", archive.to_str().unwrap()]);
    let parent = format!("/{}", p.host.cgroup_parent());

    // run --rm: the output, and the exit code.
    let out = p.ok(&p.run_args(&parent, &["--rm", "busybox", "echo", "hello"]));
    assert_eq!(out, "hello\n");
    let out = p.run(&p.run_args(&parent, &["--rm", "busybox", "sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(3));
    // A missing command is podman's 127, from runc's wording.
    let out = p.run(&p.run_args(&parent, &["--rm", "busybox", "no-such-command"]));
    assert_eq!(out.status.code(), Some(127));

    // run -it, through a pseudo-terminal of our own (`script`). podman 4.3 with conmon
    // 2.1 loses a terminal's output now and then when the container exits within
    // milliseconds of starting, with runc as with rbox-runc (about 1 run in 5 here), so
    // the container lingers before it exits.
    let out = p.host.sh(&format!(
        "script -qec \"{}\" /dev/null",
        p.shell(&format!(
            "run -it --rm --network none --cgroup-parent {parent} busybox \
             sh -c 'tty; [ -t 0 ] && echo interactive; sleep 1; exit 5'"
        ))
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("/dev/pts/0"), "{text}{err}");
    assert!(text.contains("interactive"), "{text}");
    assert_eq!(out.status.code(), Some(5), "{text}");

    // A detached container: exec, exec -it, stop.
    let id = p.ok(&p.run_args(
        &parent,
        &["-d", "--name", "sleeper", "busybox", "sleep", "1000"],
    ));
    assert_eq!(id.trim().len(), 64);
    let out = p.ok(&[
        "exec",
        "sleeper",
        "sh",
        "-c",
        "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')",
    ]);
    assert_eq!(out, "pid1=sleep 1000\n");
    assert_eq!(
        p.run(&["exec", "sleeper", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    let out = p.host.sh(&format!(
        "script -qec \"{}\" /dev/null",
        p.shell("exec -it sleeper sh -c 'tty; exit 4'")
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"));
    assert_eq!(out.status.code(), Some(4));
    let out = p.ok(&["inspect", "--format", "{{.State.Status}}", "sleeper"]);
    assert_eq!(out.trim(), "running");
    // sleep as pid 1 ignores SIGTERM: stop falls back to SIGKILL, as with crun.
    p.ok(&["stop", "-t", "1", "sleeper"]);
    let out = p.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        "sleeper",
    ]);
    assert_eq!(out.trim(), "exited 137");

    // kill: the signal reaches the container's process, whose exit podman reports.
    p.ok(&p.run_args(
        &parent,
        &[
            "-d",
            "--name",
            "trapper",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 9' USR1; while true; do sleep 0.1; done",
        ],
    ));
    p.ok(&["kill", "--signal", "USR1", "trapper"]);
    assert_eq!(p.ok(&["wait", "trapper"]).trim(), "9");
    p.ok(&["start", "sleeper"]);
    p.ok(&["kill", "sleeper"]);
    assert_eq!(p.ok(&["wait", "sleeper"]).trim(), "137");

    p.ok(&["rm", "--all", "--force"]);
    assert_eq!(p.ok(&["ps", "--all", "--quiet"]), "");
}
