//! Deployment files in object storage: local disk (`file://`) or any
//! S3-compatible service (`s3://bucket[/prefix]`, configured by the usual
//! `AWS_*` variables such as AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID).
//! Keys are made of ids only, so no user input can steer where a file goes.

mod local_upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, RetryConfig};
use tokio::io::AsyncWriteExt;
use url::Url;
use uuid::Uuid;

use local_upload::LocalUpload;

/// Parts of this size are sent as they fill, so an upload holds at most a few
/// of them in memory however large the file is (S3 needs at least 5 MiB).
const PART_SIZE: usize = 5 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the configured storage URL is not usable: {0}")]
    Config(String),
    #[error("the stored file is missing")]
    NotFound,
    /// Object storage failed or cannot be reached right now.
    #[error("object storage error: {0}")]
    Unavailable(#[source] object_store::Error),
    #[error("local I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<object_store::Error> for FileError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { .. } => FileError::NotFound,
            other => FileError::Unavailable(other),
        }
    }
}

/// Handle to the object store; cheap to clone.
#[derive(Clone, Debug)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store, where an interrupted upload leaves
    /// staging files that object storage itself does not list.
    local_root: Option<PathBuf>,
}

/// An upload being streamed; `finish` or `abort` it.
pub struct Upload {
    sink: UploadSink,
    pub key: String,
    pub bytes_written: u64,
}

enum UploadSink {
    /// Written to disk chunk by chunk as it arrives (see `local_upload`).
    Local(LocalUpload),
    /// Sent in parts of `PART_SIZE`, a few at a time.
    Remote(BufWriter),
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        match &mut self.sink {
            UploadSink::Local(file) => file.write(chunk).map_err(unavailable)?,
            // Copied into the writer's own buffer: a chunk may be a slice of a
            // larger buffer the server read the request into, which `put`
            // would keep alive until its whole part is sent.
            UploadSink::Remote(writer) => writer.write_all(chunk).await.map_err(unavailable)?,
        }
        self.bytes_written += chunk.len() as u64;
        Ok(())
    }

    pub async fn finish(self) -> Result<u64, FileError> {
        match self.sink {
            UploadSink::Local(file) => file.finish().await.map_err(unavailable)?,
            UploadSink::Remote(mut writer) => writer.shutdown().await.map_err(unavailable)?,
        }
        Ok(self.bytes_written)
    }

    /// Discards what was written (for S3, aborts the multipart upload).
    pub async fn abort(self) -> Result<(), FileError> {
        match self.sink {
            UploadSink::Local(file) => file.abort().await.map_err(unavailable)?,
            UploadSink::Remote(mut writer) => writer.abort().await?,
        }
        Ok(())
    }
}

/// A failed write, to disk or through BufWriter (which reports object store
/// failures as io::Error), is storage being unavailable, as it is for every
/// other operation on the store.
fn unavailable(error: std::io::Error) -> FileError {
    FileError::Unavailable(object_store::Error::Generic {
        store: "object store",
        source: Box::new(error),
    })
}

/// Retries ride out a blip, but an outage must become a quick 503 rather than
/// requests hanging for object_store's default three minutes.
fn outage_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
        ..RetryConfig::default()
    }
}

