//! Configuration, parsed by clap. Every setting is an environment variable
//! (the documented interface: README.md, the Dockerfile, the Compose file),
//! which `serve` and `worker` also take as a flag. Every value is checked at
//! start, and a bad one stops the start with a message that names the
//! variable.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::Args;
use ubiops_api::DEFAULT_TOKEN_CACHE_TTL;
use ubiops_domain::instance_types::InstanceTypeCatalog;
use ubiops_domain::secrets::Keyring;
use ubiops_domain::token::validate_email;
use ubiops_python::interpreters::Version;
use ubiops_runtime::QueueSettings;
use url::Url;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ORGANIZATION: &str = "self-hosted";
pub const DEFAULT_BOOTSTRAP_EMAIL: &str = "admin@localhost";
const MIN_BOOTSTRAP_TOKEN_LENGTH: usize = 16;

/// The settings of `serve` and `worker`.
#[derive(Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub data: DataConfig,

    /// At start, how long to keep trying a DATABASE_URL that cannot be
    /// reached yet (it may be starting too: a Compose stack, a host booting);
    /// 0 fails at once.
    // The default is long enough for a PostgreSQL started beside the server
    // to initialise, short enough that a wrong host fails the start visibly.
    #[arg(
        long = "database-wait-seconds",
        env = "UBIOPS_DATABASE_WAIT_SECONDS",
        value_name = "SECONDS",
        default_value = "60",
        value_parser = setting(|raw| whole(raw, 0..=3600, "seconds").map(Duration::from_secs)),
    )]
    pub database_wait: Duration,

    /// Connections to PostgreSQL for requests and builds.
    #[arg(
        long = "database-pool-size",
        env = "UBIOPS_DATABASE_POOL_SIZE",
        value_name = "CONNECTIONS",
        default_value = "16",
        value_parser = setting(parsed::<u32>),
    )]
    pub database_pool_size: u32,

    /// Deployment files: file:///path or s3://bucket[/prefix] [default: file://<data dir>/objects]
    #[arg(
        long = "storage-url",
        env = "UBIOPS_STORAGE_URL",
        value_name = "URL",
        value_parser = setting(storage_url),
    )]
    storage_url: Option<Url>,

    #[command(flatten)]
    pub bootstrap: Bootstrap,

    /// 64 hex characters: the key that seals secret environment variables
    /// [default: <data dir>/secret.key]
    #[arg(
        long = "secret-key",
        env = "UBIOPS_SECRET_KEY",
        value_name = "KEY",
        hide_env_values = true,
        value_parser = setting(secret_key),
    )]
    pub secret_key: Option<String>,

    /// Comma-separated earlier keys, still accepted for opening old secrets
    /// while rotating.
    #[arg(
        long = "previous-secret-keys",
        env = "UBIOPS_PREVIOUS_SECRET_KEYS",
        value_name = "KEYS",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        value_parser = setting(previous_secret_keys),
    )]
    pub previous_secret_keys: String,

    /// Concurrent builds run inside `serve` (0: leave builds to `worker`).
    #[arg(
        long = "build-workers",
        env = "UBIOPS_BUILD_WORKERS",
        value_name = "SLOTS",
        default_value = "2",
        value_parser = setting(parsed::<usize>),
    )]
    pub build_workers: usize,

    /// How long a dead worker's build waits before another worker takes it over.
    #[arg(
        long = "build-lease-seconds",
        env = "UBIOPS_BUILD_LEASE_SECONDS",
        value_name = "SECONDS",
        default_value = "30",
        value_parser = setting(lease),
    )]
    pub build_lease: Duration,

    /// How long a lost server's batch requests in processing wait before
    /// another server settles them (runs them again or fails them).
    #[arg(
        long = "request-lease-seconds",
        env = "UBIOPS_REQUEST_LEASE_SECONDS",
        value_name = "SECONDS",
        default_value = "30",
        value_parser = setting(lease),
    )]
    pub request_lease: Duration,

    /// How many times a batch request interrupted by the loss of its
    /// instance or server runs again, for versions with
    /// `restart_request_interruption`.
    #[arg(
        long = "request-retries",
        env = "UBIOPS_REQUEST_RETRIES",
        value_name = "TIMES",
        default_value = "3",
        value_parser = setting(|raw| whole(raw, 0..=100, "retries").map(|n| n as i32)),
    )]
    pub request_retries: i32,

    /// How long log lines are kept; the sweep deletes older ones.
    #[arg(
        long = "log-retention-days",
        env = "UBIOPS_LOG_RETENTION_DAYS",
        value_name = "DAYS",
        default_value = "30",
        value_parser = setting(|raw| whole(raw, 1..=36_500, "days").map(|days| Duration::from_secs(days * 86_400))),
    )]
    pub log_retention: Duration,

    #[command(flatten)]
    pub builds: BuildSettings,

    #[command(flatten)]
    pub api: ApiConfig,
}

