//! Finding the PostgreSQL server binaries (initdb and postgres) of one version.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Binaries {
    pub(crate) initdb: PathBuf,
    pub(crate) postgres: PathBuf,
}

pub(crate) fn find_binaries() -> Result<Binaries, Error> {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn binaries_not_found_message() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_binaries_in(None, Some(empty.path().into()), empty.path()).unwrap_err();
        assert!(matches!(err, Error::BinariesNotFound));
        assert_eq!(
        err.to_string(),
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: \
         install the PostgreSQL server package (e.g. `apt-get install postgresql`) \
         or set DATABASE_URL to use an existing database"
    );
        let err = find_binaries_in(
            Some(empty.path().into()),
            None,
            Path::new("/usr/lib/postgresql"),
        )
        .unwrap_err();
        assert!(matches!(err, Error::BadBinDir(_)), "{err}");
    }

    #[test]
    fn binaries_search_order() {
        let tmp = tempfile::tempdir().unwrap();
        let fake_bin = |dir: &Path| {
            fs::create_dir_all(dir).unwrap();
            for name in ["initdb", "postgres"] {
                fs::write(dir.join(name), "#!/bin/sh\n").unwrap();
                fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o755)).unwrap();
            }
            dir.to_owned()
        };
        let root = tmp.path().join("lib");
        for version in ["9.6", "10", "15", "notaversion"] {
            fake_bin(&root.join(version).join("bin"));
        }
        let newest = find_binaries_in(None, None, &root).unwrap();
        assert_eq!(newest.postgres, root.join("15/bin/postgres"));

        // A directory with only one of the two does not count.
        let half = tmp.path().join("half");
        fs::create_dir_all(&half).unwrap();
        fs::write(half.join("postgres"), "").unwrap();
        let on_path = fake_bin(&tmp.path().join("path"));
        let path = std::env::join_paths([&half, &on_path]).unwrap();
        assert_eq!(
            find_binaries_in(None, Some(path.clone()), &root)
                .unwrap()
                .initdb,
            on_path.join("initdb")
        );

        let env = fake_bin(&tmp.path().join("env"));
        assert_eq!(
            find_binaries_in(Some(env.clone()), Some(path), &root)
                .unwrap()
                .initdb,
            env.join("initdb")
        );
    }
}
