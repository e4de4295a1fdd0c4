//! The keys that seal secret environment variables: `UBIOPS_SECRET_KEY` (and
//! `UBIOPS_PREVIOUS_SECRET_KEYS` while rotating), or else a key kept in
//! `<data dir>/secret.key`, readable by the owner only.
//!
//! A key is generated only for a database that holds no sealed value. When
//! sealed values exist and a key they need is missing (a lost data
//! directory, a container recreated without its volume, a changed
//! `UBIOPS_SECRET_KEY`), the server refuses to start and names the key ids:
//! generating a fresh key would leave every stored secret unreadable.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use ubiops_domain::secrets::Keyring;
use ubiops_storage::Store;

use crate::config::Config;

const HOW_TO_PROVIDE: &str = "restore <data dir>/secret.key from a backup (mode 0600), \
     or set UBIOPS_SECRET_KEY to that key (or list it in UBIOPS_PREVIOUS_SECRET_KEYS \
     while rotating to a new UBIOPS_SECRET_KEY)";

pub async fn load_keyring(config: &Config, store: &Store) -> anyhow::Result<Keyring> {
    let previous: Vec<&str> = config
        .previous_secret_keys
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .collect();
    let needed = store
        .sealing_key_ids()
        .await
        .context("could not read which keys sealed the stored secrets")?;
    let keyring = match &config.secret_key {
        Some(key) => Keyring::from_hex(key, &previous)
            .context("UBIOPS_SECRET_KEY or UBIOPS_PREVIOUS_SECRET_KEYS")?,
        None => {
            let path = config.data.dir.join("secret.key");
            let key = match read_key_file(&path)? {
                Some(key) => key,
                None if needed.is_empty() => generate_key_file(&path)?,
                None => bail!(
                    "{} does not exist, but the database holds secrets sealed with key id(s) {}; \
                     a key is generated only for a database without secrets, since a new one \
                     could not open them. To start, {HOW_TO_PROVIDE}",
                    path.display(),
                    needed.join(", "),
                ),
            };
            Keyring::from_hex(&key, &previous)
                .with_context(|| format!("{} or UBIOPS_PREVIOUS_SECRET_KEYS", path.display()))?
        }
    };
    let configured = configured_key_ids(&keyring, &previous);
    let missing: Vec<&str> = needed
        .iter()
        .map(String::as_str)
        .filter(|id| !configured.iter().any(|known| known == id))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the database holds secrets sealed with key id(s) {}, which no configured key has \
             (configured: {}); they could not be read. To start, {HOW_TO_PROVIDE}",
            missing.join(", "),
            configured.join(", "),
        );
    }
    tracing::info!(key_id = keyring.current_key_id(), "secret key loaded");
    Ok(keyring)
}

/// The ids of the current and previous keys (ids name keys without revealing them).
fn configured_key_ids(keyring: &Keyring, previous: &[&str]) -> Vec<String> {
    let mut ids = vec![keyring.current_key_id().to_owned()];
    ids.extend(previous.iter().filter_map(|key| {
        Keyring::from_hex(key, &[])
            .ok()
            .map(|one| one.current_key_id().to_owned())
    }));
    ids
}

/// The key in `path`, or `None` when there is no such file.
fn read_key_file(path: &Path) -> anyhow::Result<Option<String>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let mode = metadata.permissions().mode();
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
    Ok(Some(key.trim().to_owned()))
}

fn generate_key_file(path: &Path) -> anyhow::Result<String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("UBIOPS_DATA_DIR: cannot create {}", parent.display()))?;
    }
    // create_new: two servers starting at once cannot both write a key; the
    // second reads the first one's.
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
        Err(error) if error.kind() == ErrorKind::AlreadyExists => read_key_file(path)?
            .with_context(|| format!("{} vanished while being read", path.display())),
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}
