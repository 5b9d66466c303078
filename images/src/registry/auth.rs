//! Registry credentials in Docker's `config.json` format (`{"auths": {HOST: {"auth":
//! base64(user:password)}}}`), read and written like docker and podman do:
//! `$REGISTRY_AUTH_FILE` if set (podman), else `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`. Other keys of the file are kept as they are.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};

/// Docker Hub's key in `config.json`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// The credentials file in use.
pub fn auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker/config.json")
}

/// `docker.io` for Docker Hub's aliases; otherwise the host[:port] of a key, without
/// scheme or path (keys may be URLs like `https://host/v1/`).
fn registry_of_key(key: &str) -> &str {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        other => other,
    }
}

fn key_for(registry: &str) -> String {
    if registry_of_key(registry) == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn read_config(path: &Path) -> Result<Map<String, Value>> {
    match fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(Error::Io {
                path: path.to_path_buf(),
                error: io::Error::new(io::ErrorKind::InvalidData, "not a JSON object"),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e).at(path),
    }
}

/// Credentials stored for `registry` (host[:port], `docker.io` for Docker Hub).
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    lookup_in(&auth_file(), registry)
}

pub(crate) fn lookup_in(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let config = read_config(path)?;
    let Some(Value::Object(auths)) = config.get("auths") else {
        return Ok(None);
    };
    let wanted = registry_of_key(registry);
    for (key, entry) in auths {
        if registry_of_key(key) != wanted {
            continue;
        }
        if let Some(encoded) = entry.get("auth").and_then(Value::as_str)
            && let Ok(decoded) = STANDARD.decode(encoded.trim())
            && let Ok(text) = String::from_utf8(decoded)
            && let Some((user, pass)) = text.split_once(':')
        {
            return Ok(Some(Credentials {
                username: user.to_string(),
                password: pass.to_string(),
            }));
        }
    }
    Ok(None)
}

/// Stores credentials for `registry`; returns the file written.
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let path = auth_file();
    store_in(&path, registry, creds)?;
    Ok(path)
}

pub(crate) fn store_in(path: &Path, registry: &str, creds: &Credentials) -> Result<()> {
    update(path, |auths| {
        auths.retain(|k, _| registry_of_key(k) != registry_of_key(registry));
        let encoded = STANDARD.encode(format!("{}:{}", creds.username, creds.password));
        auths.insert(key_for(registry), json!({ "auth": encoded }));
        true
    })
    .map(drop)
}

/// Forgets the credentials for `registry`; returns false when there were none.
pub fn erase(registry: &str) -> Result<bool> {
    erase_in(&auth_file(), registry)
}

pub(crate) fn erase_in(path: &Path, registry: &str) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    update(path, |auths| {
        let before = auths.len();
        auths.retain(|k, _| registry_of_key(k) != registry_of_key(registry));
        auths.len() != before
    })
}

/// Read-modify-write of the `auths` map under a lock; the file stays private (0600).
fn update(path: &Path, f: impl FnOnce(&mut Map<String, Value>) -> bool) -> Result<bool> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .at(dir)?;
    }
    let lock_path = path.with_extension("json.lock");
    let _lock = FileLock::exclusive(&lock_path).at(&lock_path)?;
    let mut config = read_config(path)?;
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let changed = f(auths.as_object_mut().expect("made an object above"));
    if changed {
        let bytes = serde_json::to_vec_pretty(&Value::Object(config)).expect("JSON serialises");
        let tmp = fsutil::temp_path_for(path);
        let result = (|| {
            fs::write(&tmp, &bytes)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fsutil::remove_file(&tmp);
        }
        result.at(path)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lookup_erase_round_trip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store_in(&path, "localhost:5000", &c).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Foreign keys survive our writes.
        let mut v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        v["credHelpers"] = json!({"x": "y"});
        fs::write(&path, v.to_string()).unwrap();
        store_in(&path, "docker.io", &c).unwrap();
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["credHelpers"]["x"], "y");
        assert_eq!(
            v["auths"]["localhost:5000"]["auth"],
            STANDARD.encode("u:p:w")
        );
        assert!(v["auths"][DOCKER_HUB_KEY].is_object());
        assert_eq!(lookup_in(&path, "localhost:5000").unwrap(), Some(c.clone()));
        assert_eq!(lookup_in(&path, "docker.io").unwrap(), Some(c.clone()));
        assert_eq!(lookup_in(&path, "other:5000").unwrap(), None);
        assert!(erase_in(&path, "localhost:5000").unwrap());
        assert!(!erase_in(&path, "localhost:5000").unwrap());
        assert_eq!(lookup_in(&path, "localhost:5000").unwrap(), None);
    }

    #[test]
    fn keys_written_by_docker_are_understood() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(
            &path,
            json!({"auths": {
                "https://index.docker.io/v1/": {"auth": STANDARD.encode("hub:secret")},
                "https://reg.example:8443/v2/": {"auth": STANDARD.encode("me:pw")},
            }})
            .to_string(),
        )
        .unwrap();
        assert_eq!(
            lookup_in(&path, "docker.io").unwrap().unwrap().username,
            "hub"
        );
        assert_eq!(
            lookup_in(&path, "reg.example:8443")
                .unwrap()
                .unwrap()
                .password,
            "pw"
        );
        assert_eq!(
            lookup_in(&dir.path().join("missing.json"), "docker.io").unwrap(),
            None
        );
    }
}
