//! Object storage for deployment files: local disk (`file://`) or any
//! S3-compatible service (`s3://bucket[/prefix]`, configured by the usual
//! `AWS_*` variables such as AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID).

use std::sync::Arc;

use anyhow::Context;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use url::Url;

pub fn open_object_store(url: &Url) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("UBIOPS_STORAGE_URL: '{url}' is not a local path"))?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("UBIOPS_STORAGE_URL: cannot create {}", dir.display()))?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("UBIOPS_STORAGE_URL: cannot use {}", dir.display()))?;
            Ok(Arc::new(store))
        }
        "s3" => {
            let bucket = url.host_str().unwrap_or_default();
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .context("UBIOPS_STORAGE_URL: cannot configure S3 (check the AWS_* variables)")?;
            let prefix = url.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, ObjectPath::from(prefix))))
            }
        }
        other => anyhow::bail!("UBIOPS_STORAGE_URL: unsupported scheme '{other}'"),
    }
}
