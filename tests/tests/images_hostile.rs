//! Hostile layers: each tries to write outside the layer's directory and must be
//! refused with a clear error, leaving nothing behind and the canary untouched.

mod images_support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use images_support::*;
use rbox_tests::Host;

#[test]
fn hostile_layers_are_refused_and_change_nothing_outside() {
    let host = Host::new("hostile");
    // The canary lives outside the store; from a layer's directory inside the lab
    // (/var/lib/rbox/images/layers/<id>.tmp/diff) ten ".." reach "/".
    let canary_dir = host.dir().join("canary");
    fs::create_dir(&canary_dir).unwrap();
    fs::write(canary_dir.join("file"), b"canary").unwrap();
    let canary = canary_dir.display().to_string();
    let up = "../".repeat(10);
    let rel_canary = format!("{up}{}", canary.trim_start_matches('/'));
    let abs_file = format!("{canary}/pwned");
    let rel_file = format!("{rel_canary}/pwned");
    let rel_link_target = format!("{rel_canary}/file");
    let rel_whiteout = format!("{rel_canary}/.wh.file");
    let abs_whiteout = format!("{canary}/.wh.file");

    let cases: Vec<(&str, Vec<Entry<'_>>, &str)> = vec![
        (
            "path traversal",
            vec![file(&rel_file, b"x")],
            "climbs out of the layer",
        ),
        (
            "absolute path",
            vec![file(&abs_file, b"x")],
            "is an absolute path",
        ),
        (
            "absolute symlink, then a write through it",
            vec![symlink("esc", &canary), file("esc/pwned", b"x")],
            "goes through the symlink \"esc\"",
        ),
        (
            "relative symlink out, then a write through it",
            vec![symlink("esc", &rel_canary), file("esc/pwned", b"x")],
            "goes through the symlink",
        ),
        (
            "symlink to a directory inside, then a write through it",
            vec![dir("real/"), symlink("esc", "real"), file("esc/x", b"x")],
            "goes through the symlink",
        ),
        (
            "hard link out of the tree",
            vec![hardlink("hl", &rel_link_target)],
            "outside the layer",
        ),
        (
            "hard link to an absolute path",
            vec![hardlink("hl", "/etc/passwd")],
            "outside the layer",
        ),
        (
            "hard link through a symlink",
            vec![symlink("esc", &canary), hardlink("hl", "esc/file")],
            "goes through the symlink",
        ),
        (
            "whiteout of ../x",
            vec![file("../.wh.x", b"")],
            "climbs out of the layer",
        ),
        (
            "whiteout of a path outside",
            vec![file(&rel_whiteout, b"")],
            "climbs out of the layer",
        ),
        (
            "absolute whiteout",
            vec![file(&abs_whiteout, b"")],
            "is an absolute path",
        ),
        (
            "whiteout through a symlink",
            vec![symlink("esc", &canary), file("esc/.wh.file", b"")],
            "goes through the symlink",
        ),
        (
            "whiteout of ..",
            vec![file("etc/.wh...", b"")],
            "invalid whiteout",
        ),
    ];
    for (i, (what, entries, message)) in cases.iter().enumerate() {
        let archive = host.dir().join(format!("hostile-{i}.tar"));
        let layer = layer(entries);
        fs::write(&archive, docker_archive(&format!("hostile:{i}"), &[&layer])).unwrap();
        let (code, err) = host.rbox_fails(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(code, 125, "{what}");
        assert!(err.contains("refusing layer sha256:"), "{what}: {err}");
        assert!(
            err.contains(message),
            "{what}: expected {message:?} in {err}"
        );
        assert_eq!(err.lines().count(), 1, "{what}: one clear sentence: {err}");

        // Nothing outside changed; nothing of the layer is left in the store.
        let meta = fs::metadata(canary_dir.join("file")).unwrap();
        assert_eq!(
            fs::read(canary_dir.join("file")).unwrap(),
            b"canary",
            "{what}"
        );
        assert_eq!(meta.nlink(), 1, "{what}: the canary was hard-linked");
        assert_eq!(fs::read_dir(&canary_dir).unwrap().count(), 1, "{what}");
        assert!(!std::path::Path::new("/etc/.wh.passwd").exists());
        let layers: Vec<_> = fs::read_dir(host.dir().join("root/images/layers"))
            .unwrap()
            .collect();
        assert!(layers.is_empty(), "{what}: a refused layer left {layers:?}");
        assert_eq!(host.rbox_ok(&["images", "-q"]), "", "{what}");
    }
}

#[test]
fn a_layer_whose_content_does_not_match_its_diff_id_is_refused() {
    let host = Host::new("diffid");
    let good = layer(&[file("a", b"1")]);
    let evil = layer(&[file("a", b"2")]);
    // The archive's config claims `good`, but the layer file holds `evil`.
    let mut archive = docker_archive("liar:latest", &[&good]);
    let pos = archive
        .windows(good.len())
        .position(|w| w == good.as_slice())
        .unwrap();
    archive[pos..pos + evil.len()].copy_from_slice(&evil);
    let path = host.dir().join("liar.tar");
    fs::write(&path, archive).unwrap();
    let (_, err) = host.rbox_fails(&["load", "-i", path.to_str().unwrap()]);
    assert!(err.contains("does not match its diffID"), "{err}");
    assert_eq!(host.rbox_ok(&["images", "-q"]), "");
}

#[test]
fn an_archive_blob_that_does_not_match_its_digest_is_refused() {
    let host = Host::new("tampered");
    // The test image's archive with one byte of its layer blob changed.
    let original = fs::read(rbox_tests::test_image_dir().join("busybox.tar")).unwrap();
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&original[..]);
    let mut tampered = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let path = entry.path().unwrap().into_owned();
        if tampered.is_none() && path.starts_with("./blobs/sha256") && data.len() > 100_000 {
            data[50_000] ^= 0xff;
            tampered = Some(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        let mut header = entry.header().clone();
        out.append_data(&mut header, &path, &data[..]).unwrap();
    }
    let tampered = tampered.expect("the layer blob");
    let path = host.dir().join("tampered.tar");
    fs::write(&path, out.into_inner().unwrap()).unwrap();
    let (code, err) = host.rbox_fails(&["load", "-i", path.to_str().unwrap()]);
    assert_eq!(code, 125);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(
        !host
            .dir()
            .join("root/images/blobs/sha256")
            .join(&tampered)
            .exists(),
        "the bad blob is never visible"
    );
    assert_eq!(host.rbox_ok(&["images", "-q"]), "");
}
