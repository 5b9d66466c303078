//! Root filesystems through the library API (needs root: overlayfs, trusted xattrs).
//! Each test mounts in a mount namespace of its own, which takes its mounts with it
//! even when the test fails.

mod support;

use std::fs;

use rbox_images::{Error, ImageStore};
use support::{docker_archive, layer};

fn store_with(name: &str, layers: &[Vec<u8>]) -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    store.load(&docker_archive(name, layers)[..]).unwrap();
    (dir, store)
}

#[test]
fn rootfs_shows_layers_keeps_writes_apart_and_hides_whiteouts() {
    support::in_private_mounts(|| {
        let base = layer(&[
            ("etc/", b""),
            ("etc/a", b"one"),
            ("etc/b", b"gone soon"),
            ("dir/", b""),
            ("dir/x", b"hidden by opaque"),
        ]);
        let top = layer(&[
            ("etc/", b""),
            ("etc/a", b"two"),
            ("etc/.wh.b", b""),
            ("dir/", b""),
            ("dir/.wh..wh..opq", b""),
            ("dir/y", b"new"),
        ]);
        let (_dir, store) = store_with("test/app:1", &[base, top]);
        let cid = "c0ffee";
        let rootfs = store.mount_rootfs("test/app:1", cid).unwrap();
        let m = &rootfs.path;
        assert_eq!(fs::read(m.join("etc/a")).unwrap(), b"two");
        assert!(!m.join("etc/b").exists(), "whiteout hides the lower file");
        assert!(
            !m.join("dir/x").exists(),
            "opaque directory hides the lower content"
        );
        assert_eq!(fs::read(m.join("dir/y")).unwrap(), b"new");
        assert_eq!(
            rootfs.image.config.cmd.as_deref(),
            Some(&["sh".to_string()][..])
        );

        // Writes land in the container's upper directory, never in the shared layers.
        fs::write(m.join("etc/a"), b"changed").unwrap();
        fs::write(m.join("created"), b"c").unwrap();
        fs::remove_file(m.join("dir/y")).unwrap();
        assert_eq!(fs::read(rootfs.upper.join("etc/a")).unwrap(), b"changed");
        assert!(rootfs.upper.join("created").exists());
        for l in &rootfs.image.layers {
            let diff = store.dir().join("layers").join(l.hex()).join("diff");
            assert!(!diff.join("created").exists());
        }
        let again = store.mount_rootfs("test/app:1", "other").unwrap();
        assert_eq!(
            fs::read(again.path.join("etc/a")).unwrap(),
            b"two",
            "containers are isolated"
        );
        assert_eq!(fs::read(again.path.join("dir/y")).unwrap(), b"new");

        // The image is held: rmi refuses, and the hold is on record, each container's a
        // link to one file of the image (no file made per container).
        use std::os::unix::fs::MetadataExt;
        let held = store.resolve("test/app:1").unwrap();
        let shared = store.dir().join("holds").join(held.id.hex());
        let image_files =
            ["c0ffee", "other"].map(|c| fs::metadata(store.dir().join("holders").join(c)).unwrap());
        assert!(
            image_files
                .iter()
                .all(|m| m.ino() == fs::metadata(&shared).unwrap().ino())
        );
        let err = store.remove("test/app:1", false).unwrap_err();
        assert!(matches!(err, Error::InUse { .. }), "{err}");
        assert_eq!(
            store.containers_using(&store.resolve("test/app:1").unwrap()),
            vec!["c0ffee", "other"]
        );

        // Unmount and mount again: the container's changes are still there.
        store.unmount_rootfs(cid).unwrap();
        assert!(!m.join("created").exists());
        let rootfs = store.mount_rootfs("test/app:1", cid).unwrap();
        assert_eq!(fs::read(rootfs.path.join("created")).unwrap(), b"c");

        store.remove_rootfs(cid).unwrap();
        assert!(
            !rootfs.upper.exists(),
            "removing the container removes its upper layer"
        );
        store.remove_rootfs("other").unwrap();
        for gone in [&again.path, &again.upper] {
            assert!(!gone.exists(), "{}", gone.display());
        }
        for dir in ["work", "holders"] {
            assert!(!store.dir().join(dir).join("other").exists(), "{dir}");
        }
        assert!(
            store
                .containers_using(&store.resolve("test/app:1").unwrap())
                .is_empty()
        );
        let lines = store.remove("test/app:1", false).unwrap();
        assert!(
            lines.last().unwrap().starts_with("Deleted: sha256:"),
            "{lines:?}"
        );
        assert_eq!(
            fs::read_dir(store.dir().join("layers")).unwrap().count(),
            0,
            "layers collected"
        );
        assert!(
            !shared.exists(),
            "the image's hold file is collected with it"
        );
    })
}

