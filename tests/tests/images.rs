//! Image labs: a real registry (Debian's docker-registry) on each lab's own loopback,
//! driven through `rbox pull`, `images`, `image inspect`, `rmi`, `login`, `load`,
//! `save`.

mod images_support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use images_support::*;
use rbox_tests::{Host, test_image_dir};
use serde_json::Value;

/// diffID and manifest digest of the busybox test image.
fn test_image_ids() -> (String, String) {
    let layout = Layout {
        dir: test_image_dir().join("oci"),
    };
    let manifest = layout.manifest_for("latest");
    let blob = |d: &str| fs::read(layout.dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let m: Value = serde_json::from_slice(&blob(&manifest.1)).unwrap();
    let c: Value = serde_json::from_slice(&blob(m["config"]["digest"].as_str().unwrap())).unwrap();
    (
        c["rootfs"]["diff_ids"][0].as_str().unwrap().to_string(),
        manifest.1,
    )
}

fn store_entries(host: &Host, sub: &str) -> Vec<String> {
    fs::read_dir(host.dir().join("root/images").join(sub))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn oci_layout() -> String {
    format!("{}:latest", test_image_dir().join("oci").display())
}

#[test]
fn pull_list_inspect_and_remove() {
    let host = Host::new("pull");
    let registry = Registry::start(&host, None);
    registry.push(&host, &oci_layout(), "busybox:latest", None);
    let (diff_id, manifest) = test_image_ids();

    let out = host.rbox_ok(&["pull", "127.0.0.1:5000/busybox:latest"]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {manifest}")), "{out}");
    assert!(
        out.trim_end().ends_with("127.0.0.1:5000/busybox:latest"),
        "{out}"
    );
    // The same image under another name: nothing is downloaded again.
    let out = host.rbox_ok(&["pull", "localhost:5000/busybox"]);
    assert!(out.contains("Already exists"), "{out}");
    let out = host.rbox_ok(&["pull", "localhost:5000/busybox"]);
    assert!(out.contains("Status: Image is up to date"), "{out}");

    let list = host.rbox_ok(&["images"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    assert_eq!(lines.len(), 3, "{list}");
    let inspect_json = inspect(&host, "localhost:5000/busybox");
    let id = inspect_json["Id"].as_str().unwrap().to_string();
    for (line, repo) in lines[1..]
        .iter()
        .zip(["127.0.0.1:5000/busybox", "localhost:5000/busybox"])
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(lines[1..].iter().any(|l| l.starts_with(repo)), "{list}");
        assert_eq!(cols[1], "latest");
        assert_eq!(cols[2], &id[7..19]);
        assert!(line.contains("ago") && line.ends_with("MB"), "{line}");
    }
    assert_eq!(host.rbox_ok(&["images", "-q"]).trim(), &id[7..19]);
    let digests = host.rbox_ok(&["images", "--digests", "localhost:5000/busybox"]);
    assert!(digests.contains(&manifest), "{digests}");

    assert_eq!(inspect_json["RepoTags"].as_array().unwrap().len(), 2);
    assert_eq!(inspect_json["Architecture"], "amd64");
    assert_eq!(inspect_json["Os"], "linux");
    assert_eq!(inspect_json["Config"]["Cmd"][0], "sh");
    assert_eq!(inspect_json["RootFS"]["Layers"][0], diff_id.as_str());
    assert!(inspect_json["Size"].as_u64().unwrap() > 1_000_000);
    assert!(
        inspect_json["RepoDigests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str() == Some(&format!("127.0.0.1:5000/busybox@{manifest}")))
    );
    // The layer is unpacked once and shows the image's files.
    let layer = host
        .dir()
        .join("root/images/layers")
        .join(&diff_id[7..])
        .join("diff");
    assert!(layer.join("bin/busybox").is_file());
    assert!(
        fs::symlink_metadata(layer.join("bin/sh"))
            .unwrap()
            .is_symlink()
    );

    // One name goes, then the image with the last one; the store is left empty.
    let out = host.rbox_ok(&["rmi", "127.0.0.1:5000/busybox"]);
    assert_eq!(out.trim(), "Untagged: 127.0.0.1:5000/busybox:latest");
    let out = host.rbox_ok(&["image", "rm", &id[7..19]]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(host.rbox_ok(&["images", "-q"]), "");
    assert_eq!(store_entries(&host, "blobs/sha256"), Vec::<String>::new());
    assert_eq!(store_entries(&host, "layers"), Vec::<String>::new());
    let (code, err) = host.rbox_fails(&["rmi", "busybox"]);
    assert_eq!(code, 125);
    assert!(err.contains("no such image"), "{err}");
    let (_, err) = host.rbox_fails(&["pull", "127.0.0.1:5000/absent:latest"]);
    assert!(err.contains("not found"), "{err}");
    let (_, err) = host.rbox_fails(&["pull", "Bad//Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    drop(registry);
}

#[test]
fn basic_auth_registry_and_login() {
    let host = Host::new("auth");
    let registry = Registry::start(&host, Some(("alice", "s3cret")));
    registry.push(
        &host,
        &oci_layout(),
        "private/busybox:1",
        Some("alice:s3cret"),
    );
    let config_dir = host.dir().join("docker-config");
    let env = [("DOCKER_CONFIG", config_dir.as_path())];

    let out = rbox_env(&host, &["pull", "127.0.0.1:5000/private/busybox:1"], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rbox login 127.0.0.1:5000"), "{err}");

    let login = |password: &str| {
        host.command("sh")
            .arg("-c")
            .arg(format!(
                "echo {password} | {} login -u alice --password-stdin 127.0.0.1:5000",
                rbox_path()
            ))
            .env("DOCKER_CONFIG", &config_dir)
            .output()
            .unwrap()
    };
    let bad = login("wrong");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("incorrect username or password"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(
        !config_dir.join("config.json").exists(),
        "failed login stores nothing"
    );
    let good = login("s3cret");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("Login Succeeded"));
    let config: Value =
        serde_json::from_slice(&fs::read(config_dir.join("config.json")).unwrap()).unwrap();
    assert!(
        config["auths"]["127.0.0.1:5000"]["auth"].is_string(),
        "{config}"
    );

    let out = rbox_env_ok(&host, &["pull", "127.0.0.1:5000/private/busybox:1"], &env);
    assert!(out.contains("Pull complete"), "{out}");

    let out = rbox_env_ok(&host, &["logout", "127.0.0.1:5000"], &env);
    assert!(
        out.contains("Removing login credentials for 127.0.0.1:5000"),
        "{out}"
    );
    host.rbox_ok(&["rmi", "127.0.0.1:5000/private/busybox:1"]);
    assert!(
        !rbox_env(&host, &["pull", "127.0.0.1:5000/private/busybox:1"], &env)
            .status
            .success()
    );
    // podman's variable names the file itself.
    let auth_file = host.dir().join("auth.json");
    let out = host
        .command("sh")
        .arg("-c")
        .arg(format!(
            "{} login -u alice -p s3cret 127.0.0.1:5000",
            rbox_path()
        ))
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(auth_file.exists());
    rbox_env_ok(
        &host,
        &["pull", "127.0.0.1:5000/private/busybox:1"],
        &[("REGISTRY_AUTH_FILE", &auth_file)],
    );
    drop(registry);
}

#[test]
fn multi_platform_index_selects_the_host_platform() {
    let host = Host::new("multiarch");
    let registry = Registry::start(&host, None);
    let layout = Layout::copy_of(&test_image_dir().join("oci"), &host.dir().join("multi"));
    let amd64 = layout.manifest_for("latest");
    let arm_layer = layer(&[dir("etc/"), file("etc/platform", b"arm64\n")]);
    let arm64 = layout.image("arm64", &[&arm_layer]);
    let index = layout.platform_index(&[(&arm64, "arm64"), (&amd64, "amd64")]);
    layout.tag("multi", &index);
    registry.push(
        &host,
        &format!("{}:multi", layout.dir.display()),
        "multi:latest",
        None,
    );

    // What the registry serves for the tag: an index (skopeo may re-encode ours).
    let served = host.sh_ok(
        "curl -s -H 'Accept: application/vnd.oci.image.index.v1+json' \
         http://127.0.0.1:5000/v2/multi/manifests/latest",
    );
    assert!(
        served.contains("arm64") && served.contains("amd64"),
        "{served}"
    );
    let index_digest = sha256(served.as_bytes());
    let out = host.rbox_ok(&["pull", "127.0.0.1:5000/multi:latest"]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    let image = inspect(&host, "127.0.0.1:5000/multi");
    assert_eq!(
        image["Architecture"], "amd64",
        "the host's platform is chosen"
    );
    assert_eq!(image["RootFS"]["Layers"][0], test_image_ids().0.as_str());
    assert!(
        image["RepoDigests"][0]
            .as_str()
            .unwrap()
            .ends_with(&index_digest),
        "the repo digest is the index's: {image}"
    );
    // Another platform on request.
    host.rbox_ok(&[
        "pull",
        "--platform",
        "linux/arm64",
        "127.0.0.1:5000/multi:latest",
    ]);
    let image = inspect(&host, "127.0.0.1:5000/multi");
    assert_eq!(image["Architecture"], "arm64");
    assert_eq!(image["RootFS"]["Layers"][0], sha256(&arm_layer).as_str());
    let (_, err) = host.rbox_fails(&[
        "pull",
        "--platform",
        "linux/s390x",
        "127.0.0.1:5000/multi:latest",
    ]);
    assert!(
        err.contains("no manifest for platform linux/s390x"),
        "{err}"
    );
    drop(registry);
}

#[test]
fn interrupted_pull_is_completed_by_the_next() {
    let host = Host::new("resume");
    let registry = Registry::start(&host, None);
    // A 48 MB layer of random bytes (incompressible), uncompressed.
    let mut big = vec![0u8; 48 << 20];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut big))
        .unwrap();
    let big_layer = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(big.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "big.bin", &big[..]).unwrap();
        b.into_inner().unwrap()
    };
    drop(big);
    let layout = Layout::new(&host.dir().join("big"));
    let manifest = layout.image("amd64", &[&big_layer]);
    layout.tag("latest", &manifest);
    registry.push(
        &host,
        &format!("{}:latest", layout.dir.display()),
        "big:latest",
        None,
    );
    drop(big_layer);
    // skopeo compresses layers on push: the registry's manifest names the blob.
    let served: Value = serde_json::from_str(&host.sh_ok(
        "curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
         http://127.0.0.1:5000/v2/big/manifests/latest",
    ))
    .unwrap();
    let blob = served["layers"][0]["digest"].as_str().unwrap().to_string();

    // Slow the lab's loopback down (about 4 MB/s) so that the pull can be killed mid-way.
    // The bucket must hold a whole loopback packet (64 KiB) or nothing passes.
    host.sh_ok("tc qdisc add dev lo root tbf rate 32mbit burst 1mb latency 1s");
    let pid_file = host.dir().join("pull.pid");
    let mut child = host
        .command("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}; exec {} pull -q 127.0.0.1:5000/big:latest",
            pid_file.display(),
            rbox_path()
        ))
        .spawn()
        .unwrap();
    let partial = host.dir().join("root/images/ingest").join(&blob[7..]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < (2 << 20) {
        assert!(Instant::now() < deadline, "download did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the PID of the rbox process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    let got = fs::metadata(&partial).unwrap().len();
    assert!(
        got < 48 << 20,
        "the pull was killed before it finished ({got} bytes)"
    );
    assert!(
        !host
            .dir()
            .join("root/images/blobs/sha256")
            .join(&blob[7..])
            .exists(),
        "a partial blob is never visible"
    );
    assert_eq!(
        host.rbox_ok(&["images", "-q"]),
        "",
        "no half-pulled image is listed"
    );

    host.sh_ok("tc qdisc del dev lo root");
    let out = host.rbox_ok(&["pull", "127.0.0.1:5000/big:latest"]);
    assert!(out.contains("Resuming download at byte"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    let image = inspect(&host, "127.0.0.1:5000/big");
    assert_eq!(image["Size"], 48 << 20);
    assert!(!partial.exists());
    drop(registry);
}

#[test]
fn load_save_round_trip() {
    let host = Host::new("archives");
    let (diff_id, _) = test_image_ids();
    let out = host.rbox_ok(&[
        "load",
        "-i",
        test_image_dir().join("busybox.tar").to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    let id = inspect(&host, "busybox")["Id"]
        .as_str()
        .unwrap()
        .to_string();

    // A docker-archive, through stdin.
    let archive = host.dir().join("docker.tar");
    host.sh_ok(&format!(
        "skopeo copy -q oci:{} docker-archive:{}:busybox:v2",
        oci_layout(),
        archive.display()
    ));
    let out = host.sh_ok(&format!("{} load < {}", rbox_path(), archive.display()));
    assert_eq!(out.trim(), "Loaded image: busybox:v2");
    assert_eq!(
        inspect(&host, "busybox:v2")["Id"],
        id.as_str(),
        "same config, same ID"
    );
    assert_eq!(
        inspect(&host, "busybox:v2")["RootFS"]["Layers"][0],
        diff_id.as_str()
    );
    assert_eq!(host.rbox_ok(&["images"]).lines().count(), 3);

    // Save, check with skopeo that it is a valid OCI archive, remove, load it back.
    let saved = host.dir().join("saved.tar");
    host.rbox_ok(&["save", "-o", saved.to_str().unwrap(), "busybox:latest"]);
    let skopeo = host.sh_ok(&format!(
        "skopeo inspect --raw oci-archive:{}",
        saved.display()
    ));
    assert!(skopeo.contains("layers"), "{skopeo}");
    host.rbox_ok(&["rmi", "busybox:latest", "busybox:v2"]);
    assert_eq!(host.rbox_ok(&["images", "-q"]), "");
    let out = host.rbox_ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    assert_eq!(inspect(&host, "busybox")["Id"], id.as_str());

    // Failures leave nothing: a missing image, a file that is no archive.
    let (_, err) = host.rbox_fails(&[
        "save",
        "-o",
        host.dir().join("x.tar").to_str().unwrap(),
        "nope",
    ]);
    assert!(err.contains("no such image"), "{err}");
    assert!(!host.dir().join("x.tar").exists());
    fs::write(host.dir().join("junk.tar"), b"not a tar at all").unwrap();
    let (code, _) = host.rbox_fails(&["load", "-i", host.dir().join("junk.tar").to_str().unwrap()]);
    assert_eq!(code, 125);
    assert_eq!(host.rbox_ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn concurrent_loads_and_pulls_keep_the_store_consistent() {
    let host = Host::new("concurrent");
    let registry = Registry::start(&host, None);
    registry.push(&host, &oci_layout(), "busybox:latest", None);
    let tar = test_image_dir().join("busybox.tar");
    let script = format!(
        "for i in 1 2 3; do {r} load -q -i {t} & {r} pull -q 127.0.0.1:5000/busybox & done; wait",
        r = rbox_path(),
        t = tar.display()
    );
    host.sh_ok(&script);
    assert_eq!(host.rbox_ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(host.rbox_ok(&["images"]).lines().count(), 3);
    assert_eq!(store_entries(&host, "layers").len(), 1);
    // Removing while loading: whatever the order, the store ends consistent.
    let script = format!(
        "{r} load -q -i {t} & {r} rmi -f busybox 127.0.0.1:5000/busybox; wait; {r} load -q -i {t}",
        r = rbox_path(),
        t = tar.display()
    );
    host.sh(&script);
    let layer = host
        .dir()
        .join("root/images/layers")
        .join(&test_image_ids().0[7..])
        .join("diff");
    assert!(layer.join("bin/busybox").is_file());
    assert!(Path::new(&layer).exists());
    drop(registry);
}