/// How builds run the packages' code: interpreters, pip, the environment
/// cache, and the sandbox's limits.
#[derive(Clone, Args)]
pub struct BuildSettings {
    /// Comma-separated VERSION=PATH interpreters besides python3.X on PATH
    /// (e.g. 3.9=/opt/python3.9/bin/python3); they win for their version.
    #[arg(
        long = "python-interpreters",
        env = "UBIOPS_PYTHON_INTERPRETERS",
        value_name = "LIST",
        default_value = "",
        hide_default_value = true,
        value_parser = setting(interpreters),
    )]
    pub interpreters: InterpreterPaths,

    /// true: a version whose Python is not installed fails its builds,
    /// instead of building with the nearest installed version.
    #[arg(
        long = "python-strict",
        env = "UBIOPS_PYTHON_STRICT",
        value_name = "BOOL",
        default_value = "false",
        // A bool field is otherwise a bare flag, which takes no value.
        action = clap::ArgAction::Set,
        value_parser = setting(boolean),
    )]
    pub strict: bool,

    /// How long making one environment (venv and pip install) may take.
    #[arg(
        long = "pip-timeout-seconds",
        env = "UBIOPS_PIP_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        default_value = "900",
        value_parser = setting(|raw| whole(raw, 1..=86_400, "seconds").map(Duration::from_secs)),
    )]
    pub pip_timeout: Duration,

    /// How long importing a package's deployment.py may take.
    #[arg(
        long = "import-timeout-seconds",
        env = "UBIOPS_IMPORT_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        default_value = "120",
        value_parser = setting(|raw| whole(raw, 1..=3600, "seconds").map(Duration::from_secs)),
    )]
    pub import_timeout: Duration,

    /// How long an instance may take to start: importing deployment.py and
    /// constructing `Deployment` (which loads the model).
    #[arg(
        long = "instance-start-timeout-seconds",
        env = "UBIOPS_INSTANCE_START_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        default_value = "600",
        value_parser = setting(|raw| whole(raw, 1..=3600, "seconds").map(Duration::from_secs)),
    )]
    pub instance_start_timeout: Duration,

    /// Disk the cached environments may use before the least recently used
    /// ones (of no active revision) are removed.
    #[arg(
        long = "environment-cache-mb",
        env = "UBIOPS_ENVIRONMENT_CACHE_MB",
        value_name = "MB",
        default_value = "20480",
        value_parser = setting(|raw| Ok(parsed::<u64>(raw)?.saturating_mul(1024 * 1024))),
    )]
    pub cache_bytes: u64,

    /// Address space each process of a build may use.
    #[arg(
        long = "build-memory-mb",
        env = "UBIOPS_BUILD_MEMORY_MB",
        value_name = "MB",
        default_value = "4096",
        value_parser = setting(|raw| whole(raw, 256..=1_048_576, "MB").map(|mb| mb * 1024 * 1024)),
    )]
    pub memory_bytes: u64,

    /// CPU time each process of a build may use.
    #[arg(
        long = "build-cpu-seconds",
        env = "UBIOPS_BUILD_CPU_SECONDS",
        value_name = "SECONDS",
        default_value = "1800",
        value_parser = setting(|raw| whole(raw, 1..=86_400, "seconds")),
    )]
    pub cpu_seconds: u64,

    /// FIRST-LAST: the user ids sandboxes get when the server runs as root;
    /// no account of the machine may use them.
    #[arg(
        long = "sandbox-uids",
        env = "UBIOPS_SANDBOX_UIDS",
        value_name = "RANGE",
        default_value = "1900000000-1900999999",
        value_parser = setting(uid_range),
    )]
    pub sandbox_uids: RangeInclusive<u32>,
}

