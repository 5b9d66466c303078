//! `rbox create` (and the first half of `run`): check everything, find or pull the
//! image, and record the container with the image's config merged into its process.

use std::collections::BTreeMap;

use chrono::Utc;

use super::error::{Error, Result};
use super::options::{ContainerOptions, NETWORK_HOST};
use super::record::{ContainerRecord, ContainerState, ImageInfo, ProcessConfig};
use super::{Engine, ids, network};

/// Seconds `stop` waits after the stop signal, unless the container says otherwise.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// The process of a container: the image's config with the flags applied, Docker's way.
pub fn process_config(
    id: &str,
    opts: &ContainerOptions,
    image: &images::ImageConfig,
) -> ProcessConfig {
    let entrypoint = opts
        .entrypoint
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone().unwrap_or_default());
    // A new entrypoint drops the image's command; arguments replace it.
    let cmd = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone().unwrap_or_default()
    };
    let host_network = opts.networks.iter().any(|n| n.name == NETWORK_HOST);
    let hostname = match &opts.hostname {
        Some(h) => h.clone(),
        None if host_network => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        None => ids::short(id).to_string(),
    };
    let mut exposed = image.exposed_ports.clone();
    for p in &opts.ports {
        for port in p.container_ports.0..=p.container_ports.1 {
            let key = format!("{port}/{}", p.protocol.as_str());
            if !exposed.contains(&key) {
                exposed.push(key);
            }
        }
    }
    let mut labels: BTreeMap<String, String> = image.labels.clone();
    labels.extend(opts.labels.clone());
    ProcessConfig {
        entrypoint,
        cmd,
        env: image.env.iter().chain(&opts.env).cloned().collect(),
        workdir: opts
            .workdir
            .clone()
            .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_default(),
        user: opts
            .user
            .clone()
            .or_else(|| image.user.clone())
            .unwrap_or_default(),
        hostname,
        stop_signal: opts
            .stop_signal
            .clone()
            .or_else(|| image.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        stop_timeout: opts.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        exposed_ports: exposed,
        labels,
    }
}

/// Everything that can be checked against rbox's state without creating anything.
pub fn validate(engine: &Engine, opts: &ContainerOptions) -> Result<()> {
    if let Some(name) = &opts.name
        && let Ok(id) = engine.store.resolve_name(name)
    {
        return Err(Error::NameInUse {
            name: name.clone(),
            id: ids::short(&id).to_string(),
        });
    }
    super::ports::validate(opts)?;
    network::validate(engine, opts)
}

/// Records a new container from checked options: the image is found, or pulled with
/// progress on stderr. Nothing is left behind on failure.
pub fn create(engine: &Engine, opts: ContainerOptions) -> Result<ContainerRecord> {
    validate(engine, &opts)?;
    engine.timing("validate");
    let store = engine.images()?;
    let progress = images::ConsoleProgress::new(images::Console::Stderr);
    let image = store
        .resolve_or_pull(&opts.image, &images::PullOptions::default(), &progress)
        .map_err(|e| Error::Image(e.to_string()))?;
    engine.timing("image");
    let id = ids::new_id();
    let config = process_config(&id, &opts, &image.config);
    if config.argv().is_empty() {
        return Err(Error::Other(format!(
            "no command specified: image {} has neither an entrypoint nor a command; give one after the image",
            opts.image
        )));
    }
    let reference = images::Reference::parse(&opts.image)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| opts.image.clone());
    let rec = ContainerRecord {
        name: opts.name.clone().unwrap_or_else(ids::random_name),
        id,
        created: Utc::now(),
        image: ImageInfo {
            reference,
            id: image.id.to_string(),
        },
        config,
        cgroup_parent: engine.cgroup_parent.clone(),
        options: opts,
        state: ContainerState::default(),
    };
    engine.store.create(&rec)?;
    engine.timing("record");
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::NetworkRequest;

    fn image() -> images::ImageConfig {
        images::ImageConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: Some("/srv".into()),
            user: Some("nobody".into()),
            exposed_ports: vec!["80/tcp".into()],
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        }
    }

    #[test]
    fn image_defaults_and_overrides() {
        let id = "f".repeat(64);
        let opts = ContainerOptions {
            networks: vec![NetworkRequest {
                name: "bridge".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = process_config(&id, &opts, &image());
        assert_eq!(p.argv(), ["/entry", "serve"]);
        assert_eq!(
            (p.workdir.as_str(), p.user.as_str(), p.stop_signal.as_str()),
            ("/srv", "nobody", "SIGQUIT")
        );
        assert_eq!(p.hostname, "ffffffffffff");
        assert_eq!(p.stop_timeout, DEFAULT_STOP_TIMEOUT);

        let opts = ContainerOptions {
            command: vec!["x".into()],
            env: vec!["A=flag".into()],
            ..opts
        };
        let p = process_config(&id, &opts, &image());
        assert_eq!(p.argv(), ["/entry", "x"]);
        assert_eq!(p.env.last().unwrap(), "A=flag");

        // --entrypoint drops the image's command.
        let opts = ContainerOptions {
            entrypoint: Some(vec!["/bin/sh".into()]),
            command: vec![],
            ..opts
        };
        assert_eq!(process_config(&id, &opts, &image()).argv(), ["/bin/sh"]);
        // --entrypoint "" with a command runs just the command.
        let opts = ContainerOptions {
            entrypoint: Some(vec![]),
            command: vec!["echo".into()],
            ..opts
        };
        assert_eq!(process_config(&id, &opts, &image()).argv(), ["echo"]);
    }

    #[test]
    fn published_ports_are_exposed() {
        let opts = ContainerOptions {
            ports: vec![crate::engine::options::parse_port("90-91/udp").unwrap()],
            ..Default::default()
        };
        let p = process_config(&"a".repeat(64), &opts, &image());
        assert_eq!(p.exposed_ports, ["80/tcp", "90/udp", "91/udp"]);
    }
}
