//! `linux.resources` as the files to write, for cgroup v1 (per controller) and v2.
//! Pure functions, unit-tested; [`super::Cgroup::apply`] does the writing.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// One write: controller (`unified` for linux.resources.unified), file name, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn w(controller: &'static str, file: &str, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.to_string(),
        value: value.to_string(),
    }
}

/// Device rules every container gets after the config's own (as runc does): mknod of
/// anything, and use of the standard devices it creates in /dev.
const DEFAULT_DEVICE_RULES: &[(char, i64, i64, &str)] = &[
    ('c', -1, -1, "m"),
    ('b', -1, -1, "m"),
    ('c', 1, 3, "rwm"),    // null
    ('c', 1, 5, "rwm"),    // zero
    ('c', 1, 7, "rwm"),    // full
    ('c', 1, 8, "rwm"),    // random
    ('c', 1, 9, "rwm"),    // urandom
    ('c', 5, 0, "rwm"),    // tty
    ('c', 5, 2, "rwm"),    // ptmx
    ('c', 136, -1, "rwm"), // pts
    ('c', 10, 200, "rwm"), // net/tun
];

fn device_rule(typ: char, major: i64, minor: i64, access: &str) -> String {
    let num = |n: i64| {
        if n < 0 {
            "*".to_string()
        } else {
            n.to_string()
        }
    };
    format!("{typ} {}:{} {access}", num(major), num(minor))
}

/// cgroup v1 writes, in the order they must happen.
pub fn v1(res: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(cpu) = res.cpu() {
        if let Some(s) = cpu.shares().filter(|s| *s != 0) {
            out.push(w("cpu", "cpu.shares", s));
        }
        // The period first: a quota is checked against the current period.
        if let Some(p) = cpu.period().filter(|p| *p != 0) {
            out.push(w("cpu", "cpu.cfs_period_us", p));
        }
        if let Some(q) = cpu.quota().filter(|q| *q != 0) {
            out.push(w("cpu", "cpu.cfs_quota_us", q));
        }
        if let Some(b) = cpu.burst() {
            out.push(w("cpu", "cpu.cfs_burst_us", b));
        }
        if let Some(p) = cpu.realtime_period().filter(|p| *p != 0) {
            out.push(w("cpu", "cpu.rt_period_us", p));
        }
        if let Some(r) = cpu.realtime_runtime().filter(|r| *r != 0) {
            out.push(w("cpu", "cpu.rt_runtime_us", r));
        }
        if let Some(i) = cpu.idle() {
            out.push(w("cpu", "cpu.idle", i));
        }
        if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", c));
        }
        if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", m));
        }
    }
    if let Some(mem) = res.memory() {
        if let Some(r) = mem.reservation().filter(|r| *r != 0) {
            out.push(w("memory", "memory.soft_limit_in_bytes", r));
        }
        // memory.limit_in_bytes must stay <= memory.memsw.limit_in_bytes at every
        // moment: Cgroup::apply retries the pair in the other order if the first fails.
        if let Some(l) = mem.limit().filter(|l| *l != 0) {
            out.push(w("memory", "memory.limit_in_bytes", l));
        }
        if let Some(s) = mem.swap().filter(|s| *s != 0) {
            out.push(w("memory", "memory.memsw.limit_in_bytes", s));
        }
        if let Some(s) = mem.swappiness() {
            out.push(w("memory", "memory.swappiness", s));
        }
        if mem.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom_control", 1));
        }
    }
    if let Some(p) = res.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        out.push(w("pids", "pids.max", v));
    }
    if let Some(rules) = res.devices() {
        out.extend(device_writes(rules));
    }
    out
}

fn device_writes(rules: &[LinuxDeviceCgroup]) -> Vec<Write> {
    let mut out = Vec::new();
    let typ = |t: Option<LinuxDeviceType>| match t {
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
        Some(LinuxDeviceType::A) | None => 'a',
    };
    for r in rules {
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let t = typ(r.typ());
        let access = r.access().clone().unwrap_or_else(|| "rwm".into());
        let value = if t == 'a' {
            "a".to_string()
        } else {
            device_rule(t, r.major().unwrap_or(-1), r.minor().unwrap_or(-1), &access)
        };
        out.push(w("devices", file, value));
    }
    for &(t, major, minor, access) in DEFAULT_DEVICE_RULES {
        out.push(w(
            "devices",
            "devices.allow",
            device_rule(t, major, minor, access),
        ));
    }
    out
}

