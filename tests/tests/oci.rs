//! End-to-end tests of `rbox-runc`: real bundles from the busybox test image, run inside
//! lab hosts, checked from inside the container (what the config asked for is what the
//! process sees).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use rbox_tests::{Host, bin, expect_ok, test_image_dir};
use serde_json::{Value, json};

fn runc(host: &Host, args: &[&str]) -> Output {
    host.command(bin("rbox-runc")).args(args).output().unwrap()
}

fn runc_ok(host: &Host, args: &[&str]) -> String {
    expect_ok(&format!("rbox-runc {}", args.join(" ")), runc(host, args))
}

/// Runs `rbox-runc ARGS`, which must fail; returns (exit code, stderr).
fn runc_fails(host: &Host, args: &[&str]) -> (i32, String) {
    let out = runc(host, args);
    assert!(
        !out.status.success(),
        "rbox-runc {} succeeded; stdout:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// For commands that leave a container running (create, run -d) with their stdio: the
/// container keeps what it inherits, so it gets files, never our pipes.
fn runc_bg_with(host: &Host, program: &Path, args: &[&str]) {
    let log = host.dir().join("runc-bg.log");
    let err = std::fs::File::create(&log).unwrap();
    let status = host
        .command(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "rbox-runc {} failed: {}",
        args.join(" "),
        std::fs::read_to_string(&log).unwrap()
    );
}

fn runc_bg(host: &Host, args: &[&str]) {
    runc_bg_with(host, &bin("rbox-runc"), args);
}

/// A bundle for container `id` in the lab's directory: `rbox-runc spec`'s config with
/// the test image as a read-only root, no terminal, `args` as the command, a tmpfs on
/// /tmp and the container's cgroup under the lab's cgroup parent; then `edit`.
fn bundle(host: &Host, id: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = host.dir().join(format!("bundle-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(bin("rbox-runc"))
        .args(["spec", "--bundle"])
        .arg(&dir)
        .output()
        .unwrap();
    expect_ok("rbox-runc spec", out);
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    v["root"]["path"] = json!(test_image_dir().join("rootfs"));
    v["process"]["terminal"] = json!(false);
    v["process"]["args"] = json!(args);
    v["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", host.cgroup_parent()));
    v["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "nodev", "mode=1777"]}),
    );
    edit(&mut v);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    dir
}

/// `rbox-runc run` of a new bundle; returns the output.
fn run(host: &Host, id: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> Output {
    let b = bundle(host, id, args, edit);
    runc(host, &["run", "--bundle", b.to_str().unwrap(), id])
}

fn run_ok(host: &Host, id: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> String {
    expect_ok(&format!("rbox-runc run {id}"), run(host, id, args, edit))
}

fn status_of(host: &Host, id: &str) -> String {
    let v: Value = serde_json::from_str(&runc_ok(host, &["state", id])).unwrap();
    v["status"].as_str().unwrap().to_string()
}

fn wait_status(host: &Host, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = |id| {
        let out = runc(host, &["state", id]);
        serde_json::from_slice::<Value>(&out.stdout)
            .map(|v| v["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    while status(id) != want {
        assert!(Instant::now() < deadline, "{id} never became {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A line of /proc/self/status (e.g. "CapBnd") as a number.
fn status_hex(text: &str, field: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {text}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_KILL: u64 = 1 << 5;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_NET_RAW: u64 = 1 << 13;

#[test]
fn pid1_hostname_mounts_and_no_view_of_the_host() {
    let host = Host::new("oci-basic");
    let id = "basic";
    let out = run_ok(
        &host,
        id,
        &[
            "sh",
            "-c",
            "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]'); \
             echo lo=$(cat /sys/class/net/lo/flags); \
             cat /proc/self/mountinfo; echo ---; cat /proc/1/cgroup; echo ---; \
             wc -c < /proc/keys; ls /sys/firmware | wc -l; \
             echo 1 > /proc/sys/kernel/domainname || echo sys-readonly; \
             touch /bin/x 2>/dev/null || echo root-readonly; touch /tmp/x && echo tmp-writable",
        ],
        |v| v["hostname"] = json!("inside"),
    );
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("host=inside\n"), "{out}");
    // Only sh and the command substitution's processes: no host PID is visible.
    let procs: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "{out}");
    // The new network namespace's loopback is up (IFF_UP), as runc and crun leave it.
    let lo = out.lines().find_map(|l| l.strip_prefix("lo=0x")).unwrap();
    assert_eq!(
        u32::from_str_radix(lo, 16).unwrap() & 1,
        1,
        "lo is down: {out}"
    );
    let mut parts = out.split("---\n");
    let mountinfo = parts.next().unwrap();
    // Only the container's own mounts: nothing of the host's tree (its /run, /work, ...).
    for line in mountinfo.lines().filter(|l| l.contains(" - ")) {
        let point = line.split_whitespace().nth(4).unwrap();
        assert!(
            point == "/"
                || ["/proc", "/dev", "/sys", "/tmp"]
                    .iter()
                    .any(|p| point.starts_with(p)),
            "host mount visible: {line}"
        );
    }
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap();
    assert!(root.contains(" ro,"), "root not read-only: {root}");
    for masked in ["/proc/keys", "/sys/firmware", "/proc/sys"] {
        assert!(
            mountinfo.contains(&format!(" {masked} ")),
            "{masked} not covered: {mountinfo}"
        );
    }
    let cgroups = parts.next().unwrap();
    let want = format!("/{}/{id}", host.cgroup_parent());
    assert!(
        cgroups.lines().all(|l| l.ends_with(&want)),
        "not all in {want}: {cgroups}"
    );
    let rest = parts.next().unwrap();
    assert!(
        rest.starts_with("0\n0\n"),
        "masked paths show nothing: {rest}"
    );
    assert!(rest.contains("sys-readonly") && rest.contains("root-readonly"));
    assert!(rest.contains("tmp-writable"), "{rest}");
    // Deleted with its cgroups and state.
    assert_eq!(runc_ok(&host, &["list", "-q"]), "");
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids{want}")).exists());
}

#[test]
fn process_settings_limits_sysctls_and_binds() {
    let host = Host::new("oci-process");
    let data = host.dir().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file"), "from the host\n").unwrap();
    let d = data.clone();
    let out = run_ok(
        &host,
        "proc",
        &[
            "sh",
            "-c",
            "umask; ulimit -n; id -G; cat /proc/self/oom_score_adj; \
             cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax; \
             cat /run/file; touch /run/x 2>/dev/null || echo bind-readonly; \
             cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
                 /sys/fs/cgroup/cpu/cpu.cfs_period_us; \
             echo $GREETING",
        ],
        move |v| {
            v["process"]["user"] =
                json!({"uid": 0, "gid": 0, "umask": 23, "additionalGids": [10, 20]});
            v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}]);
            v["process"]["oomScoreAdj"] = json!(123);
            v["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("GREETING=hi there"));
            v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456"});
            v["linux"]["resources"]["cpu"] =
                json!({"shares": 512, "quota": 50000, "period": 100000});
            v["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/run", "type": "bind", "source": d, "options": ["rbind", "ro"]}),
            );
        },
    );
    assert_eq!(
        out,
        "0027\n512\n0 10 20\n123\n1\n123456\nfrom the host\nbind-readonly\n512\n50000\n100000\nhi there\n"
    );
    assert!(!data.join("x").exists());
    // --no-pivot: the same container entered with MS_MOVE + chroot.
    let b = bundle(&host, "nopivot", &["sh", "-c", "echo $$; ls /"], |_| {});
    let out = runc_ok(
        &host,
        &[
            "run",
            "--no-pivot",
            "--bundle",
            b.to_str().unwrap(),
            "nopivot",
        ],
    );
    assert!(out.starts_with("1\n") && out.contains("bin\n"), "{out}");
}

#[test]
fn namespaces_joined_by_path() {
    let host = Host::new("oci-join");
    let a = bundle(&host, "a", &["sleep", "1000"], |v| {
        v["hostname"] = json!("first")
    });
    runc_bg(&host, &["run", "-d", "--bundle", a.to_str().unwrap(), "a"]);
    let state: Value = serde_json::from_str(&runc_ok(&host, &["state", "a"])).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    // The second container shares the first's pid, network, ipc and uts namespaces.
    let out = run_ok(
        &host,
        "b",
        &[
            "sh",
            "-c",
            "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
             for n in net ipc uts pid; do \
               [ $(readlink /proc/1/ns/$n) = $(readlink /proc/self/ns/$n) ] && echo same-$n; done; \
             [ $(readlink /proc/1/ns/mnt) != $(readlink /proc/self/ns/mnt) ] && echo own-mnt",
        ],
        |v| {
            v["hostname"] = json!(null);
            v["linux"]["namespaces"] = json!([
                {"type": "mount"},
                {"type": "pid", "path": format!("/proc/{pid}/ns/pid")},
                {"type": "network", "path": format!("/proc/{pid}/ns/net")},
                {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")},
                {"type": "uts", "path": format!("/proc/{pid}/ns/uts")}
            ]);
        },
    );
    assert!(out.starts_with("first\nsleep 1000 \n"), "{out}");
    for n in ["net", "ipc", "uts", "pid", "mnt"] {
        assert!(out.contains(n), "{n}: {out}");
    }
    assert!(out.contains("own-mnt"), "{out}");
    runc_ok(&host, &["delete", "--force", "a"]);
}

#[test]
fn capability_sets_are_as_configured() {
    let host = Host::new("oci-caps");
    let caps = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    // As an ordinary user, what survives execve is the ambient set: all five sets show.
    let c = caps.clone();
    let out = run_ok(&host, "caps-user", &["cat", "/proc/self/status"], |v| {
        v["process"]["capabilities"] = c;
        v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        v["process"]["noNewPrivileges"] = json!(false);
    });
    assert_eq!(
        status_hex(&out, "CapBnd"),
        CAP_CHOWN | CAP_KILL | CAP_NET_BIND_SERVICE | CAP_NET_RAW
    );
    assert_eq!(
        status_hex(&out, "CapInh"),
        CAP_NET_BIND_SERVICE | CAP_NET_RAW
    );
    assert_eq!(status_hex(&out, "CapAmb"), CAP_NET_BIND_SERVICE);
    assert_eq!(status_hex(&out, "CapPrm"), CAP_NET_BIND_SERVICE);
    assert_eq!(status_hex(&out, "CapEff"), CAP_NET_BIND_SERVICE);
    assert!(out.contains("Uid:\t1000\t1000\t1000\t1000"), "{out}");
    // As root with no_new_privs, the permitted set is the configured one.
    let out = run_ok(&host, "caps-root", &["cat", "/proc/self/status"], |v| {
        v["process"]["capabilities"] = caps;
    });
    assert_eq!(
        status_hex(&out, "CapPrm"),
        CAP_KILL | CAP_NET_BIND_SERVICE | CAP_NET_RAW
    );
    assert_eq!(
        status_hex(&out, "CapEff"),
        CAP_KILL | CAP_NET_BIND_SERVICE | CAP_NET_RAW
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn seccomp_denies_with_the_configured_errno() {
    let host = Host::new("oci-seccomp");
    let out = run_ok(
        &host,
        "sec",
        &[
            "sh",
            "-c",
            "mkdir /tmp/d 2>&1; linux32 true; echo linux32=$?; linux64 true; echo linux64=$?",
        ],
        |v| {
            v["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
                ]
            });
        },
    );
    // ENOMSG is 42: the configured errno, not the kernel's EPERM.
    assert!(out.contains("No message of desired type"), "{out}");
    // The argument condition denies PER_LINUX32 and lets PER_LINUX through.
    assert!(out.contains("linux32=1"), "{out}");
    assert!(out.contains("linux64=0"), "{out}");
    // A process exec'd into the container gets the container's filter.
    let b = bundle(&host, "sec2", &["sleep", "1000"], |v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
        });
    });
    runc_bg(
        &host,
        &["run", "-d", "--bundle", b.to_str().unwrap(), "sec2"],
    );
    let out = runc(&host, &["exec", "sec2", "mkdir", "/tmp/d"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No message of desired type"),
        "{out:?}"
    );
    runc_ok(&host, &["delete", "--force", "sec2"]);
}

#[test]
fn a_memory_limit_gets_a_process_oom_killed() {
    let host = Host::new("oci-oom");
    let out = run_ok(
        &host,
        "oom",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero bs=1M count=100 2>/dev/null | tail > /dev/null; echo tail-exit=$?",
        ],
        |v| {
            v["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
        },
    );
    assert!(out.contains("tail-exit=137"), "{out}");
}

#[test]
fn a_pids_limit_stops_a_fork_bomb() {
    let host = Host::new("oci-pids");
    // The bomb runs in a shell of its own: ash gives up at the first fork refused.
    let out = run_ok(
        &host,
        "pids",
        &[
            "sh",
            "-c",
            "sh -c 'i=0; while [ $i -lt 40 ]; do sleep 3 & i=$((i+1)); echo $i > /tmp/n; done' \
               2>/tmp/err; read n < /tmp/n; echo started=$n; \
             grep -q \"can't fork\" /tmp/err && echo fork-refused",
        ],
        |v| v["linux"]["resources"]["pids"] = json!({"limit": 10}),
    );
    let started: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("started="))
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    // Ten tasks at most: the two shells and eight sleeps.
    assert!((1..=8).contains(&started), "{out}");
    assert!(out.contains("fork-refused"), "{out}");
}

#[test]
fn a_user_namespace_maps_uids() {
    let host = Host::new("oci-userns");
    let out = run_ok(
        &host,
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox; \
             touch /tmp/f; stat -c %u /tmp/f; grep ^Uid /proc/self/status",
        ],
        |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            v["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    assert_eq!(lines[1], "0", "root inside");
    assert_eq!(lines[2], "65534", "host root's files are unmapped: {out}");
    assert_eq!(lines[3], "0", "{out}");
    // Through create and start: the init, an unprivileged user on the host, waits on
    // the exec fifo and writes to a host directory it was given.
    let out_dir = host.dir().join("userns-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::set_permissions(
        &out_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let od = out_dir.clone();
    let b = bundle(
        &host,
        "userns2",
        &["sh", "-c", "id -u > /home/id"],
        move |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            v["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/home", "type": "bind", "source": od, "options": ["rbind", "rw"]}),
        );
        },
    );
    runc_bg(
        &host,
        &["create", "--bundle", b.to_str().unwrap(), "userns2"],
    );
    runc_ok(&host, &["start", "userns2"]);
    wait_status(&host, "userns2", "stopped");
    runc_ok(&host, &["delete", "userns2"]);
    assert_eq!(std::fs::read_to_string(out_dir.join("id")).unwrap(), "0\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(out_dir.join("id")).unwrap().uid(), 200000);
}

#[test]
fn exec_joins_a_running_container() {
    let host = Host::new("oci-exec");
    let b = bundle(&host, "ex", &["sleep", "1000"], |v| {
        v["hostname"] = json!("exechost");
    });
    runc_bg(
        &host,
        &["run", "--detach", "--bundle", b.to_str().unwrap(), "ex"],
    );
    assert_eq!(status_of(&host, "ex"), "running");
    let out = runc_ok(
        &host,
        &[
            "exec",
            "ex",
            "sh",
            "-c",
            "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
             for n in pid mnt net ipc uts; do \
               [ $(readlink /proc/1/ns/$n) = $(readlink /proc/self/ns/$n) ] && echo same-$n; done; \
             [ \"$(cat /proc/1/cgroup)\" = \"$(cat /proc/self/cgroup)\" ] && echo same-cgroup; \
             grep CapBnd /proc/self/status",
        ],
    );
    assert!(out.starts_with("exechost\nsleep 1000 \n"), "{out}");
    for n in ["pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        assert!(out.contains(&format!("same-{n}\n")), "{n}: {out}");
    }
    // The default config's bounding set: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    assert!(out.contains("CapBnd:\t0000000020000420"), "{out}");
    // Exit codes, user, environment, working directory, terminal.
    let out = runc(&host, &["exec", "ex", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = runc_ok(
        &host,
        &[
            "exec",
            "--user",
            "1000:1000",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "ex",
            "sh",
            "-c",
            "id -u; echo $FOO; pwd",
        ],
    );
    assert_eq!(out, "1000\nbar\n/tmp\n");
    let out = runc_ok(
        &host,
        &[
            "exec",
            "-t",
            "ex",
            "sh",
            "-c",
            "tty; [ -t 1 ] && echo tty-out",
        ],
    );
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("tty-out"), "{out}");
    let (code, err) = runc_fails(&host, &["exec", "ex", "no-such-command"]);
    assert_eq!(code, 1);
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    // The exec'd process is gone; the container runs on.
    assert_eq!(status_of(&host, "ex"), "running");
    runc_ok(&host, &["delete", "--force", "ex"]);
    let (_, err) = runc_fails(&host, &["exec", "ex", "true"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn kill_and_exit_codes() {
    let host = Host::new("oci-kill");
    // The container's exit code is run's.
    let out = run(&host, "code", &["sh", "-c", "exit 42"], |_| {});
    assert_eq!(out.status.code(), Some(42));

    // A signal reaches the init; its handler's exit status comes back.
    let b = bundle(
        &host,
        "trap",
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; while true; do sleep 0.05; done",
        ],
        |_| {},
    );
    let child = host
        .command(bin("rbox-runc"))
        .args(["run", "--bundle", b.to_str().unwrap(), "trap"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_status(&host, "trap", "running");
    runc_ok(&host, &["kill", "trap"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));

    // KILL by name; then the container is stopped and kill fails.
    let b = bundle(&host, "victim", &["sleep", "1000"], |_| {});
    runc_bg(
        &host,
        &["create", "--bundle", b.to_str().unwrap(), "victim"],
    );
    assert_eq!(status_of(&host, "victim"), "created");
    runc_ok(&host, &["start", "victim"]);
    let (_, err) = runc_fails(&host, &["delete", "victim"]);
    assert!(err.contains("running"), "{err}");
    runc_ok(&host, &["kill", "--all", "victim", "SIGKILL"]);
    wait_status(&host, "victim", "stopped");
    let state: Value = serde_json::from_str(&runc_ok(&host, &["state", "victim"])).unwrap();
    assert_eq!(state["pid"], 0);
    let (code, _) = runc_fails(&host, &["kill", "victim", "TERM"]);
    assert_eq!(code, 1);
    runc_ok(&host, &["delete", "victim"]);
    let (code, err) = runc_fails(&host, &["state", "victim"]);
    assert_eq!(code, 1);
    assert!(err.contains("container \"victim\" does not exist"), "{err}");
    // delete --force of nothing is fine, as with runc.
    runc_ok(&host, &["delete", "--force", "victim"]);
}

#[test]
fn pause_resume_list_and_ps() {
    let host = Host::new("oci-pause");
    let b = bundle(
        &host,
        "p1",
        &["sh", "-c", "while true; do sleep 0.05; done"],
        |_| {},
    );
    runc_bg(&host, &["run", "-d", "--bundle", b.to_str().unwrap(), "p1"]);
    runc_ok(&host, &["pause", "p1"]);
    assert_eq!(status_of(&host, "p1"), "paused");
    let list: Value = serde_json::from_str(&runc_ok(&host, &["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], "p1");
    assert_eq!(list[0]["status"], "paused");
    let table = runc_ok(&host, &["list"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("paused"), "{table}");
    runc_ok(&host, &["resume", "p1"]);
    assert_eq!(status_of(&host, "p1"), "running");
    let pids: Vec<i32> =
        serde_json::from_str(&runc_ok(&host, &["ps", "--format", "json", "p1"])).unwrap();
    let state: Value = serde_json::from_str(&runc_ok(&host, &["state", "p1"])).unwrap();
    assert!(
        pids.contains(&(state["pid"].as_i64().unwrap() as i32)),
        "{pids:?}"
    );
    let table = runc_ok(&host, &["ps", "p1"]);
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert!(table.lines().count() >= 2, "{table}");
    runc_ok(&host, &["delete", "--force", "p1"]);
}

/// Receives a descriptor sent with SCM_RIGHTS on a connection.
fn recv_fd(conn: &std::os::unix::net::UnixStream) -> OwnedFd {
    let mut data = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cmsg = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    // SAFETY: recvmsg writes into the buffers msg points at, all alive here.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled a control message; CMSG_FIRSTHDR/CMSG_DATA read it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS);
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
        OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn a_terminal_over_the_console_socket() {
    let host = Host::new("oci-tty");
    let sock = host.dir().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || recv_fd(&listener.accept().unwrap().0));
    let b = bundle(
        &host,
        "tty",
        &[
            "sh",
            "-c",
            "tty; [ -t 0 ] && echo stdin-is-a-tty; stty size; echo done",
        ],
        |v| {
            v["process"]["terminal"] = json!(true);
            v["process"]["consoleSize"] = json!({"height": 25, "width": 90});
        },
    );
    runc_ok(
        &host,
        &[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            b.to_str().unwrap(),
            "tty",
        ],
    );
    let master = receiver.join().unwrap();
    runc_ok(&host, &["start", "tty"]);
    let mut master = std::fs::File::from(master);
    let mut out = Vec::new();
    // Read until the slave side closes (EIO) or the program said it is done.
    let mut buf = [0u8; 1024];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&out).contains("done") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("stdin-is-a-tty"), "{text}");
    assert!(text.contains("25 90"), "{text}");
    wait_status(&host, "tty", "stopped");
    runc_ok(&host, &["delete", "tty"]);
}

#[test]
fn hooks_run_in_order_with_the_state() {
    let host = Host::new("oci-hooks");
    let out_dir = host.dir().join("hooks");
    std::fs::create_dir_all(&out_dir).unwrap();
    let hook = |kind: &str, dir: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {dir}/{kind}")]});
    let host_dir = out_dir.to_str().unwrap().to_string();
    let od = host_dir.clone();
    let b = bundle(&host, "hk", &["true"], move |v| {
        v["hooks"] = json!({
            "prestart": [hook("prestart", &od)],
            "createRuntime": [hook("createRuntime", &od)],
            "createContainer": [hook("createContainer", &od)],
            // Runs inside the container: it writes to a bind mount of the same directory.
            "startContainer": [hook("startContainer", "/home")],
            "poststart": [hook("poststart", &od)],
            "poststop": [hook("poststop", &od)]
        });
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/home", "type": "bind", "source": od, "options": ["rbind", "rw"]}),
        );
    });
    runc_ok(&host, &["run", "--bundle", b.to_str().unwrap(), "hk"]);
    for (kind, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let text = std::fs::read_to_string(out_dir.join(kind))
            .unwrap_or_else(|e| panic!("{kind} hook did not run: {e}"));
        let state: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(state["id"], "hk", "{kind}: {text}");
        assert_eq!(state["status"], status, "{kind}: {text}");
        assert_eq!(state["bundle"], json!(b), "{kind}: {text}");
        assert!(state["pid"].as_i64().unwrap() > 0, "{kind}: {text}");
    }
    // The same hooks through create, start and delete (the exec fifo's path).
    for kind in ["startContainer", "poststart", "poststop"] {
        std::fs::remove_file(out_dir.join(kind)).unwrap();
    }
    runc_bg(&host, &["create", "--bundle", b.to_str().unwrap(), "hk2"]);
    assert!(!out_dir.join("startContainer").exists(), "ran before start");
    runc_ok(&host, &["start", "hk2"]);
    wait_status(&host, "hk2", "stopped");
    runc_ok(&host, &["delete", "hk2"]);
    for (kind, status) in [
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let text = std::fs::read_to_string(out_dir.join(kind)).unwrap();
        let state: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (state["id"].as_str(), state["status"].as_str()),
            (Some("hk2"), Some(status))
        );
    }
    // A failing createRuntime hook fails create and leaves nothing.
    let b = bundle(&host, "badhook", &["true"], |v| {
        v["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let (_, err) = runc_fails(
        &host,
        &["create", "--bundle", b.to_str().unwrap(), "badhook"],
    );
    assert!(
        err.contains("createRuntime hook /bin/false failed"),
        "{err}"
    );
    assert_eq!(runc_ok(&host, &["list", "-q"]), "");
}

#[test]
fn no_descriptor_of_the_runtime_leaks_into_the_container() {
    let host = Host::new("oci-fds");
    let out = run_ok(&host, "fds", &["ls", "/proc/self/fd"], |_| {});
    // 0-2 and the directory ls itself reads.
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    // --preserve-fds passes exactly the descriptors asked for.
    let b = bundle(
        &host,
        "keep",
        &[
            "sh",
            "-c",
            "cat <&3; readlink /proc/self/fd/4 || echo no-fd-4",
        ],
        |_| {},
    );
    let out = host.sh_ok(&format!(
        "echo kept > {d}/kept; exec 3<{d}/kept 4<{d}/kept; {runc} run --preserve-fds 1 --bundle {b} keep",
        d = host.dir().display(),
        runc = bin("rbox-runc").display(),
        b = b.display()
    ));
    assert_eq!(out, "kept\nno-fd-4\n", "descriptor 4 leaked");
    // A gap in the descriptors to pass on is refused: one of ours could fill it.
    let out = host.sh(&format!(
        "exec 3</etc/hostname; {} run --preserve-fds 2 --bundle {} gap",
        bin("rbox-runc").display(),
        b.display()
    ));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("descriptor 4 is not open"));
    // A working directory through a runtime descriptor (CVE-2024-21626) is refused.
    for fd in 3..9 {
        let id = format!("cwd{fd}");
        let out = run(&host, &id, &["pwd"], |v| {
            v["process"]["cwd"] = json!(format!("/proc/self/fd/{fd}"));
        });
        assert!(!out.status.success(), "cwd /proc/self/fd/{fd} was accepted");
    }
    assert_eq!(runc_ok(&host, &["list", "-q"]), "");
}

/// CVE-2019-5736: a container process that holds a handle on the runtime's binary
/// (running as its program through /proc/self/exe) tries to write it once it exits.
#[test]
fn the_runtime_binary_cannot_be_overwritten_from_a_container() {
    let host = Host::new("oci-cve");
    // A private copy of the runtime: if protection failed, only the copy is damaged.
    let runtime = host.dir().join("rbox-runc");
    std::fs::copy(bin("rbox-runc"), &runtime).unwrap();
    let before = std::fs::read(&runtime).unwrap();
    let rootfs = host.dir().join("rootfs");
    // The image carries what the runtime needs to run inside it (its shared libraries),
    // as a hostile image would.
    host.sh_ok(&format!(
        "cp -a {} {r} && mkfifo {r}/tmp/fifo && \
         cp -L $(ldd {rt} | grep -oE '/lib[^ ]*/lib(seccomp|gcc_s)[^ ]*') {r}/lib/x86_64-linux-gnu/",
        test_image_dir().join("rootfs").display(),
        r = rootfs.display(),
        rt = runtime.display()
    ));
    // The attacker: waits for a process whose program is not busybox (the runtime,
    // exec'd by the victim below), grabs its executable, lets it finish, then writes.
    let attack = "while :; do for p in /proc/[0-9]*; do \
          e=$(readlink $p/exe) || continue; \
          case $e in /bin/busybox|'') continue;; esac; \
          exec 9<$p/exe && echo grabbed $e > /tmp/log; \
          cat /tmp/fifo > /dev/null; sleep 0.5; \
          if echo PWNED 2>>/tmp/log >> /proc/self/fd/9; then echo WROTE >> /tmp/log; \
          else echo write-refused >> /tmp/log; fi; \
          exec sleep 1000; done; sleep 0.01; done";
    let b = bundle(&host, "cve", &["sh", "-c", attack], |v| {
        v["root"] = json!({"path": rootfs, "readonly": false});
        v["mounts"].as_array_mut().unwrap().pop(); // keep the image's /tmp (and its fifo)
    });
    let runc_copy = |args: &[&str]| host.command(&runtime).args(args).output().unwrap();
    runc_bg_with(
        &host,
        &runtime,
        &["run", "-d", "--bundle", b.to_str().unwrap(), "cve"],
    );
    // The victim: an exec'd process whose program is /proc/self/exe (the runtime
    // itself), blocked opening its log on the fifo until the attacker reads it.
    let victim = runc_copy(&[
        "exec",
        "cve",
        "/proc/self/exe",
        "--log",
        "/tmp/fifo",
        "state",
        "x",
    ]);
    assert!(
        !victim.status.success(),
        "the runtime ran inside and failed (no state root)"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(rootfs.join("tmp/log")).unwrap_or_default();
        if log.contains("WROTE") || log.contains("write-refused") {
            break log;
        }
        assert!(Instant::now() < deadline, "attack did not finish: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        log.starts_with("grabbed"),
        "the attacker never held the binary: {log}"
    );
    assert!(log.contains("write-refused"), "{log}");
    // Refused because the binary is on a read-only mount (not merely busy).
    assert!(log.contains("Read-only file system"), "{log}");
    assert_eq!(
        std::fs::read(&runtime).unwrap(),
        before,
        "the runtime binary changed"
    );
    expect_ok("delete", runc_copy(&["delete", "--force", "cve"]));

    // A new container whose program is /proc/self/exe: the runtime made it unsealed (its
    // own pid namespace, no hooks inside), so that program is the exec stub, which runs
    // nothing; the runtime would have answered --version.
    let own = bundle(&host, "self", &["/proc/self/exe", "--version"], |v| {
        v["root"] = json!({"path": rootfs, "readonly": false});
    });
    let out = runc_copy(&["run", "--bundle", own.to_str().unwrap(), "self"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if cfg!(target_arch = "x86_64") {
        assert_eq!(out.status.code(), Some(127), "{stdout}");
    }
    assert!(!stdout.contains("rbox"), "the runtime ran inside: {stdout}");
    assert_eq!(std::fs::read(&runtime).unwrap(), before);
}

#[test]
fn a_malformed_config_is_one_clear_error_and_leaves_nothing() {
    let host = Host::new("oci-bad");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "noargs",
            Box::new(|v| v["process"]["args"] = json!([])),
            "process.args",
        ),
        (
            "badns",
            Box::new(
                |v| v["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "pid", "path": "/nonexistent/ns"}]),
            ),
            "pid namespace",
        ),
        (
            "badsysctl",
            Box::new(|v| v["linux"]["sysctl"] = json!({"kernel.panic": "1"})),
            "not namespaced",
        ),
        (
            "badmount",
            Box::new(|v| v["mounts"] = json!([{"destination": "/x", "options": ["bind"]}])),
            "no source",
        ),
        (
            "notfound",
            Box::new(|v| v["process"]["args"] = json!(["/no/such/program"])),
            "no such file or directory",
        ),
        (
            "badtype",
            Box::new(|v| v["process"]["user"]["uid"] = json!("root")),
            "not a valid OCI runtime config",
        ),
        (
            "badroot",
            Box::new(|v| v["root"]["path"] = json!("/nonexistent")),
            "root.path",
        ),
    ];
    for (id, edit, expected) in cases {
        let b = bundle(&host, id, &["true"], |v| edit(v));
        let (code, err) = runc_fails(&host, &["create", "--bundle", b.to_str().unwrap(), id]);
        assert_eq!(code, 1, "{id}");
        assert!(err.contains(expected), "{id}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{id}: one line, not {err}");
        assert!(!err.contains("panicked"), "{id}: {err}");
        let cg = format!("/sys/fs/cgroup/pids/{}/{id}", host.cgroup_parent());
        assert!(!Path::new(&cg).exists(), "{id}: cgroup left behind");
    }
    std::fs::write(
        host.dir().join("bundle-noargs/config.json"),
        "{\"ociVersion\": ",
    )
    .unwrap();
    let (_, err) = runc_fails(
        &host,
        &[
            "create",
            "--bundle",
            host.dir().join("bundle-noargs").to_str().unwrap(),
            "trunc",
        ],
    );
    assert!(err.contains("not a valid OCI runtime config"), "{err}");
    assert_eq!(runc_ok(&host, &["list", "-q"]), "");
    let (_, err) = runc_fails(&host, &["create", "--bundle", "/", "../escape"]);
    assert!(err.contains("invalid container id"), "{err}");
    // With --log, the error is also a JSON line in the log (what podman and containerd read).
    let log = host.dir().join("log.json");
    runc_fails(
        &host,
        &[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "nothing",
        ],
    );
    let line: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert_eq!(line["msg"], "container \"nothing\" does not exist");
    let features: Value = serde_json::from_str(&runc_ok(&host, &["features"])).unwrap();
    assert!(
        features["hooks"]
            .as_array()
            .unwrap()
            .contains(&json!("createContainer"))
    );
    assert_eq!(features["linux"]["cgroup"]["v2"], true);
}

/// A host with only the unified cgroup v2 hierarchy (this machine's v2 has no
/// controllers: limits must fail clearly, the rest must work).
#[test]
fn cgroup_v2_only_hosts() {
    let host = Host::new("oci-v2");
    host.sh_ok("umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup");
    let out = run_ok(&host, "v2", &["cat", "/proc/self/cgroup"], |_| {});
    let unified = out
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_default();
    assert_eq!(unified, format!("0::/{}/v2", host.cgroup_parent()), "{out}");
    let b = bundle(
        &host,
        "v2p",
        &["sh", "-c", "while true; do sleep 0.05; done"],
        |_| {},
    );
    runc_bg(
        &host,
        &["run", "-d", "--bundle", b.to_str().unwrap(), "v2p"],
    );
    runc_ok(&host, &["pause", "v2p"]);
    assert_eq!(status_of(&host, "v2p"), "paused");
    runc_ok(&host, &["resume", "v2p"]);
    assert_eq!(status_of(&host, "v2p"), "running");
    runc_ok(&host, &["delete", "--force", "v2p"]);
    let controllers = host.sh_ok("cat /sys/fs/cgroup/cgroup.controllers");
    if !controllers.contains("pids") {
        let out = run(&host, "v2lim", &["true"], |v| {
            v["linux"]["resources"]["pids"] = json!({"limit": 10});
        });
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the pids controller is not available"),
            "{err}"
        );
    }
    assert_eq!(runc_ok(&host, &["list", "-q"]), "");
}
