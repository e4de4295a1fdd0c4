//! Running as root, which PostgreSQL refuses: choosing the unprivileged user
//! to run it as, and giving that user the ownership and permissions it needs.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::{Uid, User};

use crate::error::io_error;
use crate::Error;

#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// `None` means "as ourselves". As root: the owner of an existing cluster, so a
/// cluster made while only `nobody` existed keeps working once a `postgres`
/// user appears; otherwise `postgres`, falling back to `nobody`.
pub(crate) fn choose_run_as(data: &Path, initialised: bool) -> Result<Option<RunAs>, Error> {
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
pub(crate) fn create_cluster_dir(dir: &Path) -> Result<(), Error> {
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
pub(crate) fn check_reachable(dir: &Path, user: &RunAs) -> Result<(), Error> {
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

pub(crate) fn chown(path: &Path, user: &RunAs) -> Result<(), Error> {
    lchown(path, Some(user.uid), Some(user.gid))
        .map_err(io_error(format!("cannot chown {}", path.display())))
}

pub(crate) fn chown_recursive(path: &Path, user: &RunAs) -> Result<(), Error> {
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

/// A 0700 directory owned by the user postgres runs as. An existing one owned by
/// anybody else is refused: in /tmp it could have been planted by another user.
pub(crate) fn ensure_private_dir(path: &Path, run_as: Option<&RunAs>) -> Result<(), Error> {
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

/// Lets other users enter `path` (adds the x bits for group and other), which
/// the unprivileged PostgreSQL user needs for every directory above a cluster.
/// Temporary directories are created 0700, so tests running as root call this
/// on the temporary directory that holds their cluster.
pub fn make_traversable(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o011))
}

/// A command for a PostgreSQL binary, run as `run_as`.
pub(crate) fn command(program: &Path, dir: &Path, run_as: Option<&RunAs>) -> Command {
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
