//! Configuration from the environment. Every variable is checked at start and
//! a bad value stops the server with a message that names the variable.

use std::env;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use ubiops_api::DEFAULT_TOKEN_CACHE_TTL;
use ubiops_domain::instance_types::InstanceTypeCatalog;
use ubiops_domain::secrets::Keyring;
use ubiops_domain::token::validate_email;
use url::Url;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ORGANIZATION: &str = "self-hosted";
pub const DEFAULT_BOOTSTRAP_EMAIL: &str = "admin@localhost";
const MIN_BOOTSTRAP_TOKEN_LENGTH: usize = 16;
/// Long enough for a PostgreSQL started beside the server (a Compose stack,
/// a host booting) to initialise, short enough that a wrong host fails the
/// start visibly.
const DEFAULT_DATABASE_WAIT_SECONDS: &str = "60";

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None`: run the embedded PostgreSQL in `<data dir>/postgres`.
    pub database_url: Option<String>,
    /// How long to keep trying an external database that cannot be reached
    /// at start (it may be starting too).
    pub database_wait: Duration,
    pub data_dir: PathBuf,
    pub storage_url: Url,
    pub bootstrap_token: Option<BootstrapToken>,
    pub organization_name: String,
    pub database_pool_size: u32,
    pub instance_types: InstanceTypeCatalog,
    /// Hex key that seals secrets; `None`: use `<data dir>/secret.key`.
    pub secret_key: Option<String>,
    /// Comma-separated earlier keys, still accepted for opening old secrets.
    pub previous_secret_keys: String,
    /// Concurrent builds run inside `serve` (0: leave builds to `worker`).
    pub build_workers: usize,
    pub max_upload_bytes: u64,
    /// How long a dead server's partial upload waits before the sweep removes it.
    pub upload_lease: Duration,
    /// How long a dead worker's build waits before another worker takes it over.
    pub build_lease: Duration,
    /// How long a verified API token is trusted before the database is asked
    /// again (the bound on how long a revoked token keeps working).
    pub token_cache_ttl: Duration,
    /// How long log lines are kept; older ones are deleted by the sweep.
    pub log_retention: Duration,
}

/// An admin token whose value the operator chose (`UBIOPS_BOOTSTRAP_TOKEN`).
#[derive(Clone)]
pub struct BootstrapToken {
    pub token: String,
    pub email: String,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("token", &"<redacted>")
            .field("email", &self.email)
            .finish()
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let data_dir = absolute(PathBuf::from(
            var("UBIOPS_DATA_DIR").unwrap_or_else(|| "./data".into()),
        ))
        .context("UBIOPS_DATA_DIR: cannot resolve the data directory")?;
        let storage_url = match var("UBIOPS_STORAGE_URL") {
            Some(raw) => parse_storage_url(&raw).context("UBIOPS_STORAGE_URL")?,
            None => Url::from_directory_path(data_dir.join("objects"))
                .map_err(|()| anyhow::anyhow!("UBIOPS_DATA_DIR: not an absolute path"))?,
        };
        Ok(Config {
            listen: parse("UBIOPS_LISTEN", DEFAULT_LISTEN)?,
            database_url: database_url()?,
            database_wait: database_wait()?,
            storage_url,
            bootstrap_token: bootstrap_token()?,
            organization_name: organization_name()?,
            database_pool_size: parse("UBIOPS_DATABASE_POOL_SIZE", "16")?,
            instance_types: InstanceTypeCatalog::with_extra(
                &var("UBIOPS_EXTRA_INSTANCE_TYPES").unwrap_or_default(),
            )
            .context("UBIOPS_EXTRA_INSTANCE_TYPES")?,
            secret_key: secret_key()?,
            previous_secret_keys: previous_secret_keys()?,
            build_workers: parse("UBIOPS_BUILD_WORKERS", "2")?,
            max_upload_bytes: parse::<u64>("UBIOPS_MAX_UPLOAD_MB", "2048")?
                .saturating_mul(1024 * 1024),
            upload_lease: lease("UBIOPS_UPLOAD_LEASE_SECONDS", "120")?,
            build_lease: lease("UBIOPS_BUILD_LEASE_SECONDS", "30")?,
            token_cache_ttl: Duration::from_secs(parse(
                "UBIOPS_TOKEN_CACHE_SECONDS",
                &DEFAULT_TOKEN_CACHE_TTL.as_secs().to_string(),
            )?),
            log_retention: log_retention()?,
            data_dir,
        })
    }

    /// Only what the database needs, for commands that do not serve
    /// (`token create`): the other variables are irrelevant there.
    pub fn database_only() -> anyhow::Result<(Option<String>, PathBuf)> {
        let data_dir = absolute(PathBuf::from(
            var("UBIOPS_DATA_DIR").unwrap_or_else(|| "./data".into()),
        ))
        .context("UBIOPS_DATA_DIR: cannot resolve the data directory")?;
        Ok((database_url()?, data_dir))
    }

    pub fn embedded_postgres_dir(data_dir: &std::path::Path) -> PathBuf {
        data_dir.join("postgres")
    }
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.trim().is_empty())
}

fn parse<T: FromStr>(name: &str, default: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    raw.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{name}: invalid value '{raw}': {e}"))
}

/// A lease length in whole seconds. Renewals come at a fraction of it, so a
/// few seconds is the shortest that a busy machine keeps up with.
fn lease(name: &str, default: &str) -> anyhow::Result<Duration> {
    let seconds: u64 = parse(name, default)?;
    if !(2..=3600).contains(&seconds) {
        bail!("{name}: use 2 to 3600 seconds, not {seconds}");
    }
    Ok(Duration::from_secs(seconds))
}

/// `UBIOPS_LOG_RETENTION_DAYS`: whole days, at least one.
fn log_retention() -> anyhow::Result<Duration> {
    let days: u64 = parse("UBIOPS_LOG_RETENTION_DAYS", "30")?;
    if !(1..=36_500).contains(&days) {
        bail!("UBIOPS_LOG_RETENTION_DAYS: use 1 to 36500 days, not {days}");
    }
    Ok(Duration::from_secs(days * 86_400))
}

fn absolute(path: PathBuf) -> std::io::Result<PathBuf> {
    std::path::absolute(path)
}

fn database_url() -> anyhow::Result<Option<String>> {
    let Some(raw) = var("DATABASE_URL") else {
        return Ok(None);
    };
    let url = Url::parse(&raw).map_err(|e| anyhow::anyhow!("DATABASE_URL: not a URL: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!(
            "DATABASE_URL: expected a postgres:// URL, got scheme '{}'",
            url.scheme()
        );
    }
    Ok(Some(raw))
}

fn database_wait() -> anyhow::Result<Duration> {
    let seconds: u64 = parse(
        "UBIOPS_DATABASE_WAIT_SECONDS",
        DEFAULT_DATABASE_WAIT_SECONDS,
    )?;
    if seconds > 3600 {
        bail!("UBIOPS_DATABASE_WAIT_SECONDS: use 0 to 3600 seconds, not {seconds}");
    }
    Ok(Duration::from_secs(seconds))
}

fn parse_storage_url(raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).map_err(|e| anyhow::anyhow!("invalid value '{raw}': {e}"))?;
    match url.scheme() {
        "file" => Ok(url),
        "s3" if url.host_str().is_some_and(|bucket| !bucket.is_empty()) => Ok(url),
        "s3" => bail!("invalid value '{raw}': use s3://<bucket>[/prefix]"),
        other => {
            bail!("invalid value '{raw}': scheme '{other}' is not supported; use file:// or s3://")
        }
    }
}

fn bootstrap_token() -> anyhow::Result<Option<BootstrapToken>> {
    let email = var("UBIOPS_BOOTSTRAP_EMAIL");
    let Some(token) = var("UBIOPS_BOOTSTRAP_TOKEN") else {
        if email.is_some() {
            bail!("UBIOPS_BOOTSTRAP_EMAIL is set but UBIOPS_BOOTSTRAP_TOKEN is not: set both or neither");
        }
        return Ok(None);
    };
    if token.len() < MIN_BOOTSTRAP_TOKEN_LENGTH || !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!(
            "UBIOPS_BOOTSTRAP_TOKEN: use at least {MIN_BOOTSTRAP_TOKEN_LENGTH} printable characters without spaces \
             (for example the output of `openssl rand -hex 32`)"
        );
    }
    let email = email.unwrap_or_else(|| DEFAULT_BOOTSTRAP_EMAIL.to_owned());
    validate_email(&email).context("UBIOPS_BOOTSTRAP_EMAIL")?;
    Ok(Some(BootstrapToken { token, email }))
}

/// Checked here, before anything starts; which keys the stored secrets need
/// is checked once the database is open (keyring.rs).
fn secret_key() -> anyhow::Result<Option<String>> {
    let key = var("UBIOPS_SECRET_KEY");
    if let Some(key) = &key {
        Keyring::from_hex(key, &[]).context("UBIOPS_SECRET_KEY")?;
    }
    Ok(key)
}

fn previous_secret_keys() -> anyhow::Result<String> {
    let keys = var("UBIOPS_PREVIOUS_SECRET_KEYS").unwrap_or_default();
    for key in keys.split(',').map(str::trim).filter(|key| !key.is_empty()) {
        Keyring::from_hex(key, &[]).context("UBIOPS_PREVIOUS_SECRET_KEYS")?;
    }
    Ok(keys)
}

fn organization_name() -> anyhow::Result<String> {
    let name = var("UBIOPS_ORGANIZATION").unwrap_or_else(|| DEFAULT_ORGANIZATION.to_owned());
    if name.chars().count() > 256 {
        bail!("UBIOPS_ORGANIZATION: at most 256 characters");
    }
    Ok(name)
}
