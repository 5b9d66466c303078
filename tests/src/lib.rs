//! The lab harness: simulated hosts built from namespaces, driving the built binaries.
//!
//! A [`Host`] is a network namespace plus a mount namespace, held open by an "anchor"
//! process. Inside it `/run` is a fresh tmpfs, `/var/lib/rbox` is the lab's own
//! directory, `/sys` shows the lab's network devices and `/etc/resolv.conf` is the lab's
//! own file (by default pointing at a TEST-NET address that nothing answers: no test
//! ever queries the real host's resolver). So `rbox` runs there with its default paths,
//! exactly as a user runs it, and everything it makes (links, bridges, nftables tables,
//! mounts, sandboxes) lives and dies with the lab.
//!
//! Dropping a `Host` kills every process of the lab (by PID: those in its namespaces,
//! their descendants and those in its cgroups), removes its cgroups and its directory,
//! even when the test failed.
//!
//! Labs that need what this machine's kernel lacks (VLANs, ipvlan, cgroup v2, systemd)
//! start with [`require_kernel`] and live in `tests/tests/vm_*.rs`, which `just test-vm`
//! runs in a VM with a full kernel; [`VlanSwitch`] builds switched VLAN topologies.

mod kernel;
mod switch;

pub use kernel::{KernelFeature, in_vm, require_kernel};
pub use switch::VlanSwitch;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Resolver used by labs that do not set their own: TEST-NET-1, unreachable from a lab.
pub const UNREACHABLE_RESOLV_CONF: &str = "nameserver 192.0.2.53\n";

/// Longest any single command of a lab may run before it is killed.
const COMMAND_TIMEOUT_SECS: u32 = 120;

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Directory of the built binaries: `$RBOX_BIN_DIR`, else `<root>/target/release`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("RBOX_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release"))
}

/// Path of a built binary (`rbox`, `rbox-runc`), checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --release` (or `just build`) first",
        path.display()
    );
    path
}

/// The local test image built by `just test-image` (`scripts/make-test-image`).
pub fn test_image_dir() -> PathBuf {
    let dir = workspace_root().join("build/test-image");
    assert!(
        dir.join("busybox.tar").exists(),
        "test image missing: run `just test-image` first"
    );
    dir
}

/// True when `program` is on PATH (for tests that need optional tools such as podman).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A simulated host: its own network and mount namespaces, rbox state and cgroups.
pub struct Host {
    name: String,
    anchor: Child,
    dir: PathBuf,
    cgroup_parent: String,
}

