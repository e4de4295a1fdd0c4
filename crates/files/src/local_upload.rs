//! An upload to a local store, written to disk as it arrives.
//!
//! object_store's own local upload gathers parts and writes each on the
//! blocking pool. Writing every received chunk at once instead, on the task
//! that received it, while the bytes are still in the CPU's cache and with no
//! hand-off to another thread, is what keeps a large upload close to the
//! disk's speed when the server's CPU is the upload's critical path (a small
//! machine). Handing the chunk to a blocking-pool writer over a channel, or
//! wrapping the write in `block_in_place`, gave the gain back (BENCHMARKS.md,
//! "Uploads and builds").
//!
//! The price is a blocking `write` on a runtime worker: it copies one received
//! chunk (no larger than hyper's read buffer) into the page cache, which is
//! quick, but takes longer when the kernel throttles a process with too many
//! dirty pages or when the data directory is on a network file system. nginx
//! buffers request bodies to disk the same way. A data directory on a network
//! file system should be an `s3://` store instead (README).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

/// The file being written, under a staging name until it is complete.
pub(crate) struct LocalUpload {
    file: File,
    /// `<destination>#<n>`: the name object_store's local store gives its
    /// staging files, so `FileStore::delete_partial` and the upload sweep
    /// find the ones a crash leaves behind.
    staging: PathBuf,
    destination: PathBuf,
    /// Set once the staging file was renamed or removed.
    settled: bool,
}

impl LocalUpload {
    pub(crate) async fn create(destination: PathBuf) -> std::io::Result<Self> {
        tokio::task::spawn_blocking(move || {
            let (file, staging) = create_staging_file(&destination)?;
            Ok(LocalUpload {
                file,
                staging,
                destination,
                settled: false,
            })
        })
        .await
        .map_err(std::io::Error::other)?
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Moves the complete file to its destination.
    pub(crate) async fn finish(mut self) -> std::io::Result<()> {
        tokio::fs::rename(&self.staging, &self.destination).await?;
        self.settled = true;
        Ok(())
    }

    pub(crate) async fn abort(mut self) -> std::io::Result<()> {
        self.settled = true;
        match tokio::fs::remove_file(&self.staging).await {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// An upload dropped unsettled (its request was cancelled) leaves nothing.
impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.settled {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

/// Creates `<destination>#<n>` with the lowest free `n`, and any missing
/// directories above it.
fn create_staging_file(destination: &std::path::Path) -> std::io::Result<(File, PathBuf)> {
    let mut n = 1u32;
    loop {
        let mut staging = destination.as_os_str().to_owned();
        staging.push(format!("#{n}"));
        let staging = PathBuf::from(staging);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)
        {
            Ok(file) => return Ok((file, staging)),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => n += 1,
            Err(error) if error.kind() == ErrorKind::NotFound => match staging.parent() {
                Some(dir) => std::fs::create_dir_all(dir)?,
                None => return Err(error),
            },
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LocalUpload;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn writes_under_a_staging_name_and_renames_on_finish() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("revisions/a.zip");
        let mut first = LocalUpload::create(destination.clone()).await.unwrap();
        let second = LocalUpload::create(destination.clone()).await.unwrap();
        first.write(b"PK\x03\x04").unwrap();
        first.write(b"rest").unwrap();
        let revisions = dir.path().join("revisions");
        assert_eq!(names(&revisions), ["a.zip#1", "a.zip#2"]);
        first.finish().await.unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), b"PK\x03\x04rest");
        second.abort().await.unwrap();
        assert_eq!(names(&revisions), ["a.zip"]);
    }

    #[tokio::test]
    async fn an_upload_dropped_unfinished_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut upload = LocalUpload::create(dir.path().join("b.zip")).await.unwrap();
        upload.write(b"partial").unwrap();
        drop(upload);
        assert!(names(dir.path()).is_empty());
    }
}
