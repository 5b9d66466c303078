//! Shared by the image labs: a registry server in a lab host, and builders for OCI
//! layouts, docker archives and (hostile) layers.

#![allow(dead_code)] // each lab file uses a different part

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rbox_tests::{Host, bin, expect_ok};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Docker's `docker-registry` serving on the lab's own 127.0.0.1:5000.
pub struct Registry {
    child: Child,
    pub addr: &'static str,
}

impl Registry {
    /// Starts a registry in `host`; with `credentials`, it requires basic auth.
    pub fn start(host: &Host, credentials: Option<(&str, &str)>) -> Registry {
        let dir = host.dir().join("registry");
        fs::create_dir_all(&dir).unwrap();
        let auth = match credentials {
            Some((user, pass)) => {
                let htpasswd = dir.join("htpasswd");
                host.sh_ok(&format!(
                    "htpasswd -Bbn {user} {pass} > {}",
                    htpasswd.display()
                ));
                format!(
                    "auth:\n  htpasswd:\n    realm: lab\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n{auth}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("log")).unwrap();
        let child = host
            .command("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        assert!(
            host.wait_for(
                "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/ | grep -qE '200|401'",
                Duration::from_secs(15)
            ),
            "registry did not start: {}",
            fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        Registry {
            child,
            addr: "127.0.0.1:5000",
        }
    }

    /// Pushes an OCI layout (`DIR:TAG`) as `repo:tag`, all platforms.
    pub fn push(&self, host: &Host, layout: &str, dest: &str, creds: Option<&str>) {
        let creds = creds
            .map(|c| format!("--dest-creds {c}"))
            .unwrap_or_default();
        host.sh_ok(&format!(
            "skopeo copy -q --all --dest-tls-verify=false {creds} oci:{layout} docker://{}/{dest}",
            self.addr
        ));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `rbox ARGS` in `host` with extra environment; returns the output.
pub fn rbox_env(host: &Host, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = host.rbox_command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn rbox_env_ok(host: &Host, args: &[&str], env: &[(&str, &Path)]) -> String {
    expect_ok(
        &format!("rbox {}", args.join(" ")),
        rbox_env(host, args, env),
    )
}

/// The `image inspect` JSON of one image.
pub fn inspect(host: &Host, image: &str) -> Value {
    let out = host.rbox_ok(&["image", "inspect", image]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// A tar entry with its raw name (a hostile layer can hold what the tar crate refuses).
pub struct Entry<'a> {
    pub kind: tar::EntryType,
    pub name: &'a str,
    pub link: &'a str,
    pub data: &'a [u8],
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        kind: tar::EntryType::Regular,
        name,
        link: "",
        data,
    }
}

pub fn dir(name: &str) -> Entry<'_> {
    Entry {
        kind: tar::EntryType::Directory,
        name,
        link: "",
        data: b"",
    }
}

pub fn symlink<'a>(name: &'a str, target: &'a str) -> Entry<'a> {
    Entry {
        kind: tar::EntryType::Symlink,
        name,
        link: target,
        data: b"",
    }
}

pub fn hardlink<'a>(name: &'a str, target: &'a str) -> Entry<'a> {
    Entry {
        kind: tar::EntryType::Link,
        name,
        link: target,
        data: b"",
    }
}

/// An uncompressed layer with the entries written as given.
pub fn layer(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        assert!(
            e.name.len() <= 100 && e.link.len() <= 100,
            "raw names are at most 100 bytes"
        );
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1000);
        let old = h.as_old_mut();
        old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn config_json(arch: &str, layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// A `docker save` archive of one image `name` with `layers` (uncompressed).
pub fn docker_archive(name: &str, layers: &[&[u8]]) -> Vec<u8> {
    let config = config_json("amd64", layers);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("config.json", &config);
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("{i}/layer.tar");
        add(&p, l);
        paths.push(p);
    }
    let manifest = json!([{"Config": "config.json", "RepoTags": [name], "Layers": paths}]);
    add("manifest.json", manifest.to_string().as_bytes());
    b.into_inner().unwrap()
}

/// An OCI image layout directory being built.
pub struct Layout {
    pub dir: PathBuf,
}

/// A descriptor: (media type, digest, size).
pub type Desc = (String, String, usize);

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// A copy of an existing layout (e.g. the busybox test image).
    pub fn copy_of(src: &Path, dir: &Path) -> Layout {
        let status = Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(dir)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn put(&self, media_type: &str, bytes: &[u8]) -> Desc {
        let d = sha256(bytes);
        fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (media_type.to_string(), d, bytes.len())
    }

    /// Stores an image of uncompressed `layers` for `arch`; returns its manifest.
    pub fn image(&self, arch: &str, layers: &[&[u8]]) -> Desc {
        let config = self.put(
            "application/vnd.oci.image.config.v1+json",
            &config_json(arch, layers),
        );
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|l| desc_json(&self.put("application/vnd.oci.image.layer.v1.tar", l)))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc_json(&config),
            "layers": layer_descs,
        });
        self.put(
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        )
    }

    /// The manifest the layout's index names `tag`.
    pub fn manifest_for(&self, tag: &str) -> Desc {
        let index: Value =
            serde_json::from_slice(&fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        let m = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .expect("tag in index");
        (
            m["mediaType"].as_str().unwrap().into(),
            m["digest"].as_str().unwrap().into(),
            m["size"].as_u64().unwrap() as usize,
        )
    }

    /// Writes index.json with `tag` → `target`.
    pub fn tag(&self, tag: &str, target: &Desc) {
        let mut d = desc_json(target);
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "manifests": [d]});
        fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }

    /// Stores a multi-platform index of (manifest, arch) entries.
    pub fn platform_index(&self, entries: &[(&Desc, &str)]) -> Desc {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|(d, arch)| {
                let mut v = desc_json(d);
                v["platform"] = json!({"os": "linux", "architecture": arch});
                v
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        self.put(
            "application/vnd.oci.image.index.v1+json",
            index.to_string().as_bytes(),
        )
    }
}

fn desc_json(d: &Desc) -> Value {
    json!({"mediaType": d.0, "digest": d.1, "size": d.2})
}

/// The path of the built `rbox`, for shell pipelines inside a lab.
pub fn rbox_path() -> String {
    bin("rbox").display().to_string()
}
