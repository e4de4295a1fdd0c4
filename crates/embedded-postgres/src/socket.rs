//! How clients reach a cluster: TCP is off, so a private Unix socket directory,
//! and the connection URLs that name it.

use std::path::{Path, PathBuf};

/// The superuser initdb creates; all connections use it (trust auth over a private socket).
pub(crate) const SUPERUSER: &str = "ubiops";
/// Only names the socket file, as TCP is disabled; private socket dirs keep clusters apart.
pub(crate) const PORT: u16 = 5432;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// `<dir>/run`, or a directory in /tmp named after `dir` when the socket path
/// inside `<dir>/run` would not fit in a `sockaddr_un`.
pub(crate) fn socket_dir_for(dir: &Path) -> PathBuf {
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

/// `postgres://ubiops@localhost/<db>?host=<socket dir>&port=<port>`: sqlx and
/// libpq both take a `host` starting with `/` as a Unix socket directory.
/// (An empty URL host is not valid for sqlx's URL parser, hence `localhost`.)
pub(crate) fn connection_url(socket_dir: &Path, port: u16, database: &str) -> String {
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
pub(crate) fn quote_list_item(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_falls_back_to_tmp_for_long_paths() {
        let short = Path::new("/var/lib/ubiops/postgres");
        assert_eq!(socket_dir_for(short), short.join("run"));

        let long = PathBuf::from(format!("/var/lib/{}", "x".repeat(100)));
        let fallback = socket_dir_for(&long);
        assert!(
            fallback.starts_with("/tmp")
                && fallback.to_string_lossy().starts_with("/tmp/ubiops-pg-")
        );
        assert_eq!(fallback, socket_dir_for(&long), "must be stable");
        assert_ne!(fallback, socket_dir_for(&long.join("other")));
        assert!(fallback.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH);
    }

    #[test]
    fn urls_escape_paths_and_names() {
        assert_eq!(
            connection_url(Path::new("/data dir/run+1"), 5432, "my db"),
            "postgres://ubiops@localhost/my%20db?host=/data%20dir/run%2B1&port=5432"
        );
    }
}