/// Where the data lives: all that the commands which only open the
/// database (`token ...`) read.
#[derive(Clone, Args)]
pub struct DataConfig {
    /// postgres://… of your PostgreSQL [default: the embedded cluster in <data dir>/postgres]
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = setting(database_url),
    )]
    pub database_url: Option<String>,

    /// Where the embedded cluster, local files and the secret key live.
    #[arg(
        long = "data-dir",
        env = "UBIOPS_DATA_DIR",
        value_name = "DIR",
        default_value = "./data",
        value_parser = setting(data_dir),
    )]
    pub dir: PathBuf,
}

/// An admin token whose value the operator chose.
#[derive(Clone, Args)]
pub struct Bootstrap {
    /// Ensure an all-projects admin token with exactly this value exists;
    /// the token of an earlier value is revoked.
    #[arg(
        long = "bootstrap-token",
        env = "UBIOPS_BOOTSTRAP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        value_parser = setting(bootstrap_token),
    )]
    pub token: Option<String>,

    /// The email of that token [default: admin@localhost]
    #[arg(
        long = "bootstrap-email",
        env = "UBIOPS_BOOTSTRAP_EMAIL",
        value_name = "EMAIL",
        value_parser = setting(email),
    )]
    email: Option<String>,
}

/// What the HTTP API needs (`Application::build`); the tests fill it in
/// themselves.
#[derive(Clone, Args)]
pub struct ApiConfig {
    /// Address and port to serve HTTP on.
    #[arg(
        long,
        env = "UBIOPS_LISTEN",
        value_name = "ADDRESS",
        default_value = DEFAULT_LISTEN,
        value_parser = setting(parsed::<SocketAddr>),
    )]
    pub listen: SocketAddr,

    /// organization_name of projects created without one.
    #[arg(
        long = "organization",
        env = "UBIOPS_ORGANIZATION",
        value_name = "NAME",
        default_value = DEFAULT_ORGANIZATION,
        value_parser = setting(organization),
    )]
    pub organization_name: String,

    /// Comma-separated instance types to offer besides the built-in ones
    /// (e.g. 8192mb_a100).
    #[arg(
        long = "extra-instance-types",
        env = "UBIOPS_EXTRA_INSTANCE_TYPES",
        value_name = "TYPES",
        default_value = "",
        hide_default_value = true,
        value_parser = setting(|raw| Ok(InstanceTypeCatalog::with_extra(raw)?)),
    )]
    pub instance_types: InstanceTypeCatalog,

    /// The largest deployment file accepted.
    #[arg(
        long = "max-upload-mb",
        env = "UBIOPS_MAX_UPLOAD_MB",
        value_name = "MB",
        default_value = "2048",
        value_parser = setting(|raw| Ok(parsed::<u64>(raw)?.saturating_mul(1024 * 1024))),
    )]
    pub max_upload_bytes: u64,

    /// How long a dead server's partial upload waits before the sweep removes it.
    #[arg(
        long = "upload-lease-seconds",
        env = "UBIOPS_UPLOAD_LEASE_SECONDS",
        value_name = "SECONDS",
        default_value = "120",
        value_parser = setting(lease),
    )]
    pub upload_lease: Duration,

    /// How long a verified API token is trusted before the database is
    /// asked again: how long a revoked token keeps working.
    #[arg(
        long = "token-cache-seconds",
        env = "UBIOPS_TOKEN_CACHE_SECONDS",
        value_name = "SECONDS",
        default_value = default_token_cache_seconds(),
        value_parser = setting(|raw| Ok(Duration::from_secs(parsed(raw)?))),
    )]
    pub token_cache_ttl: Duration,
}

impl Config {
    /// The batch queue's settings on this server.
    pub fn queue_settings(&self) -> QueueSettings {
        QueueSettings {
            lease: self.request_lease,
            max_retries: self.request_retries,
            ..QueueSettings::default()
        }
    }

