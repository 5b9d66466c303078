//! `rbox save`: an OCI image layout archive of one or more images.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{Value, json};

use super::{ArchiveError, NAME_ANNOTATION, OCI_MANIFEST, REF_NAME_ANNOTATION};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::store::{ImageStore, familiar};

fn write_err(e: std::io::Error) -> Error {
    ArchiveError::Write(e).into()
}

impl ImageStore {
    /// Writes `images` (names or IDs) as an OCI layout archive to `out`. An image
    /// named by a tag is saved under that name; one named by ID under all its names.
    pub fn save(&self, images: &[&str], out: impl Write) -> Result<()> {
        let records = self.index.read()?;
        let mut index_entries = Vec::new();
        let mut docker_entries = Vec::new();
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        for query in images {
            let record = records.find(query)?;
            let names: Vec<String> =
                match Reference::parse(query).ok().and_then(|r| r.tagged_name()) {
                    Some(n) if record.names.contains(&n) => vec![n],
                    _ => record.names.clone(),
                };
            let manifest_bytes = self.blobs.read(&record.manifest)?;
            let manifest: Value = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| Error::invalid("manifest", e))?;
            let media_type = manifest
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or(OCI_MANIFEST)
                .to_string();
            let layer_blobs: Vec<Digest> = manifest["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["digest"].as_str().and_then(|d| Digest::parse(d).ok()))
                .collect();
            blobs.insert(record.manifest.clone());
            blobs.insert(record.id.clone());
            blobs.extend(layer_blobs.iter().cloned());
            let descriptor = |name: Option<&String>| {
                let mut d = json!({
                    "mediaType": media_type,
                    "digest": record.manifest,
                    "size": manifest_bytes.len(),
                });
                if let Some(name) = name {
                    let tag = Reference::parse(name)
                        .ok()
                        .and_then(|r| r.tag().map(str::to_string));
                    d["annotations"] = json!({
                        NAME_ANNOTATION: name,
                        REF_NAME_ANNOTATION: tag.unwrap_or_else(|| "latest".into()),
                    });
                }
                d
            };
            if names.is_empty() {
                index_entries.push(descriptor(None));
            }
            for n in &names {
                index_entries.push(descriptor(Some(n)));
            }
            docker_entries.push(json!({
                "Config": format!("blobs/sha256/{}", record.id.hex()),
                "RepoTags": names.iter().map(|n| familiar(n)).collect::<Vec<_>>(),
                "Layers": layer_blobs.iter().map(|d| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
            }));
        }

        let mut tar = tar::Builder::new(out);
        let mut add = |path: &str, bytes: &[u8]| -> Result<()> {
            tar.append_data(&mut header(bytes.len() as u64), path, bytes)
                .map_err(write_err)
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index_entries,
        });
        add(
            "index.json",
            &serde_json::to_vec(&index).expect("JSON serialises"),
        )?;
        add(
            "manifest.json",
            &serde_json::to_vec(&docker_entries).expect("JSON serialises"),
        )?;
        for d in &blobs {
            let mut file = self.blobs.open_blob(d)?;
            let size = file.metadata().map_err(write_err)?.len();
            tar.append_data(
                &mut header(size),
                format!("blobs/sha256/{}", d.hex()),
                &mut file,
            )
            .map_err(write_err)?;
        }
        tar.into_inner()
            .map_err(write_err)?
            .flush()
            .map_err(write_err)
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}