/// cgroup v2 writes (all in the container's one directory).
pub fn v2(res: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(cpu) = res.cpu() {
        if let Some(s) = cpu.shares().filter(|s| *s != 0) {
            // The conversion runc and crun use between v1 shares and v2 weight.
            let weight = 1 + (s.clamp(2, 262144) - 2) * 9999 / 262142;
            out.push(w("cpu", "cpu.weight", weight));
        }
        let quota = cpu.quota().filter(|q| *q > 0);
        let period = cpu.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let q = quota.map(|q| q.to_string()).unwrap_or_else(|| "max".into());
            out.push(w(
                "cpu",
                "cpu.max",
                format!("{q} {}", period.unwrap_or(100_000)),
            ));
        }
        if let Some(b) = cpu.burst() {
            out.push(w("cpu", "cpu.max.burst", b));
        }
        if let Some(i) = cpu.idle() {
            out.push(w("cpu", "cpu.idle", i));
        }
        if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", c));
        }
        if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", m));
        }
    }
    if let Some(mem) = res.memory() {
        let bytes = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if let Some(r) = mem.reservation().filter(|r| *r != 0) {
            out.push(w("memory", "memory.low", bytes(r)));
        }
        if let Some(l) = mem.limit().filter(|l| *l != 0) {
            out.push(w("memory", "memory.max", bytes(l)));
            // v1's swap is memory+swap; v2 limits swap alone.
            match mem.swap() {
                Some(s) if s < 0 => out.push(w("memory", "memory.swap.max", "max")),
                Some(s) if s > 0 && l > 0 => {
                    out.push(w("memory", "memory.swap.max", (s - l).max(0)));
                }
                _ => {}
            }
        }
        if mem.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom.group", 0));
        }
    }
    if let Some(p) = res.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        out.push(w("pids", "pids.max", v));
    }
    let mut unified: Vec<_> = res.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        out.push(w("unified", k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn v1_memory_cpu_pids() {
        let r = res(serde_json::json!({
            "memory": {"limit": 33554432, "swap": 33554432},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 20}
        }));
        let got: Vec<(String, String)> = v1(&r).into_iter().map(|w| (w.file, w.value)).collect();
        let want = [
            ("cpu.shares", "512"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("memory.limit_in_bytes", "33554432"),
            ("memory.memsw.limit_in_bytes", "33554432"),
            ("pids.max", "20"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn v2_conversions() {
        let r = res(serde_json::json!({
            "memory": {"limit": 1000, "swap": 3000},
            "cpu": {"shares": 1024, "quota": -1, "period": 50000},
            "pids": {"limit": 0},
            "unified": {"memory.high": "900"}
        }));
        let got: Vec<(String, String)> = v2(&r).into_iter().map(|w| (w.file, w.value)).collect();
        assert!(got.contains(&("cpu.weight".into(), "39".into())));
        assert!(got.contains(&("cpu.max".into(), "max 50000".into())));
        assert!(got.contains(&("memory.max".into(), "1000".into())));
        assert!(got.contains(&("memory.swap.max".into(), "2000".into())));
        assert!(got.contains(&("pids.max".into(), "max".into())));
        assert!(got.contains(&("memory.high".into(), "900".into())));
    }

    #[test]
    fn device_rules_deny_all_then_defaults() {
        let r = res(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}
        ]}));
        let writes = v1(&r);
        assert_eq!(writes[0].file, "devices.deny");
        assert_eq!(writes[0].value, "a");
        assert_eq!(writes[1].value, "c 10:229 rw");
        assert!(writes.iter().any(|w| w.value == "c 136:* rwm"));
        assert!(writes.iter().any(|w| w.value == "c 1:3 rwm"));
    }
}