    /// What clap cannot check one setting at a time.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.bootstrap.token.is_none() && self.bootstrap.email.is_some() {
            bail!("UBIOPS_BOOTSTRAP_EMAIL is set but UBIOPS_BOOTSTRAP_TOKEN is not: set both or neither");
        }
        Ok(())
    }

    pub fn storage_url(&self) -> Url {
        self.storage_url.clone().unwrap_or_else(|| {
            Url::from_directory_path(self.data.dir.join("objects"))
                .expect("the data directory is absolute (made so by its parser)")
        })
    }
}

impl DataConfig {
    pub fn embedded_postgres_dir(&self) -> PathBuf {
        self.dir.join("postgres")
    }
}

impl Bootstrap {
    pub fn email(&self) -> &str {
        self.email.as_deref().unwrap_or(DEFAULT_BOOTSTRAP_EMAIL)
    }
}

/// A value parser from `parse`, whose error is shown as
/// `error: <VARIABLE>: <error>`. Unlike clap's own message it does not quote
/// the value: some values are secrets, or URLs with a password.
fn setting<T, F>(parse: F) -> Setting<F>
where
    F: Fn(&str) -> anyhow::Result<T> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    Setting(parse)
}

#[derive(Clone)]
struct Setting<F>(F);

impl<T, F> TypedValueParser for Setting<F>
where
    F: Fn(&str) -> anyhow::Result<T> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let parsed = value
            .to_str()
            .ok_or_else(|| anyhow!("not valid UTF-8"))
            .and_then(&self.0);
        parsed.map_err(|error| {
            let name = arg
                .and_then(clap::Arg::get_env)
                .unwrap_or_default()
                .to_string_lossy();
            command
                .clone()
                .error(ErrorKind::ValueValidation, format!("{name}: {error:#}"))
        })
    }
}

fn parsed<T: FromStr>(raw: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|e| anyhow!("invalid value '{raw}': {e}"))
}

/// A whole number of `unit`s within `range`.
fn whole(raw: &str, range: std::ops::RangeInclusive<u64>, unit: &str) -> anyhow::Result<u64> {
    let value: u64 = parsed(raw)?;
    if !range.contains(&value) {
        bail!(
            "use {} to {} {unit}, not {value}",
            range.start(),
            range.end()
        );
    }
    Ok(value)
}

/// A lease length in whole seconds. Renewals come at a fraction of it, so a
/// few seconds is the shortest that a busy machine keeps up with.
fn lease(raw: &str) -> anyhow::Result<Duration> {
    whole(raw, 2..=3600, "seconds").map(Duration::from_secs)
}

/// `default_value` takes a `&'static str`; the default lives with the cache.
fn default_token_cache_seconds() -> &'static str {
    static DEFAULT: OnceLock<String> = OnceLock::new();
    DEFAULT.get_or_init(|| DEFAULT_TOKEN_CACHE_TTL.as_secs().to_string())
}

fn data_dir(raw: &str) -> anyhow::Result<PathBuf> {
    std::path::absolute(Path::new(raw)).context("cannot resolve the data directory")
}

fn database_url(raw: &str) -> anyhow::Result<String> {
    let url = Url::parse(raw).map_err(|e| anyhow!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!("expected a postgres:// URL, got scheme '{}'", url.scheme());
    }
    Ok(raw.to_owned())
}

fn storage_url(raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).map_err(|e| anyhow!("invalid value '{raw}': {e}"))?;
    match url.scheme() {
        "file" => Ok(url),
        "s3" if url.host_str().is_some_and(|bucket| !bucket.is_empty()) => Ok(url),
        "s3" => bail!("invalid value '{raw}': use s3://<bucket>[/prefix]"),
        other => {
            bail!("invalid value '{raw}': scheme '{other}' is not supported; use file:// or s3://")
        }
    }
}

fn bootstrap_token(token: &str) -> anyhow::Result<String> {
    if token.len() < MIN_BOOTSTRAP_TOKEN_LENGTH || !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!(
            "use at least {MIN_BOOTSTRAP_TOKEN_LENGTH} printable characters without spaces \
             (for example the output of `openssl rand -hex 32`)"
        );
    }
    Ok(token.to_owned())
}

