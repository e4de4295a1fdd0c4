//! The keys that seal secret environment variables: `UBIOPS_SECRET_KEY` (and
//! `UBIOPS_PREVIOUS_SECRET_KEYS` while rotating), or else a key generated once
//! into `<data dir>/secret.key`, readable by the owner only.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use ubiops_domain::secrets::Keyring;

use crate::config::Config;

pub fn load_keyring(config: &Config) -> anyhow::Result<Keyring> {
    let previous: Vec<&str> = config
        .previous_secret_keys
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .collect();
    let keyring = match &config.secret_key {
        Some(key) => Keyring::from_hex(key, &previous)
            .context("UBIOPS_SECRET_KEY or UBIOPS_PREVIOUS_SECRET_KEYS")?,
        None => {
            let key = key_from_file(&config.data_dir.join("secret.key"))?;
            Keyring::from_hex(&key, &previous).context("UBIOPS_PREVIOUS_SECRET_KEYS")?
        }
    };
    tracing::info!(key_id = keyring.current_key_id(), "secret key loaded");
    Ok(keyring)
}

fn key_from_file(path: &Path) -> anyhow::Result<String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("UBIOPS_DATA_DIR: cannot create {}", parent.display()))?;
    }
    // create_new: two servers starting at once cannot both write a key.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let key = Keyring::generate_key_hex();
            file.write_all(key.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write the secret key to {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a secret key; back it up, secrets cannot be read without it");
            Ok(key)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            let mode = fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by others (mode {:o}): run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
            let key = fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret key from {}", path.display()))?;
            Ok(key.trim().to_owned())
        }
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}