impl FileStore {
    pub fn open(url: &Url) -> Result<Self, FileError> {
        let mut local_root = None;
        let store: Arc<dyn ObjectStore> =
            match url.scheme() {
                "file" => {
                    let dir = url
                        .to_file_path()
                        .map_err(|()| FileError::Config(format!("'{url}' is not a local path")))?;
                    std::fs::create_dir_all(&dir).map_err(|e| {
                        FileError::Config(format!("cannot create {}: {e}", dir.display()))
                    })?;
                    local_root = Some(dir.clone());
                    Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
                        FileError::Config(format!("cannot use {}: {e}", dir.display()))
                    })?)
                }
                "s3" => {
                    let bucket = url.host_str().unwrap_or_default();
                    let store = AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .with_retry(outage_retries())
                        .build()
                        .map_err(|e| {
                            FileError::Config(format!(
                                "cannot configure S3 (check the AWS_* variables): {e}"
                            ))
                        })?;
                    let prefix = url.path().trim_matches('/');
                    if prefix.is_empty() {
                        Arc::new(store)
                    } else {
                        Arc::new(PrefixStore::new(store, ObjectPath::from(prefix)))
                    }
                }
                other => {
                    return Err(FileError::Config(format!(
                        "unsupported scheme '{other}'; use file:// or s3://"
                    )))
                }
            };
        Ok(Self { store, local_root })
    }

    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_root: None,
        }
    }

    /// Where `key` lives on disk, for a local store.
    fn local_path(&self, key: &str) -> Option<PathBuf> {
        // Keys are made of ids only, so this stays inside the root.
        self.local_root.as_ref().map(|root| root.join(key))
    }

    /// Where a revision's file lives: its id, nothing a user chose.
    pub fn revision_key(revision_id: Uuid) -> String {
        format!("revisions/{revision_id}.zip")
    }

    pub async fn start_upload(&self, key: &str) -> Result<Upload, FileError> {
        let sink = match self.local_path(key) {
            Some(path) => UploadSink::Local(LocalUpload::create(path).await.map_err(unavailable)?),
            None => UploadSink::Remote(
                BufWriter::with_capacity(self.store.clone(), ObjectPath::from(key), PART_SIZE)
                    .with_max_concurrency(PARTS_IN_FLIGHT),
            ),
        };
        Ok(Upload {
            sink,
            key: key.to_owned(),
            bytes_written: 0,
        })
    }

    /// The file as a stream of chunks, and its size.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, FileError>>), FileError> {
        let result = self.store.get(&ObjectPath::from(key)).await?;
        let size = result.meta.size;
        Ok((
            size,
            result
                .into_stream()
                .map(|chunk| chunk.map_err(FileError::from))
                .boxed(),
        ))
    }

    /// Copies the file to a local path (the build worker inspects it there).
    pub async fn download_to(&self, key: &str, target: &Path) -> Result<u64, FileError> {
        if let Some(source) = self.local_path(key) {
            // One copy inside the kernel (`io::copy` between files uses
            // copy_file_range) instead of a stream of small chunks.
            let target = target.to_owned();
            return tokio::task::spawn_blocking(move || {
                let mut from =
                    std::fs::File::open(&source).map_err(|error| match error.kind() {
                        std::io::ErrorKind::NotFound => FileError::NotFound,
                        _ => FileError::Io(error),
                    })?;
                let mut to = std::fs::File::create(&target)?;
                Ok(std::io::copy(&mut from, &mut to)?)
            })
            .await
            .map_err(|error| FileError::Io(std::io::Error::other(error)))?;
        }
        let (_, mut stream) = self.read(key).await?;
        // Object storage returns small chunks, and each unbuffered write to a
        // tokio file is a hand-off to the blocking pool.
        let file = tokio::fs::File::create(target).await?;
        let mut file = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        file.flush().await?;
        Ok(written)
    }

    pub async fn copy(&self, from: &str, to: &str) -> Result<(), FileError> {
        self.store
            .copy(&ObjectPath::from(from), &ObjectPath::from(to))
            .await?;
        Ok(())
    }

    /// Deletes a file; one that is already gone counts as deleted.
    pub async fn delete(&self, key: &str) -> Result<(), FileError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes what an upload cut off by a crash left at `key`: the object if
    /// it got that far, and on local disk the staging files (`<key>#<n>`) a
    /// multipart write keeps until it completes. (On S3 an unfinished
    /// multipart upload is invisible and is removed by the bucket's
    /// AbortIncompleteMultipartUpload lifecycle rule.)
    pub async fn delete_partial(&self, key: &str) -> Result<(), FileError> {
        self.delete(key).await?;
        let Some(path) = self.local_path(key) else {
            return Ok(());
        };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let staging_prefix = format!("{}#", name.to_string_lossy());
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            let staged = entry
                .file_name()
                .to_string_lossy()
                .strip_prefix(&staging_prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if staged {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }

    pub async fn exists(&self, key: &str) -> Result<bool, FileError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Every key under a prefix (for tests and checks).
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, FileError> {
        let mut keys = Vec::new();
        let mut listing = self.store.list(Some(&ObjectPath::from(prefix)));
        while let Some(meta) = listing.next().await {
            keys.push(meta?.location.to_string());
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::FileStore;

    #[tokio::test]
    async fn delete_partial_removes_only_that_uploads_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileStore::open(&url::Url::from_directory_path(dir.path()).unwrap()).unwrap();
        let revisions = dir.path().join("revisions");
        std::fs::create_dir_all(&revisions).unwrap();
        for name in [
            "a.zip", "a.zip#1", "a.zip#27", "a.zip#x", "ab.zip#1", "b.zip",
        ] {
            std::fs::write(revisions.join(name), b"data").unwrap();
        }
        files.delete_partial("revisions/a.zip").await.unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&revisions)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.zip#x", "ab.zip#1", "b.zip"]);
        // Nothing there at all is fine too (the upload never got that far).
        files.delete_partial("revisions/none.zip").await.unwrap();
        files.delete_partial("elsewhere/none.zip").await.unwrap();
    }
}
