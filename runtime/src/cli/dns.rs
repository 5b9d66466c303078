//! `rbox internal-dns`: the process of the embedded DNS responder (started by netlib,
//! detached, one per runroot, serving netlib's state), and its client side for labs and
//! scripts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use netlib::dns::{self, LoadError, ResponderCommand, ServeConfig};
use netlib::store::Store;

use super::GlobalOptions;

/// The responder's own cgroup, under the cgroup parent.
const CGROUP_NAME: &str = "rbox-dns";

#[derive(Debug, Args)]
pub struct InternalDnsArgs {
    #[command(subcommand)]
    pub action: InternalDnsAction,
}

#[derive(Debug, Subcommand)]
pub enum InternalDnsAction {
    /// Run the responder in this process (rbox starts it detached when DNS is needed).
    Serve,
    /// Make the responder serve the current state: reload it, or start it.
    Sync,
    /// Start the responder if some container needs it and it is not running (what a
    /// container monitor does).
    Ensure,
    /// Stop the responder.
    Stop,
}

pub fn run(global: &GlobalOptions, args: InternalDnsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        InternalDnsAction::Serve => {
            // Not the cgroup of the command that started it (a systemd unit's, say): the
            // responder serves every container and must outlive that command's unit.
            if let Err(e) = move_to_own_cgroup(&global.cgroup_parent) {
                eprintln!("rbox dns: staying in the starting command's cgroup: {e}");
            }
            let store = Store::open(&global.root, &global.runroot)
                .context("cannot open the network state")?;
            let loader = move || dns::load(&store).map_err(|e| Box::new(e) as LoadError);
            dns::serve(ServeConfig::new(&global.runroot), loader)
                .context("the DNS responder stopped")?;
        }
        InternalDnsAction::Sync => {
            let report = dns::sync(&global.runroot, &responder_command(global))
                .context("the DNS responder did not take the records")?;
            println!("{}", serde_json::to_string(&report)?);
        }
        InternalDnsAction::Ensure => {
            global
                .open_netlib()?
                .ensure_dns()
                .context("the DNS responder is not running")?;
        }
        InternalDnsAction::Stop => {
            if !dns::stop(&global.runroot).context("cannot stop the DNS responder")? {
                eprintln!("rbox: no DNS responder is running");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// This binary as the responder of the state the global options name.
pub fn responder_command(global: &GlobalOptions) -> ResponderCommand {
    crate::engine::network::dns_responder(&global.root, &global.runroot, &global.cgroup_parent)
}

/// Moves this process into `<cgroup-parent>/rbox-dns` in every cgroup hierarchy mounted
/// here (each v1 controller and name=systemd, and the v2 tree). Made as a sibling of the
/// containers' cgroups, not inside any command's: a `systemctl stop` of the unit that
/// ran `rbox run` (its cgroup killed whole) leaves the responder serving the others.
fn move_to_own_cgroup(parent: &str) -> io::Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let pid = std::process::id().to_string();
    let mut failures = Vec::new();
    for (mountpoint, cpuset) in cgroup_mounts(&mountinfo) {
        let dir = mountpoint
            .join(parent.trim_start_matches('/'))
            .join(CGROUP_NAME);
        let moved = fs::create_dir_all(&dir)
            .and_then(|()| {
                if cpuset {
                    inherit_cpuset(&mountpoint, &dir)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| fs::write(dir.join("cgroup.procs"), &pid));
        if let Err(e) = moved {
            failures.push(format!("{}: {e}", dir.display()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(failures.join("; ")))
    }
}

/// Mount points of the cgroup hierarchies whose root is the hierarchy's root (a cgroup
/// namespace's view is skipped), and whether each is v1's cpuset.
fn cgroup_mounts(mountinfo: &str) -> Vec<(PathBuf, bool)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let super_options = right.nth(1).unwrap_or("");
            let root = *fields.get(3)?;
            let mountpoint = *fields.get(4)?;
            let v1 = fstype == "cgroup";
            ((v1 || fstype == "cgroup2") && root == "/").then(|| {
                let cpuset = v1 && super_options.split(',').any(|o| o == "cpuset");
                (PathBuf::from(mountpoint), cpuset)
            })
        })
        .collect()
}

/// v1's cpuset refuses tasks in a cgroup whose CPUs and memory nodes are empty, as new
/// ones are: copy them down from the nearest ancestor that has them.
fn inherit_cpuset(root: &Path, dir: &Path) -> io::Result<()> {
    let mut chain: Vec<&Path> = dir.ancestors().take_while(|d| *d != root).collect();
    chain.reverse();
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut value = fs::read_to_string(root.join(file))?;
        for d in &chain {
            let own = fs::read_to_string(d.join(file))?;
            if own.trim().is_empty() {
                fs::write(d.join(file), value.trim())?;
            } else {
                value = own;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_hierarchies_are_found_in_mountinfo() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:38 /lxc/x /mnt/nested rw,relatime - cgroup2 cgroup2 rw
";
        let found = cgroup_mounts(mountinfo);
        let paths: Vec<(&str, bool)> = found
            .iter()
            .map(|(p, c)| (p.to_str().unwrap(), *c))
            .collect();
        assert_eq!(
            paths,
            [
                ("/sys/fs/cgroup/cpu", false),
                ("/sys/fs/cgroup/cpuset", true),
                ("/sys/fs/cgroup/systemd", false),
                ("/sys/fs/cgroup/unified", false),
            ]
        );
    }
}
