//! Blobs by digest (`blobs/sha256/<hex>`), verified before they become visible.
//!
//! Data arrives in `ingest/<hex>` (one writer at a time, under `locks/<hex>`) and is
//! renamed into `blobs/` only once its digest (and size, when known) matches. A
//! download that dies leaves its prefix in `ingest/`, which the next one continues.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, DigestError, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};

#[derive(Clone)]
pub(crate) struct Blobs {
    blobs: PathBuf,
    ingest: PathBuf,
    locks: PathBuf,
}

impl Blobs {
    pub fn open(images: &Path) -> Result<Blobs> {
        let b = Blobs {
            blobs: images.join("blobs/sha256"),
            ingest: images.join("ingest"),
            locks: images.join("locks"),
        };
        for d in [&b.blobs, &b.ingest, &b.locks] {
            fs::create_dir_all(d).at(d)?;
        }
        Ok(b)
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// A small blob (manifest, config, index), checked against its digest again.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.path(d);
        let bytes = fs::read(&path).at(&path)?;
        d.verify(&bytes)?;
        Ok(bytes)
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let path = self.path(d);
        File::open(&path).at(&path)
    }

    pub fn size(&self, d: &Digest) -> Result<u64> {
        let path = self.path(d);
        Ok(fs::metadata(&path).at(&path)?.len())
    }

    /// Stores `bytes` as blob `d`, refusing them unless they have that digest.
    pub fn put(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        d.verify(bytes)?;
        if self.contains(d) {
            return Ok(());
        }
        let path = self.path(d);
        fsutil::write_atomic(&path, bytes).at(&path)
    }

    /// Stores a stream whose digest is not known beforehand; returns digest and size.
    pub fn put_stream(&self, mut reader: impl Read) -> Result<(Digest, u64)> {
        let tmp = self
            .ingest
            .join(format!(".stream-{}", fsutil::unique_suffix()));
        let result = (|| {
            let file = File::create(&tmp).at(&tmp)?;
            let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
            io::copy(&mut reader, &mut w).at(&tmp)?;
            let (buf, digest, size) = w.finish();
            let file = buf.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
            file.sync_all().at(&tmp)?;
            let dest = self.path(&digest);
            fs::rename(&tmp, &dest).at(&dest)?;
            Ok((digest, size))
        })();
        if result.is_err() {
            let _ = fsutil::remove_file(&tmp);
        }
        result
    }

