//! Kernel features some labs need, and skipping those labs on kernels without them.
//!
//! The project's build machine has no 802.1Q VLANs, ipvlan, dummy links or bridge VLAN
//! filtering, runs cgroups in a v1 hybrid layout and has no systemd as PID 1. Labs that
//! need these start with [`require_kernel`]: on such a kernel the lab prints why it is
//! skipped and returns; in the VM of `just test-vm` (a full Debian kernel, `RBOX_IN_VM=1`)
//! a missing feature fails the lab instead, so that a broken VM never passes silently.
//!
//! Each feature is probed by making the object it stands for in a throwaway network
//! namespace (or by reading what the kernel shows), once per test process.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// A kernel feature a lab can require.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFeature {
    /// 802.1Q VLAN sub-interfaces (`ip link add link X name X.100 type vlan id 100`).
    Vlan,
    /// ipvlan links.
    Ipvlan,
    /// dummy links.
    Dummy,
    /// VLAN filtering on bridges (`vlan_filtering 1`, `bridge vlan add ...`).
    BridgeVlanFiltering,
    /// cgroup v2 alone at `/sys/fs/cgroup` (unified), offering these controllers.
    Cgroup2(&'static [&'static str]),
    /// systemd as PID 1.
    SystemdPid1,
}

impl KernelFeature {
    /// What the feature is, for messages: "802.1Q VLANs (module 8021q)".
    pub fn describe(&self) -> String {
        match self {
            KernelFeature::Vlan => "802.1Q VLANs (module 8021q)".into(),
            KernelFeature::Ipvlan => "ipvlan links (module ipvlan)".into(),
            KernelFeature::Dummy => "dummy links (module dummy)".into(),
            KernelFeature::BridgeVlanFiltering => {
                "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)".into()
            }
            KernelFeature::Cgroup2(controllers) => format!(
                "cgroup v2 at /sys/fs/cgroup with the controllers {}",
                controllers.join(", ")
            ),
            KernelFeature::SystemdPid1 => "systemd as PID 1".into(),
        }
    }

    /// Whether this machine has the feature, probed now.
    fn probe(&self) -> bool {
        match self {
            KernelFeature::Vlan => in_throwaway_netns(
                "ip link add p0 type veth peer name p1 &&
                 ip link add link p0 name p0.100 type vlan id 100",
            ),
            KernelFeature::Ipvlan => in_throwaway_netns(
                "ip link add p0 type veth peer name p1 &&
                 ip link add link p0 name iv0 type ipvlan mode l2",
            ),
            KernelFeature::Dummy => in_throwaway_netns("ip link add d0 type dummy"),
            KernelFeature::BridgeVlanFiltering => in_throwaway_netns(
                "ip link add br0 type bridge vlan_filtering 1 &&
                 ip -d link show br0 | grep -q 'vlan_filtering 1'",
            ),
            KernelFeature::Cgroup2(controllers) => {
                std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|have| {
                    let have: Vec<&str> = have.split_whitespace().collect();
                    controllers.iter().all(|c| have.contains(c))
                })
            }
            KernelFeature::SystemdPid1 => {
                std::fs::read_to_string("/proc/1/comm").is_ok_and(|comm| comm.trim() == "systemd")
            }
        }
    }

    /// Whether this machine has the feature (probed once per test process).
    pub fn present(&self) -> bool {
        static PROBED: Mutex<Vec<(KernelFeature, bool)>> = Mutex::new(Vec::new());
        let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, present)) = probed.iter().find(|(f, _)| f == self) {
            return present;
        }
        let present = self.probe();
        probed.push((*self, present));
        present
    }
}

/// True inside the VM of `scripts/vm/run` (`just test-vm`), which sets `RBOX_IN_VM=1`.
pub fn in_vm() -> bool {
    std::env::var_os("RBOX_IN_VM").is_some_and(|v| v == "1")
}

/// Whether the lab may run: true when the kernel has every feature. Otherwise, outside
/// the VM, prints "skipped: this kernel lacks ...; run with `just test-vm`" and returns
/// false (the lab returns early); inside the VM, panics.
///
/// ```no_run
/// # use rbox_tests::{require_kernel, KernelFeature};
/// if !require_kernel(&[KernelFeature::Vlan, KernelFeature::BridgeVlanFiltering]) {
///     return;
/// }
/// ```
pub fn require_kernel(features: &[KernelFeature]) -> bool {
    let missing: Vec<String> = features
        .iter()
        .filter(|f| !f.present())
        .map(KernelFeature::describe)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(" and ");
    assert!(
        !in_vm(),
        "the VM lacks {missing}: check how scripts/vm/run boots it"
    );
    // Straight to stderr, past the test harness's output capture, so that the reason
    // shows in a normal `cargo test` run.
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "{test}skipped: this kernel lacks {missing}; run with `just test-vm`"
    );
    false
}

/// Runs `script` in a new network namespace that vanishes with it; true if it succeeded.
fn in_throwaway_netns(script: &str) -> bool {
    Command::new("unshare")
        .args(["--net", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_described_with_what_provides_them() {
        assert_eq!(
            KernelFeature::Vlan.describe(),
            "802.1Q VLANs (module 8021q)"
        );
        assert_eq!(
            KernelFeature::Cgroup2(&["memory", "pids"]).describe(),
            "cgroup v2 at /sys/fs/cgroup with the controllers memory, pids"
        );
    }

    #[test]
    fn probes_agree_with_what_the_kernel_shows() {
        // Veth pairs exist on every kernel the labs run on: a probe of a feature the
        // machine has must say so, and asking twice gives the same answer.
        assert!(in_throwaway_netns("ip link add p0 type veth peer name p1"));
        assert!(!in_throwaway_netns("ip link add p0 type no-such-kind"));
        let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        assert_eq!(KernelFeature::Cgroup2(&[]).present(), unified);
        assert_eq!(KernelFeature::Vlan.present(), KernelFeature::Vlan.present());
    }
}
