//! The cluster's lifecycle: initdb on first use, start, wait until ready,
//! create the database, stop.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sqlx::{Connection, PgConnection};
use tracing::{info, warn};

use crate::binaries::{find_binaries, Binaries};
use crate::error::io_error;
use crate::lock::lock_holder;
use crate::postmaster::Postmaster;
use crate::run_as::{
    check_reachable, choose_run_as, chown, chown_recursive, command, create_cluster_dir,
    ensure_private_dir, RunAs,
};
use crate::socket::{connection_url, quote_list_item, socket_dir_for, PORT, SUPERUSER};
use crate::Error;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Cluster directory, e.g. `<data dir>/postgres`; created if missing.
    pub dir: PathBuf,
    /// Database to create if it does not exist, e.g. `ubiops`.
    pub database: String,
    /// `false` turns off fsync, synchronous_commit and full_page_writes: a crash
    /// can then corrupt the cluster, so only tests should use it.
    pub durable: bool,
    /// Extra server settings, passed as `-c name=value`.
    pub extra_settings: Vec<(String, String)>,
}

impl ClusterConfig {
    /// A durable cluster with no extra settings.
    pub fn new(dir: impl Into<PathBuf>, database: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            database: database.into(),
            durable: true,
            extra_settings: Vec::new(),
        }
    }
}

/// A running postmaster started (and owned) by this process.
///
/// Dropping it without [`stop`](Self::stop) still shuts the server down, but
/// blocks the current thread for up to a few seconds.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    socket_dir: PathBuf,
    database: String,
    postmaster: Postmaster,
}

impl EmbeddedPostgres {
    /// Finds the binaries, runs initdb if the directory holds no cluster yet,
    /// starts postgres, waits until it accepts connections and creates the
    /// configured database if missing.
    pub async fn start(config: ClusterConfig) -> Result<Self, Error> {
        let bins = find_binaries()?;
        create_cluster_dir(&config.dir)?;
        // Absolute paths are needed for the socket dir and the ancestor check.
        let dir = fs::canonicalize(&config.dir)
            .map_err(io_error(format!("cannot resolve {}", config.dir.display())))?;
        let data = dir.join("data");
        let initialised = data.join("PG_VERSION").exists();

        let run_as = choose_run_as(&data, initialised)?;
        if let Some(user) = &run_as {
            check_reachable(&dir, user)?;
            chown(&dir, user)?;
        }
        if let Some(pid) = lock_holder(&data.join("postmaster.pid"), &data) {
            return Err(Error::InUse { dir, pid });
        }
        let socket_dir = socket_dir_for(&dir);
        ensure_private_dir(&socket_dir, run_as.as_ref())?;
        if let Some(pid) = lock_holder(&socket_dir.join(format!(".s.PGSQL.{PORT}.lock")), &data) {
            return Err(Error::InUse { dir, pid });
        }

        let log_path = dir.join("postgres.log");
        // Private like the rest of the cluster: failed statements end up in it.
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io_error(format!("cannot open {}", log_path.display())))?;

        if !initialised {
            initdb(
                &bins,
                &dir,
                &data,
                run_as.as_ref(),
                config.durable,
                &mut log,
            )
            .await?;
        } else if let Some(user) = &run_as {
            // Postgres insists that the data directory belongs to the user it runs as.
            if fs::metadata(&data).map(|m| m.uid()).ok() != Some(user.uid) {
                chown_recursive(&data, user)?;
            }
        }