#[test]
fn forced_rmi_of_an_image_in_use_untags_it_and_keeps_its_layers() {
    support::in_private_mounts(|| {
        let (_dir, store) = store_with("test/held:latest", &[layer(&[("f", b"x")])]);
        let rootfs = store.mount_rootfs("test/held", "holder").unwrap();
        let lines = store.remove("test/held", true).unwrap();
        assert_eq!(lines, vec!["Untagged: test/held:latest"]);
        assert!(store.resolve("test/held").is_err());
        let id = rootfs.image.id.to_string();
        assert!(store.resolve(&id).unwrap().names.is_empty());
        assert_eq!(
            fs::read(rootfs.path.join("f")).unwrap(),
            b"x",
            "still mounted and usable"
        );
        // prune keeps it while the container exists, removes it after.
        store.prune(false).unwrap();
        assert!(store.resolve(&id).is_ok());
        store.remove_rootfs("holder").unwrap();
        let report = store.prune(false).unwrap();
        assert!(
            report.lines.iter().any(|l| l.contains(&id)),
            "{:?}",
            report.lines
        );
        assert!(store.resolve(&id).is_err());
    })
}

#[test]
fn image_with_many_layers_mounts() {
    support::in_private_mounts(|| {
        const N: usize = 150;
        let names: Vec<String> = (0..N).map(|i| format!("file{i}")).collect();
        let layers: Vec<Vec<u8>> = names
            .iter()
            .map(|n| layer(&[(n.as_str(), n.as_bytes())]))
            .collect();
        let (_dir, store) = store_with("test/many:latest", &layers);
        let rootfs = store.mount_rootfs("test/many", "many").unwrap();
        assert_eq!(rootfs.image.layers.len(), N);
        for n in &names {
            assert_eq!(fs::read(rootfs.path.join(n)).unwrap(), n.as_bytes());
        }
        store.remove_rootfs("many").unwrap();
    })
}

#[test]
fn bad_container_ids_and_missing_images_leave_nothing() {
    support::in_private_mounts(|| {
        let (_dir, store) = store_with("test/x:latest", &[layer(&[("f", b"x")])]);
        for bad in ["", "..", "a/b", "../../etc"] {
            assert!(store.mount_rootfs("test/x", bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            store.mount_rootfs("nope", "c1"),
            Err(Error::NotFound(_))
        ));
        for dir in ["rootfs/c1", "work/c1", "holders/c1", "merged/c1"] {
            assert!(!store.dir().join(dir).exists(), "{dir}");
        }
        assert!(
            store
                .containers_using(&store.resolve("test/x").unwrap())
                .is_empty()
        );
    })
}

#[test]
fn a_volatile_rootfs_is_mounted_volatile_and_can_be_mounted_again() {
    support::in_private_mounts(|| {
        let (_dir, store) = store_with("test/vol", &[layer(&[("etc/", b""), ("etc/a", b"one")])]);
        let rootfs = store.mount_rootfs_volatile("test/vol", "vol").unwrap();
        fs::write(rootfs.path.join("etc/a"), b"changed").unwrap();
        // This thread's mounts: the test's own namespace.
        let mountinfo = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let line = mountinfo
            .lines()
            .find(|l| l.contains(rootfs.path.to_str().unwrap()))
            .expect("the rootfs is mounted");
        assert!(line.contains("volatile"), "{line}");

        // overlayfs refuses a second mount of a volatile upper unless its marker goes.
        store.unmount_rootfs("vol").unwrap();
        let rootfs = store.mount_rootfs_volatile("test/vol", "vol").unwrap();
        assert_eq!(fs::read(rootfs.path.join("etc/a")).unwrap(), b"changed");
        store.remove_rootfs("vol").unwrap();
        assert!(!rootfs.upper.exists());
    })
}

#[test]
fn mount_points_can_live_elsewhere() {
    support::in_private_mounts(|| {
        let (_dir, store) = store_with("test/mp", &[layer(&[("etc/", b""), ("etc/a", b"one")])]);
        let points = tempfile::tempdir().unwrap();
        let store = store.mount_under(points.path().to_path_buf());
        let rootfs = store.mount_rootfs("test/mp", "mp").unwrap();
        assert_eq!(rootfs.path, points.path().join("mp"));
        assert_eq!(fs::read(rootfs.path.join("etc/a")).unwrap(), b"one");
        assert!(!store.dir().join("merged/mp").exists());
        // Mounted already: a second mount is the same one.
        store.mount_rootfs("test/mp", "mp").unwrap();
        store.unmount_rootfs("mp").unwrap();
        assert!(!rootfs.path.join("etc").exists(), "unmounted");
        // Its mount point gone (a reboot's tmpfs): mounting again makes it.
        fs::remove_dir(&rootfs.path).unwrap();
        let again = store.mount_rootfs("test/mp", "mp").unwrap();
        assert_eq!(fs::read(again.path.join("etc/a")).unwrap(), b"one");
        store.remove_rootfs("mp").unwrap();
        assert!(!rootfs.path.exists());
        for dir in ["rootfs/mp", "work/mp", "holders/mp"] {
            assert!(!store.dir().join(dir).exists(), "{dir}");
        }
    })
}