fn email(raw: &str) -> anyhow::Result<String> {
    validate_email(raw)?;
    Ok(raw.to_owned())
}

/// Checked here, before anything starts; which keys the stored secrets need
/// is checked once the database is open (keyring.rs).
fn secret_key(key: &str) -> anyhow::Result<String> {
    Keyring::from_hex(key, &[])?;
    Ok(key.to_owned())
}

fn previous_secret_keys(keys: &str) -> anyhow::Result<String> {
    for key in keys.split(',').map(str::trim).filter(|key| !key.is_empty()) {
        Keyring::from_hex(key, &[])?;
    }
    Ok(keys.to_owned())
}

/// Interpreters the operator names, by version. (A type of its own: clap
/// reads a `Vec` field as a repeated flag.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterpreterPaths(pub Vec<(Version, PathBuf)>);

fn interpreters(raw: &str) -> anyhow::Result<InterpreterPaths> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (version, path) = entry.split_once('=').ok_or_else(|| {
                anyhow!("'{entry}': use VERSION=PATH, e.g. 3.9=/opt/python3.9/bin/python3")
            })?;
            let version: Version = version.parse().map_err(|e: String| anyhow!(e))?;
            let path = PathBuf::from(path.trim());
            if !path.is_absolute() {
                bail!("'{entry}': the path must be absolute");
            }
            Ok((version, path))
        })
        .collect::<anyhow::Result<_>>()
        .map(InterpreterPaths)
}

fn boolean(raw: &str) -> anyhow::Result<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => bail!("invalid value '{raw}': use true or false"),
    }
}

fn uid_range(raw: &str) -> anyhow::Result<RangeInclusive<u32>> {
    let (first, last) = raw
        .split_once('-')
        .ok_or_else(|| anyhow!("invalid value '{raw}': use FIRST-LAST"))?;
    let (first, last): (u32, u32) = (parsed(first)?, parsed(last)?);
    if first < 1000 || last < first {
        bail!("invalid value '{raw}': use a range of unused ids above 1000, FIRST <= LAST");
    }
    Ok(first..=last)
}

