//! The engine level: image + flags in, an OCI bundle and a supervised container out.
//!
//! `rbox run` parses its flags into [`options::ContainerOptions`], resolves the image,
//! records the container ([`store`]), and hands it to a monitor ([`launch`]) that
//! mounts the rootfs, builds the network sandbox ([`network`]), writes the bundle
//! ([`oci_config`]), creates and starts the process through the OCI level
//! ([`runtime`]), and supervises it ([`pump`]) until it exits. The OCI level
//! (`crate::oci`) knows nothing of images or networks.
//!
//! Process model: the monitor is the container's parent. Foreground `rbox run` is
//! itself the monitor; `-d` and `start` fork a detached one (double fork + setsid).
//! A monitor holds `<runroot>/containers/<id>/monitor.lock` for its whole life, so any
//! rbox command tells a live monitor from a dead one; the state of a dead one is
//! reclaimed by the next command that touches the container ([`lifecycle`]).

pub mod attach;
pub mod caps;
pub mod client;
pub mod create;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod ids;
pub mod inspect;
pub mod launch;
pub mod lifecycle;
pub mod logfile;
pub mod logs;
pub mod network;
pub mod oci_config;
pub mod options;
pub mod ports;
pub mod pump;
pub mod record;
pub mod runtime;
pub mod seccomp;
pub mod store;
pub mod terminal;
pub mod user;

use std::cell::OnceCell;
use std::path::PathBuf;
use std::time::Instant;

pub use error::{Error, Result};

/// Where rbox keeps its state and how it reports: one per rbox command.
pub struct Engine {
    pub root: PathBuf,
    pub runroot: PathBuf,
    /// Default cgroup parent for new containers.
    pub cgroup_parent: String,
    pub debug: bool,
    pub store: store::Store,
    images: OnceCell<images::ImageStore>,
    netlib: OnceCell<netlib::Netlib>,
    started: Instant,
    last: std::cell::Cell<Instant>,
}

impl Engine {
    pub fn open(
        root: PathBuf,
        runroot: PathBuf,
        cgroup_parent: String,
        debug: bool,
    ) -> Result<Engine> {
        let opened = store::Store::open(&root, &runroot)?;
        let now = Instant::now();
        let engine = Engine {
            root,
            runroot,
            cgroup_parent,
            debug,
            store: opened.store,
            images: OnceCell::new(),
            netlib: OnceCell::new(),
            started: now,
            last: std::cell::Cell::new(now),
        };
        if opened.fresh_runroot
            && let Err(e) = engine.sweep_orphans()
        {
            // Leftovers cost disk space, not correctness: the command goes on.
            eprintln!("rbox: cannot remove what --rm containers left before the reboot: {e}");
        }
        Ok(engine)
    }

    /// After a reboot (the runroot is new): removes what `--rm` containers left on
    /// disk, their records having gone with the runroot (see [`store`]).
    fn sweep_orphans(&self) -> Result<()> {
        let images = self.images()?;
        for id in self.store.sweep_orphans(images.rootfs_containers())? {
            self.log(format_args!(
                "removing what container {} left on disk: its record is gone",
                ids::short(&id)
            ));
            images
                .remove_rootfs(&id)
                .map_err(|e| Error::Image(e.to_string()))?;
        }
        Ok(())
    }

    /// The image store (opened on first use).
    pub fn images(&self) -> Result<&images::ImageStore> {
        if let Some(s) = self.images.get() {
            return Ok(s);
        }
        // Mount points on the runroot (tmpfs): one directory less on disk per start.
        let s = images::ImageStore::open(&self.root)
            .map_err(|e| Error::Image(e.to_string()))?
            .mount_under(self.runroot.join("rootfs"));
        Ok(self.images.get_or_init(|| s))
    }

    /// The network library (opened on first use).
    pub fn netlib(&self) -> Result<&netlib::Netlib> {
        if let Some(n) = self.netlib.get() {
            return Ok(n);
        }
        let n = network::open(self)?;
        Ok(self.netlib.get_or_init(|| n))
    }

    /// With `--debug`, prints how long the step that just ended took.
    pub fn timing(&self, step: &str) {
        if self.debug {
            let now = Instant::now();
            eprintln!(
                "rbox: timing: {step:<18} {:>7.2} ms  (total {:>7.2} ms)",
                (now - self.last.get()).as_secs_f64() * 1e3,
                (now - self.started).as_secs_f64() * 1e3
            );
            self.last.set(now);
        }
    }

    /// With `--debug`, prints a line about what rbox does.
    pub fn log(&self, msg: impl std::fmt::Display) {
        if self.debug {
            eprintln!("rbox: {msg}");
        }
    }
}