        let log_start = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = writeln!(
            log,
            "=== ubiops-embedded-postgres: starting {} ===",
            bins.postgres.display()
        );
        let mut cmd = command(&bins.postgres, &dir, run_as.as_ref());
        cmd.arg("-D").arg(&data).arg("-p").arg(PORT.to_string());
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), String::new()),
            (
                "unix_socket_directories".into(),
                quote_list_item(&socket_dir.to_string_lossy()),
            ),
            ("unix_socket_permissions".into(), "0700".into()),
        ];
        if !config.durable {
            for name in ["fsync", "synchronous_commit", "full_page_writes"] {
                settings.push((name.into(), "off".into()));
            }
        }
        settings.extend(config.extra_settings.iter().cloned());
        for (name, value) in &settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        let stderr = log
            .try_clone()
            .map_err(io_error("cannot duplicate log file handle"))?;
        cmd.stdout(log).stderr(stderr);
        // Our own process group, so a Ctrl-C in the terminal reaches only us and
        // the database stays up while we shut down gracefully.
        cmd.process_group(0);

        let postmaster = Postmaster::spawn(cmd).map_err(io_error(format!(
            "cannot start {}",
            bins.postgres.display()
        )))?;
        info!(dir = %dir.display(), pid = postmaster.pid, "started embedded PostgreSQL");
        // From here on, dropping `pg` on an error path shuts the server down again.
        let pg = Self {
            dir,
            socket_dir,
            database: config.database,
            postmaster,
        };

        let mut conn = pg.wait_until_ready(&log_path, log_start).await?;
        create_database_if_missing(&mut conn, &pg.database).await?;
        let _ = conn.close().await;
        Ok(pg)
    }

    /// URL of the configured database, for sqlx (and libpq).
    pub fn database_url(&self) -> String {
        self.url_for_database(&self.database)
    }

    /// URL of another database in the same cluster.
    pub fn url_for_database(&self, database: &str) -> String {
        connection_url(&self.socket_dir, PORT, database)
    }

    /// Process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.postmaster.pid as u32
    }

    /// The cluster directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit),
    /// escalating to SIGQUIT and SIGKILL if the server does not exit in time.
    pub async fn stop(self) -> Result<(), Error> {
        let pm = &self.postmaster;
        pm.signal(Signal::SIGINT);
        if pm.wait_async(STOP_TIMEOUT).await.is_some() {
            info!(dir = %self.dir.display(), "stopped embedded PostgreSQL");
            return Ok(());
        }
        warn!(
            pid = pm.pid,
            "PostgreSQL did not finish a fast shutdown in time; sending SIGQUIT"
        );
        pm.signal(Signal::SIGQUIT);
        if pm.wait_async(Duration::from_secs(5)).await.is_some() {
            return Ok(());
        }
        pm.signal(Signal::SIGKILL);
        match pm.wait_async(Duration::from_secs(5)).await {
            Some(_) => Ok(()),
            None => Err(Error::WontStop { pid: pm.pid }),
        }
    }

    async fn wait_until_ready(
        &self,
        log_path: &Path,
        log_start: u64,
    ) -> Result<PgConnection, Error> {
        let startup_error = |problem: String| Error::Startup {
            dir: self.dir.clone(),
            problem,
            log: log_path.to_owned(),
            log_tail: log_tail(log_path, log_start),
        };
        // The maintenance database exists from initdb on, unlike ours.
        let url = self.url_for_database("postgres");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.postmaster.exit_status() {
                return Err(startup_error(format!("exited during startup ({status})")));
            }
            match PgConnection::connect(&url).await {
                Ok(conn) => return Ok(conn),
                Err(e) if Instant::now() >= deadline => {
                    return Err(startup_error(format!(
                        "did not accept connections within {} s (last attempt: {e})",
                        START_TIMEOUT.as_secs()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        let pm = &self.postmaster;
        if pm.exit_status().is_some() {
            return;
        }
        pm.signal(Signal::SIGINT);
        if pm.wait_blocking(Duration::from_secs(5)).is_none() {
            // Immediate shutdown: no checkpoint, crash recovery on next start.
            pm.signal(Signal::SIGQUIT);
            if pm.wait_blocking(Duration::from_secs(5)).is_none() {
                pm.signal(Signal::SIGKILL);
            }
        }
    }
}

async fn initdb(
    bins: &Binaries,
    dir: &Path,
    data: &Path,
    run_as: Option<&RunAs>,
    durable: bool,
    log: &mut File,
) -> Result<(), Error> {
    info!(data = %data.display(), "initialising embedded PostgreSQL cluster");
    if let Some(user) = run_as {
        // Everything (an old log, an empty data dir left by a failed attempt)
        // becomes the run-as user's, as it was created by us as root.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(data)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io_error(format!("cannot create {}", data.display())))?;
        chown_recursive(dir, user)?;
    }
    let mut cmd = command(&bins.initdb, dir, run_as);
    cmd.arg("-D").arg(data).args([
        "--auth=trust",
        "-U",
        SUPERUSER,
        "--encoding=UTF8",
        "--locale=C",
    ]);
    if !durable {
        cmd.arg("--no-sync");
    }
    let output = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(io_error(format!("cannot run {}", bins.initdb.display())))?;
    let _ = writeln!(
        log,
        "=== ubiops-embedded-postgres: {} ===",
        bins.initdb.display()
    );
    let _ = log.write_all(&output.stdout);
    let _ = log.write_all(&output.stderr);
    if !output.status.success() {
        return Err(Error::Initdb {
            dir: data.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_owned(),
        });
    }
    Ok(())
}

async fn create_database_if_missing(conn: &mut PgConnection, database: &str) -> Result<(), Error> {
    let wrap = |source| Error::CreateDatabase {
        database: database.to_owned(),
        source,
    };
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut *conn)
            .await
            .map_err(wrap)?;
    if exists {
        return Ok(());
    }
    let quoted = format!("\"{}\"", database.replace('"', "\"\""));
    match sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(()),
        // Somebody else created it in the meantime: fine.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
        Err(e) => Err(wrap(e)),
    }
}

/// The last lines that this start wrote to the log.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.seek(SeekFrom::Start(from));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}
