//! Pulling from OCI distribution registries (oci-client underneath): Docker Hub's
//! anonymous bearer tokens, basic auth from stored credentials, plain HTTP for
//! loopback and insecure registries, the host's platform from multi-platform indexes,
//! parallel layer downloads that resume where an interrupted pull stopped.

pub mod auth;
mod login;

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::Client;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use thiserror::Error;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::{self, Platform};
use crate::progress::{LayerState, Progress, PullEvent};
use crate::reference::Reference;
use crate::store::{Image, ImageStore, NewImage};
pub use auth::Credentials;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error(
        "registry {registry} denied access to {reference}: {detail} \
         (if it needs credentials, run `rbox login {registry}`)"
    )]
    Unauthorized {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error("login to {registry} failed: {detail}")]
    LoginFailed { registry: String, detail: String },
    #[error("{reference} not found: {detail}")]
    NotFound { reference: String, detail: String },
    #[error("registry {registry} answered badly for {reference}: {detail}")]
    Protocol {
        registry: String,
        reference: String,
        detail: String,
    },
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from a multi-platform image (default: this host's).
    pub platform: Option<Platform>,
    /// Allow plain HTTP and unverified certificates for this registry
    /// (`--tls-verify=false`). Loopback registries and those listed in
    /// `<root>/images/registries.json` (`{"insecure-registries": ["host:port"]}`)
    /// are always allowed.
    pub insecure: bool,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            insecure: false,
            max_concurrent_downloads: 3,
        }
    }
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The `mediaType` and shape of a manifest-ish document.
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<i64>,
}

fn is_index(bytes: &[u8]) -> Result<bool> {
    let kind: Kind = serde_json::from_slice(bytes).map_err(|e| Error::invalid("manifest", e))?;
    if kind.schema_version != Some(2) {
        return Err(Error::invalid(
            "manifest",
            "only schema version 2 manifests (OCI or Docker v2) are supported",
        ));
    }
    Ok(match kind.media_type.as_deref() {
        Some(t) if t.contains("index") || t.contains("manifest.list") => true,
        Some(_) => false,
        None => kind.manifests.is_some(),
    })
}

/// Talking to one registry for one reference.
struct Session<'a> {
    client: Client,
    auth: RegistryAuth,
    reference: &'a Reference,
}

impl Session<'_> {
    fn err(&self, e: OciDistributionError) -> Error {
        let registry = self.reference.registry().to_string();
        let reference = self.reference.to_string();
        let detail = chain(&e);
        Error::Registry(match &e {
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
                RegistryError::Unreachable { registry, detail }
            }
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => RegistryError::Unauthorized {
                registry,
                reference,
                detail,
            },
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => RegistryError::Unauthorized {
                registry,
                reference,
                detail,
            },
            OciDistributionError::ImageManifestNotFoundError(_)
            | OciDistributionError::ServerError { code: 404, .. } => {
                RegistryError::NotFound { reference, detail }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}", e.code))
                    .collect();
                if codes.iter().any(|c| c.contains("Unknown")) {
                    RegistryError::NotFound { reference, detail }
                } else if codes
                    .iter()
                    .any(|c| c.contains("Unauthorized") || c.contains("Denied"))
                {
                    RegistryError::Unauthorized {
                        registry,
                        reference,
                        detail,
                    }
                } else {
                    RegistryError::Protocol {
                        registry,
                        reference,
                        detail,
                    }
                }
            }
            _ => RegistryError::Protocol {
                registry,
                reference,
                detail,
            },
        })
    }

    async fn manifest(&self, r: &Reference) -> Result<Vec<u8>> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(r.oci(), &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.err(e))?;
        Ok(bytes.to_vec())
    }

    async fn small_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.client
            .pull_blob(self.reference.oci(), d.as_str(), &mut out)
            .await
            .map_err(|e| self.err(e))?;
        d.verify(&out)?;
        Ok(out)
    }
}

/// An error with its causes: "error decoding response body: timed out".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

fn client(protocol: ClientProtocol, accept_invalid_certificates: bool) -> Client {
    Client::new(ClientConfig {
        protocol,
        accept_invalid_certificates,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
}

/// Registries marked insecure in `<images dir>/registries.json`.
fn insecure_registries(store_dir: &Path) -> Vec<String> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "insecure-registries", default)]
        insecure: Vec<String>,
    }
    std::fs::read(store_dir.join("registries.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Config>(&b).ok())
        .map(|c| c.insecure)
        .unwrap_or_default()
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Error::Io {
            path: "tokio runtime".into(),
            error,
        })
}

