//! A private PostgreSQL cluster that this process runs as a child.
//!
//! The server uses it when no `DATABASE_URL` is given, keeping the cluster in
//! `<data dir>/postgres`; the test harness uses it for throwaway clusters.
//!
//! Layout of a cluster directory:
//! - `data/`: the cluster itself (initdb's target)
//! - `run/`: the Unix socket (TCP is disabled), unless that path is too long
//!   for a socket, in which case `/tmp/ubiops-pg-<hash>` is used instead
//! - `postgres.log`: initdb's and postgres's output, appended across runs
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster is owned
//! by and run as the `postgres` user (or `nobody`). Every directory above the
//! cluster must then be searchable by that user; see [`make_traversable`].

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{lchown, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, Uid, User};
use sqlx::{Connection, PgConnection};
use tracing::{info, warn};

/// The superuser initdb creates; all connections use it (trust auth over a private socket).
const SUPERUSER: &str = "ubiops";
/// Only names the socket file, as TCP is disabled; private socket dirs keep clusters apart.
const PORT: u16 = 5432;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: \
         install the PostgreSQL server package (e.g. `apt-get install postgresql`) \
         or set DATABASE_URL to use an existing database"
    )]
    BinariesNotFound,
    #[error("UBIOPS_PG_BIN is set to {0}, but that directory does not contain the PostgreSQL server binaries (initdb, postgres)")]
    BadBinDir(PathBuf),
    #[error(
        "running as root, which PostgreSQL refuses, and there is neither a `postgres` nor a `nobody` user to run it as: \
         create a `postgres` user (the PostgreSQL server package does) or set DATABASE_URL to use an existing database"
    )]
    NoUnprivilegedUser,
    #[error(
        "PostgreSQL has to run as user `{user}` (it refuses to run as root), but that user cannot enter {blocker}, \
         which contains the cluster directory {dir}: use a data directory outside {blocker} (e.g. under /var/lib or /tmp), \
         allow others to enter it (chmod o+x), or set DATABASE_URL to use an existing database"
    )]
    Unreachable {
        user: String,
        dir: PathBuf,
        blocker: PathBuf,
    },
    #[error("the embedded PostgreSQL in {dir} is already in use by process {pid}")]
    InUse { dir: PathBuf, pid: i32 },
    #[error("initdb failed for {dir} ({status}):\n{stderr}")]
    Initdb {
        dir: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("PostgreSQL in {dir} {problem}; last lines of {log}:\n{log_tail}")]
    Startup {
        dir: PathBuf,
        problem: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("could not create database {database}: {source}")]
    CreateDatabase {
        database: String,
        source: sqlx::Error,
    },
    #[error("PostgreSQL (process {pid}) did not exit even after SIGKILL")]
    WontStop { pid: i32 },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
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

/// URL of a postmaster already running on the cluster in `dir` (for example the
/// server's, while a CLI command runs), or `None` if none is running and ready.
pub fn running_cluster_url(dir: &Path, database: &str) -> Option<String> {
    // postmaster.pid lines: pid, data dir, start time, port, first socket dir,
    // listen address, shared memory key, status.
    let contents = fs::read_to_string(dir.join("data").join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = contents.lines().map(str::trim).collect();
    let pid: i32 = lines.first()?.parse().ok()?;
    let port: u16 = lines.get(3)?.parse().ok()?;
    let socket_dir = Path::new(lines.get(4)?);
    if !process_alive(pid) || lines.get(7) != Some(&"ready") || socket_dir.as_os_str().is_empty() {
        return None;
    }
    UnixStream::connect(socket_dir.join(format!(".s.PGSQL.{port}"))).ok()?;
    Some(connection_url(socket_dir, port, database))
}

/// Lets other users enter `path` (adds the x bits for group and other), which
/// the unprivileged PostgreSQL user needs for every directory above a cluster.
/// Temporary directories are created 0700, so tests running as root call this
/// on the temporary directory that holds their cluster.
pub fn make_traversable(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o011))
}

// ---------------------------------------------------------------------------
// The postmaster child process

/// The postmaster, spawned and reaped by a dedicated thread.
///
/// The thread matters because PR_SET_PDEATHSIG fires when the *thread* that
/// forked the child exits, not the process: spawned from a tokio worker or
/// blocking-pool thread, postgres would be shut down whenever that thread is
/// retired. The supervisor thread lives exactly as long as the child.
#[derive(Debug)]
struct Postmaster {
    pid: i32,
    /// `None` while running; once reaped, how it exited.
    exit: Arc<(Mutex<Option<String>>, Condvar)>,
}