impl Host {
    /// A new simulated host named `name` (for messages; it need not be unique).
    pub fn new(name: &str) -> Host {
        let seq = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        let unique = format!("{name}-{}-{seq}", std::process::id());
        let dir = std::env::temp_dir().join(format!("rbox-lab-{unique}"));
        fs::create_dir_all(dir.join("root")).unwrap();
        fs::write(dir.join("resolv.conf"), UNREACHABLE_RESOLV_CONF).unwrap();

        // The anchor builds the host's view of the system, says "ready", then sleeps.
        // /sys is remounted so that it shows this namespace's links; the cgroup tree
        // is carried over the remount.
        let setup = format!(
            "set -e
             mount -t tmpfs -o mode=755 tmpfs /run
             mkdir /run/.cgroup
             mount --rbind /sys/fs/cgroup /run/.cgroup
             mount -t sysfs sysfs /sys
             mount --move /run/.cgroup /sys/fs/cgroup
             rmdir /run/.cgroup 2>/dev/null || true
             mkdir -p /var/lib/rbox
             mount --bind {dir}/root /var/lib/rbox
             mount --bind {dir}/resolv.conf /etc/resolv.conf
             ip link set lo up
             echo ready
             exec sleep infinity",
            dir = dir.display()
        );
        let mut anchor = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
            ])
            .arg(&setup)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let mut line = String::new();
        {
            use std::io::BufRead;
            let stdout = anchor.stdout.take().unwrap();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
        }
        let host = Host {
            name: name.to_string(),
            anchor,
            dir,
            cgroup_parent: format!("rbox-lab-{unique}"),
        };
        assert_eq!(line.trim(), "ready", "lab host {name} failed to set up");
        host
    }

    /// The host's name as given to [`Host::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// PID of the process holding the host's namespaces.
    pub fn pid(&self) -> u32 {
        self.anchor.id()
    }

    /// Path of the host's network namespace, e.g. for `ip link set X netns PATH`.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// The lab's private directory (on the real host's disk).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup parent under which this host's containers are placed.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// A command that runs `program` inside this host, with a timeout.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid().to_string())
            .args(["-n", "-m", "--", "timeout", "-k", "5"])
            .arg(COMMAND_TIMEOUT_SECS.to_string())
            .arg(program);
        cmd.env("RBOX_CGROUP_PARENT", &self.cgroup_parent);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a shell script inside this host.
    pub fn sh(&self, script: &str) -> Output {
        self.command("sh").args(["-c", script]).output().unwrap()
    }

    /// Runs a shell script inside this host; panics unless it succeeds; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        expect_ok(
            &format!("[{}] sh -c {script:?}", self.name),
            self.sh(script),
        )
    }

    /// A command running the built `rbox` binary inside this host.
    pub fn rbox_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(bin("rbox"));
        cmd.args(args);
        cmd
    }

    /// Runs `rbox ARGS` inside this host.
    pub fn rbox(&self, args: &[&str]) -> Output {
        self.rbox_command(args).output().unwrap()
    }

    /// Runs `rbox ARGS`; panics unless it succeeds; returns stdout.
    pub fn rbox_ok(&self, args: &[&str]) -> String {
        expect_ok(
            &format!("[{}] rbox {}", self.name, args.join(" ")),
            self.rbox(args),
        )
    }

    /// Runs `rbox ARGS`, which must fail; returns (exit code, stderr).
    pub fn rbox_fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.rbox(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "[{}] rbox {} succeeded but should have failed; stdout:\n{}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        (out.status.code().unwrap_or(-1), stderr)
    }

    /// Loads the local busybox test image into this host's rbox as `busybox:latest`.
    pub fn load_test_image(&self) {
        let archive = test_image_dir().join("busybox.tar");
        self.rbox_ok(&["load", "-i", archive.to_str().unwrap()]);
    }

    /// Replaces the host's `/etc/resolv.conf` (seen by rbox as the host's upstreams).
    pub fn set_resolv_conf(&self, content: &str) {
        fs::write(self.dir.join("resolv.conf"), content).unwrap();
    }

    /// Links this host to `other` with a veth pair: `ifname` here, `other_ifname` there,
    /// both up; each side gets its address (CIDR form) when one is given.
    pub fn link(
        &self,
        ifname: &str,
        addr: Option<&str>,
        other: &Host,
        other_ifname: &str,
        other_addr: Option<&str>,
    ) {
        self.sh_ok(&format!(
            "ip link add {ifname} type veth peer name {other_ifname} netns {}",
            other.pid()
        ));
        for (host, ifname, addr) in [(self, ifname, addr), (other, other_ifname, other_addr)] {
            if let Some(addr) = addr {
                host.sh_ok(&format!("ip addr add {addr} dev {ifname}"));
            }
            host.sh_ok(&format!("ip link set {ifname} up"));
        }
    }

    /// Waits until `script` succeeds inside the host, up to `timeout`; returns whether it did.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.sh(script).status.success() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A stub DNS server of the lab (dnsmasq) in this host, at `address`, answering
    /// `records` (dnsmasq's `/NAME/IP` forms: `/example.test/10.20.30.40`, `/invalid/`
    /// for NXDOMAIN) and nothing else; `extra` are more dnsmasq options. It serves when
    /// this returns, and stops when the result is dropped.
    pub fn dns_stub(&self, address: &str, records: &[&str], extra: &[&str]) -> Background {
        let stub = Background(
            self.command("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--user=root",
                    "--pid-file=",
                    "--conf-file=/dev/null",
                    "--bind-interfaces",
                ])
                .arg(format!("--listen-address={address}"))
                .args(records.iter().map(|r| format!("--address={r}")))
                .args(extra)
                .spawn()
                .expect("run dnsmasq"),
        );
        assert!(
            self.wait_for(
                &format!("ss -uln | grep -q {address}:53"),
                Duration::from_secs(5)
            ),
            "[{}] dnsmasq did not start at {address}",
            self.name
        );
        stub
    }

    /// Every process belonging to this lab: those in its network or mount namespace,
    /// those in its cgroups, and all their descendants.
    fn processes(&self) -> Vec<u32> {
        let anchor = self.pid();
        let ns_id = |pid: u32, ns: &str| {
            fs::metadata(format!("/proc/{pid}/ns/{ns}"))
                .map(|m| m.ino())
                .ok()
        };
        let (net, mnt) = (ns_id(anchor, "net"), ns_id(anchor, "mnt"));
        let mut all: Vec<(u32, u32)> = Vec::new(); // (pid, ppid)
        let mut members: Vec<u32> = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The field after the ")" that closes the command name is the state, then ppid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            all.push((pid, ppid));
            if pid != anchor
                && ((net.is_some() && ns_id(pid, "net") == net)
                    || (mnt.is_some() && ns_id(pid, "mnt") == mnt))
            {
                members.push(pid);
            }
        }
        for dir in self.cgroup_dirs() {
            for procs in walk_dirs(&dir) {
                if let Ok(text) = fs::read_to_string(procs.join("cgroup.procs")) {
                    members.extend(text.lines().filter_map(|l| l.parse::<u32>().ok()));
                }
            }
        }
        // Close over descendants.
        let mut i = 0;
        while i < members.len() {
            let parent = members[i];
            for &(pid, ppid) in &all {
                if ppid == parent && !members.contains(&pid) {
                    members.push(pid);
                }
            }
            i += 1;
        }
        let me = std::process::id();
        members.retain(|&p| p != me && p != anchor);
        members.sort_unstable();
        members.dedup();
        members
    }

    /// The lab's cgroup directories, in every mounted hierarchy (v1 and v2).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let base = Path::new("/sys/fs/cgroup");
        let direct = base.join(&self.cgroup_parent);
        if direct.is_dir() {
            dirs.push(direct);
        }
        for entry in fs::read_dir(base).into_iter().flatten().flatten() {
            let dir = entry.path().join(&self.cgroup_parent);
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
        dirs
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Kill in rounds: a dying process's parent may fork once more.
        for _ in 0..20 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) with a PID we found in this lab; no memory is involved.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.anchor.kill();
        let _ = self.anchor.wait();
        for dir in self.cgroup_dirs() {
            let mut dirs = walk_dirs(&dir);
            dirs.reverse(); // children before parents
            for d in dirs {
                for _ in 0..50 {
                    if fs::remove_dir(&d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `dir` and all directories below it, parents before children.
fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// A process a lab started, killed and reaped when dropped.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Panics with the command's output unless it succeeded; returns its stdout.
pub fn expect_ok(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_has_its_own_network_and_cleans_up() {
        let dir;
        {
            let a = Host::new("a");
            let b = Host::new("b");
            a.link(
                "uplink",
                Some("10.9.0.1/24"),
                &b,
                "eth0",
                Some("10.9.0.2/24"),
            );
            a.sh_ok("ping -c1 -W2 10.9.0.2");
            // Each host sees only its own links, through netlink and /sys alike.
            let links = a.sh_ok("ls /sys/class/net");
            assert_eq!(
                links.split_whitespace().collect::<Vec<_>>(),
                ["lo", "uplink"]
            );
            assert!(a.sh_ok("cat /etc/resolv.conf").contains("192.0.2.53"));
            a.set_resolv_conf("nameserver 10.9.0.2\n");
            assert!(a.sh_ok("cat /etc/resolv.conf").contains("10.9.0.2"));
            // A background process of the lab is found and killed on drop.
            let mut sleeper = a.command("sleep").arg("1000").spawn().unwrap();
            dir = a.dir().to_path_buf();
            assert!(
                a.sh_ok("ls -d /sys/fs/cgroup/*")
                    .contains("/sys/fs/cgroup/")
            );
            drop(a);
            let status = sleeper.wait().unwrap();
            assert!(!status.success(), "the lab's process survived its lab");
        }
        assert!(!dir.exists(), "lab directory left behind");
    }
}