fn organization(name: &str) -> anyhow::Result<String> {
    if name.chars().count() > 256 {
        bail!("at most 256 characters");
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: Config,
    }

    /// Flags only: the environment of the test process is left out.
    fn parse(args: &[&str]) -> Config {
        let command = Serve::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap();
        Serve::from_arg_matches(&matches).unwrap().config
    }

    /// The error for these flags (which win over the environment, whose
    /// variable names the errors need).
    fn error(args: &[&str]) -> String {
        Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .err()
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let config = parse(&[]);
        assert_eq!(config.api.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.api.organization_name, "self-hosted");
        assert_eq!(config.api.max_upload_bytes, 2048 * 1024 * 1024);
        assert_eq!(config.api.upload_lease, Duration::from_secs(120));
        assert_eq!(config.api.token_cache_ttl, DEFAULT_TOKEN_CACHE_TTL);
        assert_eq!(config.api.instance_types, InstanceTypeCatalog::default());
        assert!(config.data.database_url.is_none());
        assert_eq!(config.data.dir, std::path::absolute("data").unwrap());
        assert_eq!(
            config.storage_url(),
            Url::from_directory_path(config.data.dir.join("objects")).unwrap()
        );
        assert_eq!(config.database_wait, Duration::from_secs(60));
        assert_eq!(config.database_pool_size, 16);
        assert_eq!(config.build_workers, 2);
        assert_eq!(config.build_lease, Duration::from_secs(30));
        assert_eq!(config.request_lease, Duration::from_secs(30));
        assert_eq!(config.request_retries, 3);
        assert_eq!(config.log_retention, Duration::from_secs(30 * 86_400));
        assert!(config.bootstrap.token.is_none());
        assert!(config.secret_key.is_none());
        assert!(config.builds.interpreters.0.is_empty());
        assert!(!config.builds.strict);
        assert_eq!(config.builds.pip_timeout, Duration::from_secs(900));
        assert_eq!(config.builds.import_timeout, Duration::from_secs(120));
        assert_eq!(
            config.builds.instance_start_timeout,
            Duration::from_secs(600)
        );
        assert_eq!(config.builds.cache_bytes, 20480 << 20);
        assert_eq!(config.builds.sandbox_uids, 1_900_000_000..=1_900_999_999);
        assert!(config.check().is_ok());
    }

    #[test]
    fn interpreters_are_listed_by_version() {
        let config = parse(&[
            "--python-interpreters",
            "3.9=/opt/py39/bin/python3, 3.12=/usr/local/bin/python3.12",
            "--python-strict",
            "true",
        ]);
        assert_eq!(
            config.builds.interpreters.0,
            vec![
                (
                    "3.9".parse().unwrap(),
                    PathBuf::from("/opt/py39/bin/python3")
                ),
                (
                    "3.12".parse().unwrap(),
                    PathBuf::from("/usr/local/bin/python3.12")
                ),
            ]
        );
        assert!(config.builds.strict);
        for (flag, value, variable) in [
            ("--python-interpreters", "3.9", "UBIOPS_PYTHON_INTERPRETERS"),
            (
                "--python-interpreters",
                "3.x=/usr/bin/python3",
                "UBIOPS_PYTHON_INTERPRETERS",
            ),
            (
                "--python-interpreters",
                "3.9=python3",
                "UBIOPS_PYTHON_INTERPRETERS",
            ),
            ("--python-strict", "maybe", "UBIOPS_PYTHON_STRICT"),
            ("--sandbox-uids", "0-10", "UBIOPS_SANDBOX_UIDS"),
            (
                "--import-timeout-seconds",
                "0",
                "UBIOPS_IMPORT_TIMEOUT_SECONDS",
            ),
        ] {
            let error = error(&[flag, value]);
            assert!(error.contains(variable), "{flag} {value}: {error}");
        }
    }

    #[test]
    fn numbers_may_carry_spaces() {
        let config = parse(&["--database-pool-size", " 4 ", "--listen", "0.0.0.0:80 "]);
        assert_eq!(config.database_pool_size, 4);
        assert_eq!(config.api.listen.to_string(), "0.0.0.0:80");
    }

    #[test]
    fn a_bad_value_is_named_by_its_variable_and_secrets_are_not_echoed() {
        for (flag, value, variable) in [
            ("--listen", "nowhere", "UBIOPS_LISTEN"),
            ("--max-upload-mb", "lots", "UBIOPS_MAX_UPLOAD_MB"),
            ("--upload-lease-seconds", "1", "UBIOPS_UPLOAD_LEASE_SECONDS"),
            (
                "--database-wait-seconds",
                "3601",
                "UBIOPS_DATABASE_WAIT_SECONDS",
            ),
            ("--organization", &"o".repeat(257), "UBIOPS_ORGANIZATION"),
            (
                "--extra-instance-types",
                "huge",
                "UBIOPS_EXTRA_INSTANCE_TYPES",
            ),
        ] {
            let error = error(&[flag, value]);
            assert!(error.contains(variable), "{flag} {value}: {error}");
        }
        for (flag, secret, variable) in [
            ("--secret-key", "s3cr3t-not-hex", "UBIOPS_SECRET_KEY"),
            (
                "--previous-secret-keys",
                "s3cr3t-not-hex",
                "UBIOPS_PREVIOUS_SECRET_KEYS",
            ),
            (
                "--bootstrap-token",
                "s3cr3t short",
                "UBIOPS_BOOTSTRAP_TOKEN",
            ),
            ("--database-url", "mysql://u:s3cr3t@host/db", "DATABASE_URL"),
        ] {
            let error = error(&[flag, secret]);
            assert!(error.contains(variable), "{flag}: {error}");
            assert!(!error.contains("s3cr3t"), "{flag}: {error}");
        }
    }

    #[test]
    fn a_bootstrap_email_needs_its_token() {
        let config = parse(&["--bootstrap-email", "boot@example.com"]);
        let error = config.check().unwrap_err().to_string();
        assert!(error.contains("UBIOPS_BOOTSTRAP_EMAIL"), "{error}");
        let config = parse(&[
            "--bootstrap-email",
            "boot@example.com",
            "--bootstrap-token",
            "0123456789abcdef",
        ]);
        assert!(config.check().is_ok());
        assert_eq!(config.bootstrap.email(), "boot@example.com");
    }
}