impl Postmaster {
    fn spawn(mut cmd: Command) -> io::Result<Self> {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the hook only makes async-signal-safe system calls and does not allocate.
        unsafe { cmd.pre_exec(move || die_with_parent(parent)) };

        let exit = Arc::new((Mutex::new(None), Condvar::new()));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread_exit = Arc::clone(&exit);
        std::thread::Builder::new()
            .name("postmaster".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let pid = child.id() as i32;
                let _ = started_tx.send(Ok(pid));
                // Wait without reaping, and reap only while holding the lock, so
                // `signal` can never hit a recycled pid.
                wait_without_reaping(pid);
                let (state, exited) = &*thread_exit;
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                *state = Some(match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("status unknown: {e}"),
                });
                exited.notify_all();
            })?;
        let pid = started_rx
            .recv()
            .map_err(|_| io::Error::other("postmaster thread died"))??;
        Ok(Self { pid, exit })
    }

    fn exit_status(&self) -> Option<String> {
        self.exit
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn signal(&self, signal: Signal) {
        let state = self.exit.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.is_none() {
            let _ = kill(Pid::from_raw(self.pid), signal);
        }
    }

    fn wait_blocking(&self, timeout: Duration) -> Option<String> {
        let (state, exited) = &*self.exit;
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, _) = exited
            .wait_timeout_while(state, timeout, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        state.clone()
    }

    async fn wait_async(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs in the child between fork and exec, after std has switched uid/gid
/// (which would clear the parent-death signal had we set it earlier).
///
/// If this process dies, even by SIGKILL, the kernel sends postgres SIGINT and
/// it does a fast shutdown instead of living on as an orphan that holds the
/// cluster. If we died before prctl took effect, the child was already
/// reparented, so the check of getppid closes that race.
fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // Errors are built from raw errno values: allocating after fork in a
    // multi-threaded process can deadlock.
    // SAFETY: prctl and getppid are plain system calls.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

fn wait_without_reaping(pid: i32) {
    loop {
        // SAFETY: waitid only writes into the zeroed siginfo we pass.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Binaries

#[derive(Debug, Clone, PartialEq)]
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

fn find_binaries() -> Result<Binaries, Error> {
    find_binaries_in(
        std::env::var_os("UBIOPS_PG_BIN")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        std::env::var_os("PATH"),
        Path::new("/usr/lib/postgresql"),
    )
}

/// `UBIOPS_PG_BIN` if set, else PATH, else the newest `<versioned_root>/<version>/bin`.
fn find_binaries_in(
    env_dir: Option<PathBuf>,
    path: Option<OsString>,
    versioned_root: &Path,
) -> Result<Binaries, Error> {
    if let Some(dir) = env_dir {
        return binaries_in(&dir).ok_or(Error::BadBinDir(dir));
    }
    let on_path = path
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .iter()
        .find_map(|dir| binaries_in(dir))
        .or_else(|| {
            versioned_bin_dirs(versioned_root)
                .iter()
                .find_map(|dir| binaries_in(dir))
        })
        .ok_or(Error::BinariesNotFound)
}

/// Both from one directory, so initdb and postgres are of the same version.
fn binaries_in(dir: &Path) -> Option<Binaries> {
    let executable = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
    let bins = Binaries {
        initdb: dir.join("initdb"),
        postgres: dir.join("postgres"),
    };
    (executable(&bins.initdb) && executable(&bins.postgres)).then_some(bins)
}

/// `<root>/<version>/bin`, newest version first (numerically: 10 after 9.6).
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

// ---------------------------------------------------------------------------
// Users, ownership and directories

#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// `None` means "as ourselves". As root: the owner of an existing cluster, so a
/// cluster made while only `nobody` existed keeps working once a `postgres`
/// user appears; otherwise `postgres`, falling back to `nobody`.
fn choose_run_as(data: &Path, initialised: bool) -> Result<Option<RunAs>, Error> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    if initialised {
        if let Ok(meta) = fs::metadata(data) {
            if meta.uid() != 0 {
                let user = User::from_uid(Uid::from_raw(meta.uid())).ok().flatten();
                return Ok(Some(RunAs {
                    name: user
                        .as_ref()
                        .map_or_else(|| meta.uid().to_string(), |u| u.name.clone()),
                    uid: meta.uid(),
                    gid: user.map_or(meta.gid(), |u| u.gid.as_raw()),
                }));
            }
        }
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| User::from_name(name).ok().flatten())
        .map(|u| {
            Some(RunAs {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            })
        })
        .ok_or(Error::NoUnprivilegedUser)
}

/// The cluster directory itself is private, but any parents we create get the
/// usual mode: a 0700 parent would lock the unprivileged user out.
fn create_cluster_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    let error = || io_error(format!("cannot create {}", dir.display()));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(error())?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(error()(e)),
        _ => Ok(()),
    }
}

/// Postgres needs search permission on every ancestor of the cluster. We check
/// up front because postgres itself would only report an obscure
/// "could not change directory" or "permission denied".
fn check_reachable(dir: &Path, user: &RunAs) -> Result<(), Error> {
    for ancestor in dir.ancestors().skip(1) {
        let meta = fs::metadata(ancestor)
            .map_err(io_error(format!("cannot inspect {}", ancestor.display())))?;
        // As in the kernel, the most specific class decides: an owner without
        // the owner x bit is refused even if "other" may enter.
        let search_bit = if meta.uid() == user.uid {
            0o100
        } else if meta.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if meta.mode() & search_bit == 0 {
            return Err(Error::Unreachable {
                user: user.name.clone(),
                dir: dir.to_owned(),
                blocker: ancestor.to_owned(),
            });
        }
    }
    Ok(())
}

fn chown(path: &Path, user: &RunAs) -> Result<(), Error> {
    lchown(path, Some(user.uid), Some(user.gid))
        .map_err(io_error(format!("cannot chown {}", path.display())))
}

fn chown_recursive(path: &Path, user: &RunAs) -> Result<(), Error> {
    chown(path, user)?;
    let meta = fs::symlink_metadata(path)
        .map_err(io_error(format!("cannot inspect {}", path.display())))?;
    if meta.is_dir() {
        for entry in
            fs::read_dir(path).map_err(io_error(format!("cannot list {}", path.display())))?
        {
            let entry = entry.map_err(io_error(format!("cannot list {}", path.display())))?;
            chown_recursive(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// `<dir>/run`, or a directory in /tmp named after `dir` when the socket path
/// inside `<dir>/run` would not fit in a `sockaddr_un`.
fn socket_dir_for(dir: &Path) -> PathBuf {
    let preferred = dir.join("run");
    let socket = preferred.join(format!(".s.PGSQL.{PORT}"));
    if socket.as_os_str().len() <= MAX_SOCKET_PATH {
        return preferred;
    }
    // FNV-1a rather than std's hasher, whose output may change between Rust
    // releases: a CLI built later must still find the server's socket.
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        });
    PathBuf::from(format!("/tmp/ubiops-pg-{:012x}", hash & 0xffff_ffff_ffff))
}

/// A 0700 directory owned by the user postgres runs as. An existing one owned by
/// anybody else is refused: in /tmp it could have been planted by another user.
fn ensure_private_dir(path: &Path, run_as: Option<&RunAs>) -> Result<(), Error> {
    let owner = run_as.map_or_else(|| Uid::effective().as_raw(), |u| u.uid);
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::Io {
                context: format!("{} exists but is not a directory", path.display()),
                source: io::ErrorKind::AlreadyExists.into(),
            })
        }
        Ok(meta) if meta.uid() != owner && meta.uid() != 0 => {
            return Err(Error::Io {
                context: format!(
                    "refusing to use {}: it belongs to uid {}",
                    path.display(),
                    meta.uid()
                ),
                source: io::ErrorKind::PermissionDenied.into(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(io_error(format!("cannot create {}", path.display())))?;
        }
        Err(e) => return Err(io_error(format!("cannot inspect {}", path.display()))(e)),
    }
    if let Some(user) = run_as {
        chown(path, user)?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(io_error(format!("cannot chmod {}", path.display())))
}

/// The pid of a live process holding a postgres lock file (postmaster.pid or
/// the socket's .lock) for `data`.
///
/// A dead holder is left to postgres, which cleans up after crashes itself.
/// But after a container restart the recorded pid may now belong to an
/// unrelated process, and postgres would refuse to start; a postmaster's
/// working directory is its data directory, so /proc tells the two apart.
fn lock_holder(lock_file: &Path, data: &Path) -> Option<i32> {
    let contents = fs::read_to_string(lock_file).ok()?;
    let pid: i32 = contents.lines().next()?.trim().parse().ok()?;
    if pid <= 0 || !process_alive(pid) {
        return None;
    }
    let cwd = fs::read_link(format!("/proc/{pid}/cwd"));
    let data = fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
    match cwd {
        Ok(cwd) if cwd != data => {
            warn!(pid, lock = %lock_file.display(), "removing stale PostgreSQL lock file naming an unrelated process");
            let _ = fs::remove_file(lock_file);
            None
        }
        // Same directory, or we may not look: assume it is a live postmaster.
        _ => Some(pid),
    }
}

fn process_alive(pid: i32) -> bool {
    // EPERM means it exists but belongs to someone else.
    !matches!(
        kill(Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

// ---------------------------------------------------------------------------
// initdb, commands, URLs, logs

/// A command for a PostgreSQL binary, run as `run_as`.
fn command(program: &Path, dir: &Path, run_as: Option<&RunAs>) -> Command {
    let mut cmd = Command::new(program);
    // Our own working directory may be one the unprivileged user cannot enter.
    cmd.current_dir(dir).stdin(Stdio::null());
    if let Some(user) = run_as {
        // With uid set, std also drops all supplementary groups (setgroups(0))
        // before setuid, so root's groups do not leak into postgres.
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
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

/// `postgres://ubiops@localhost/<db>?host=<socket dir>&port=<port>`: sqlx and
/// libpq both take a `host` starting with `/` as a Unix socket directory.
/// (An empty URL host is not valid for sqlx's URL parser, hence `localhost`.)
fn connection_url(socket_dir: &Path, port: u16, database: &str) -> String {
    format!(
        "postgres://{SUPERUSER}@localhost/{}?host={}&port={port}",
        percent_encode(database),
        percent_encode(&socket_dir.to_string_lossy())
    )
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Quotes one item of a comma-separated list setting such as
/// unix_socket_directories, so paths with commas or spaces survive.
fn quote_list_item(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
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

#[cfg(test)]
mod tests;