impl ImageStore {
    /// True when plain HTTP (and unverified TLS) may be used for `registry`.
    pub fn is_insecure_registry(&self, registry: &str, opts: &PullOptions) -> bool {
        opts.insecure
            || crate::reference::is_loopback_host(registry)
            || insecure_registries(&self.dir).iter().any(|r| r == registry)
    }

    /// Pulls `reference` from its registry into the store and tags it.
    pub fn pull(
        &self,
        reference: &Reference,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Image> {
        runtime()?.block_on(self.pull_async(reference, opts, progress))
    }

    /// The image named `name` from the store, pulled first if it is not there
    /// (what `rbox run IMAGE` does).
    pub fn resolve_or_pull(
        &self,
        name: &str,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Image> {
        match self.resolve(name) {
            Err(Error::NotFound(_)) => self.pull(&Reference::parse(name)?, opts, progress),
            other => other,
        }
    }

    /// Checks `creds` against `registry` and stores them in the credentials file;
    /// returns the file's path.
    pub fn login(
        &self,
        registry: &str,
        creds: &Credentials,
        opts: &PullOptions,
    ) -> Result<std::path::PathBuf> {
        let insecure = self.is_insecure_registry(registry, opts);
        runtime()?.block_on(login::check(registry, creds, insecure))?;
        auth::store(registry, creds)
    }

    /// Forgets the stored credentials of `registry`; false when there were none.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        auth::erase(registry)
    }

    /// Connects with HTTPS, falling back to plain HTTP for insecure registries, and
    /// fetches the top manifest.
    async fn connect<'a>(
        &self,
        reference: &'a Reference,
        opts: &PullOptions,
    ) -> Result<(Session<'a>, Vec<u8>)> {
        let auth = match auth::lookup(reference.registry())? {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        let insecure = self.is_insecure_registry(reference.registry(), opts);
        let protocols: &[ClientProtocol] = if insecure {
            &[ClientProtocol::Https, ClientProtocol::Http]
        } else {
            &[ClientProtocol::Https]
        };
        let mut last = None;
        for protocol in protocols {
            let session = Session {
                client: client(protocol.clone(), insecure),
                auth: auth.clone(),
                reference,
            };
            match session.manifest(reference).await {
                Ok(bytes) => return Ok((session, bytes)),
                Err(e @ Error::Registry(RegistryError::Unreachable { .. })) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn pull_async(
        &self,
        reference: &Reference,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Image> {
        let _adding = self.adding()?;
        progress.event(PullEvent::Resolving { reference });
        let (session, top) = self.connect(reference, opts).await?;
        let top_digest = Digest::of(&top);
        if let Some(d) = reference.digest()
            && d != top_digest.as_str()
        {
            return Err(crate::digest::DigestError::Mismatch {
                expected: Digest::parse(d)?,
                actual: top_digest,
            }
            .into());
        }
        let (manifest_bytes, manifest_digest, index_digest) = if is_index(&top)? {
            let index: oci_spec::image::ImageIndex =
                serde_json::from_slice(&top).map_err(|e| Error::invalid("image index", e))?;
            let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
            let chosen = platform::select(&index, &wanted)?;
            let digest = Digest::try_from(chosen.digest())?;
            let bytes = session
                .manifest(&reference.with_digest(digest.as_str()))
                .await?;
            digest.verify(&bytes)?;
            self.blobs.put(&top_digest, &top)?;
            (bytes, digest, Some(top_digest.clone()))
        } else {
            (top, top_digest.clone(), None)
        };
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| Error::invalid("manifest", e))?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config_bytes = if self.blobs.contains(&config_digest) {
            self.blobs.read(&config_digest)?
        } else {
            let bytes = session.small_blob(&config_digest).await?;
            self.blobs.put(&config_digest, &bytes)?;
            bytes
        };
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|e| Error::invalid("config", e))?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let layers = manifest
            .layers()
            .iter()
            .map(|l| Ok((Digest::try_from(l.digest())?, l.size())))
            .collect::<Result<Vec<_>>>()?;
        if diff_ids.len() != layers.len() {
            return Err(Error::invalid(
                format!("manifest {manifest_digest}"),
                format!(
                    "{} layers but the config lists {} diffIDs",
                    layers.len(),
                    diff_ids.len()
                ),
            ));
        }

        let sizes: Vec<u64> = futures::stream::iter(layers.iter().zip(&diff_ids))
            .map(|((blob, size), diff_id)| {
                self.fetch_layer(&session, blob, *size, diff_id, progress)
            })
            .buffered(opts.max_concurrent_downloads.max(1))
            .try_collect()
            .await?;

        self.blobs.put(&manifest_digest, &manifest_bytes)?;
        let mut blobs: Vec<Digest> = layers.iter().map(|(d, _)| d.clone()).collect();
        blobs.push(manifest_digest.clone());
        blobs.push(config_digest.clone());
        blobs.extend(index_digest.clone());
        let new = NewImage {
            id: config_digest,
            manifest: manifest_digest,
            index: index_digest,
            layers: diff_ids,
            blobs,
            size: sizes.iter().sum(),
        };
        let repo_digest = format!("{}@{top_digest}", reference.name());
        let (image, changed) = self.register(new, Some(reference), Some(repo_digest))?;
        progress.event(PullEvent::Done {
            reference,
            digest: &top_digest,
            updated: changed,
        });
        Ok(image)
    }

    /// Downloads (unless stored) and unpacks (unless unpacked) one layer; returns its
    /// unpacked size.
    async fn fetch_layer(
        &self,
        session: &Session<'_>,
        blob: &Digest,
        size: u64,
        diff_id: &Digest,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let report = |state| {
            progress.event(PullEvent::Layer {
                digest: blob,
                state,
            })
        };
        if let Some(meta) = self.layers.meta(diff_id)
            && self.blobs.contains(blob)
        {
            report(LayerState::AlreadyExists);
            return Ok(meta.size);
        }
        report(LayerState::Waiting);
        if !self.blobs.contains(blob) {
            self.download(session, blob, size, &report).await?;
            report(LayerState::DownloadComplete);
        }
        report(LayerState::Extracting);
        let layers = self.layers.clone();
        let path = self.blobs.path(blob);
        let diff_id = diff_id.clone();
        let meta = tokio::task::spawn_blocking(move || {
            let file = File::open(&path).map_err(|error| Error::Io { path, error })?;
            layers.ensure(&diff_id, file)
        })
        .await
        .map_err(|e| Error::Io {
            path: "unpack task".into(),
            error: std::io::Error::other(e),
        })??;
        report(LayerState::PullComplete);
        Ok(meta.size)
    }

    /// Fetches a blob into the store, continuing a partial download if one is there.
    async fn download(
        &self,
        session: &Session<'_>,
        blob: &Digest,
        size: u64,
        report: &dyn Fn(LayerState),
    ) -> Result<()> {
        for attempt in 0..2 {
            let blobs = self.blobs.clone();
            let d = blob.clone();
            let mut ingest = tokio::task::spawn_blocking(move || blobs.ingest(&d))
                .await
                .map_err(|e| Error::Io {
                    path: "ingest task".into(),
                    error: std::io::Error::other(e),
                })??;
            if ingest.is_done() {
                return Ok(());
            }
            let offset = ingest.offset();
            if offset > size {
                ingest.restart()?;
            }
            let resumed = ingest.offset() > 0;
            let desc = OciDescriptor {
                digest: blob.to_string(),
                size: size as i64,
                ..Default::default()
            };
            if ingest.offset() < size {
                let mut stream = if resumed {
                    report(LayerState::Resuming {
                        from: ingest.offset(),
                    });
                    match session
                        .client
                        .pull_blob_stream_partial(
                            session.reference.oci(),
                            &desc,
                            ingest.offset(),
                            None,
                        )
                        .await
                        .map_err(|e| session.err(e))?
                    {
                        BlobResponse::Partial(s) => s,
                        BlobResponse::Full(s) => {
                            ingest.restart()?;
                            s
                        }
                    }
                } else {
                    session
                        .client
                        .pull_blob_stream(session.reference.oci(), &desc)
                        .await
                        .map_err(|e| session.err(e))?
                };
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| session.err(OciDistributionError::IoError(e)))?;
                    ingest.write(&chunk)?;
                    report(LayerState::Downloading {
                        done: ingest.offset(),
                        total: size,
                    });
                }
            }
            report(LayerState::Verifying);
            match ingest.commit(Some(size)) {
                // A resumed download whose start was bad: once more from the first byte.
                Err(Error::Digest(_)) if resumed && attempt == 0 => continue,
                other => return other,
            }
        }
        unreachable!("the second attempt returns")
    }
}