    /// Starts (or continues) writing blob `d`; holds its lock until the ingest is dropped.
    pub fn ingest(&self, d: &Digest) -> Result<Ingest> {
        let lock_path = self.locks.join(d.hex());
        let lock = FileLock::exclusive(&lock_path).at(&lock_path)?;
        let path = self.ingest.join(d.hex());
        let done = self.contains(d);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        // Hash what an earlier, interrupted download left, to continue from its end.
        let mut hasher = Sha256::new();
        let mut count = 0u64;
        if !done {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).at(&path)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                count += n as u64;
            }
        }
        file.seek(SeekFrom::Start(count)).at(&path)?;
        Ok(Ingest {
            digest: d.clone(),
            path,
            dest: self.path(d),
            done,
            writer: HashingWriter::resume(file, hasher, count),
            _lock: lock,
        })
    }

    pub fn remove(&self, d: &Digest) -> Result<()> {
        let path = self.path(d);
        fsutil::remove_file(&path).at(&path)
    }

    /// Every stored blob.
    pub fn list(&self) -> Vec<Digest> {
        fs::read_dir(&self.blobs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()))
            .collect()
    }

    /// Partial downloads and their locks (for prune), and stale stream temporaries.
    pub fn clear_ingest(&self, keep_partials: bool) {
        for e in fs::read_dir(&self.ingest).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_partials || name.starts_with(".stream-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Removes lock files of blobs that are neither stored nor being ingested. Only
    /// safe while no other process can be waiting on them (the store's GC lock).
    pub fn clear_locks(&self) {
        for e in fs::read_dir(&self.locks).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !self.blobs.join(&name).exists() && !self.ingest.join(&name).exists() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// A blob being written: verified and published by [`Ingest::commit`].
pub(crate) struct Ingest {
    digest: Digest,
    path: PathBuf,
    dest: PathBuf,
    done: bool,
    writer: HashingWriter<File>,
    _lock: FileLock,
}

impl Ingest {
    /// True when the blob was already stored (by another process meanwhile).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes already written (a resumed download continues from here).
    pub fn offset(&self) -> u64 {
        self.writer.count()
    }

    /// Throws away what was written, to start from the first byte.
    pub fn restart(&mut self) -> Result<()> {
        let file = self.writer.reset();
        file.set_len(0).at(&self.path)?;
        file.seek(SeekFrom::Start(0)).at(&self.path)?;
        Ok(())
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).at(&self.path)
    }

    /// Checks digest and size, then publishes the blob. A mismatch deletes the data.
    pub fn commit(self, expected_size: Option<u64>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let (file, actual, size) = self.writer.finish();
        let mismatch = if actual != self.digest {
            Some(DigestError::Mismatch {
                expected: self.digest.clone(),
                actual,
            })
        } else {
            expected_size
                .filter(|&want| want != size)
                .map(|want| DigestError::SizeMismatch {
                    digest: self.digest.clone(),
                    expected: want,
                    actual: size,
                })
        };
        if let Some(err) = mismatch {
            drop(file);
            let _ = fsutil::remove_file(&self.path);
            return Err(Error::Digest(err));
        }
        file.sync_all().at(&self.path)?;
        fs::rename(&self.path, &self.dest).at(&self.dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_refuses_wrong_digest_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let d = Digest::of(b"right");
        let err = blobs.put(&d, b"wrong").unwrap_err();
        assert!(
            matches!(err, Error::Digest(DigestError::Mismatch { .. })),
            "{err}"
        );
        assert!(!blobs.contains(&d));
        blobs.put(&d, b"right").unwrap();
        assert_eq!(blobs.read(&d).unwrap(), b"right");
    }

    #[test]
    fn ingest_verifies_resumes_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let data = vec![42u8; 3000];
        let d = Digest::of(&data);
        // An interrupted download: part written, then dropped.
        let mut first = blobs.ingest(&d).unwrap();
        first.write(&data[..1000]).unwrap();
        drop(first);
        assert!(!blobs.contains(&d), "a partial blob is never visible");
        // The next one continues where it stopped.
        let mut second = blobs.ingest(&d).unwrap();
        assert_eq!(second.offset(), 1000);
        second.write(&data[1000..]).unwrap();
        second.commit(Some(3000)).unwrap();
        assert_eq!(blobs.read(&d).unwrap(), data);

        // Corrupt content is rejected and removed, so the next try starts afresh.
        let other = Digest::of(b"expected");
        let mut bad = blobs.ingest(&other).unwrap();
        bad.write(b"tampered").unwrap();
        let err = bad.commit(None).unwrap_err();
        assert!(
            matches!(err, Error::Digest(DigestError::Mismatch { .. })),
            "{err}"
        );
        assert!(!blobs.contains(&other));
        assert_eq!(blobs.ingest(&other).unwrap().offset(), 0);

        // Restart discards a partial prefix.
        let mut again = blobs.ingest(&other).unwrap();
        again.write(b"junk").unwrap();
        again.restart().unwrap();
        again.write(b"expected").unwrap();
        again.commit(Some(8)).unwrap();
        assert!(blobs.contains(&other));
    }

    #[test]
    fn size_mismatch_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let d = Digest::of(b"abc");
        let mut i = blobs.ingest(&d).unwrap();
        i.write(b"abc").unwrap();
        assert!(i.commit(Some(4)).is_err());
        assert!(!blobs.contains(&d));
    }

    #[test]
    fn streams_of_unknown_digest_are_stored_by_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let (d, n) = blobs.put_stream(&b"hello"[..]).unwrap();
        assert_eq!((d.clone(), n), (Digest::of(b"hello"), 5));
        assert!(blobs.contains(&d));
        assert_eq!(blobs.list(), vec![d]);
    }
}
