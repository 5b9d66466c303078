//! rbox's limits on a cgroup v2 host with its controllers (modern distributions): this
//! machine's v2 hierarchy has none, so these run in the VM (`just test-vm vm_cgroup`),
//! where cgroup v2 is the only hierarchy. The same engine code path serves v1 natively
//! (tests/tests/engine.rs, `cgroup_limits`).

mod containers_support;

use containers_support::{assert_fork_bomb_stops, inspect, lab, start_limited};
use rbox_tests::{KernelFeature, require_kernel};

#[test]
fn limits_apply_on_cgroup_v2_and_the_cgroup_goes_with_the_container() {
    if !require_kernel(&[KernelFeature::Cgroup2(&["memory", "pids", "cpu"])]) {
        return;
    }
    let h = lab("v2-limits");
    let id = start_limited(&h);
    let id = id.as_str();
    let cg = format!("/sys/fs/cgroup/{}/{id}", h.cgroup_parent());
    let limits = h.sh_ok(&format!(
        "cat {cg}/memory.max {cg}/pids.max {cg}/cpu.max {cg}/cgroup.procs | tr '\\n' ' '"
    ));
    let pid = inspect(&h, id)["State"]["Pid"].as_u64().unwrap();
    assert_eq!(
        limits.trim(),
        format!("{} 20 50000 100000 {pid}", 64u64 << 20),
        "memory.max pids.max cpu.max cgroup.procs"
    );
    // The container sees its own cgroup as the root of its cgroup namespace.
    let own = h.rbox_ok(&["exec", id, "cat", "/proc/self/cgroup"]);
    assert_eq!(own.trim(), "0::/", "{own}");
    // A fork bomb stops at the pids limit.
    assert_fork_bomb_stops(&h, id);
    h.rbox_ok(&["rm", "-f", id]);
    assert!(
        !h.sh(&format!("test -d {cg}")).status.success(),
        "cgroup left behind"
    );

    // Over its memory limit, the container is OOM-killed, and says so.
    let (code, _) = h.rbox_fails(&[
        "run",
        "--name",
        "hog",
        "--network",
        "none",
        "--memory",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(code, 137, "a 64 MiB block in a 32 MiB container");
    assert_eq!(inspect(&h, "hog")["State"]["OOMKilled"], true);
    h.rbox_ok(&["rm", "hog"]);
}
