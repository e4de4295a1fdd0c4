//! Stage 1: safe extraction of an uploaded zip.
//!
//! Two passes over the central directory: the first refuses the archive on
//! anything visible without decompressing (paths, links, encryption, declared
//! sizes), so a hostile archive usually writes nothing at all. The second
//! decompresses, counting the bytes really produced, because the sizes in the
//! headers are written by the uploader and a zip bomb lies about them.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::path::{Component, Path, PathBuf};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::text::{human_size, printable};
use crate::{BuildFailure, Limits};

/// What [`extract`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files written (folders not counted).
    pub files: usize,
    /// Bytes written across all files.
    pub total_bytes: u64,
}

/// Copy buffer: large enough for throughput, small enough that a cap is
/// noticed within one buffer of being crossed.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

/// Stage 1 ("building"): extracts the zip at `zip_path` into `dest`.
///
/// `dest` must be an empty directory (it is created if missing). Nothing is
/// ever written outside it. On failure `dest` may hold a partial extraction;
/// the caller owns it and should remove it.
pub fn extract(zip_path: &Path, dest: &Path, limits: &Limits) -> Result<Extracted, BuildFailure> {
    prepare_destination(dest)?;

    let file = File::open(zip_path)
        .map_err(|err| BuildFailure::new(format!("Could not open the deployment file: {err}")))?;
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(not_a_zip)?;

    if archive.len() > limits.max_entries {
        return Err(BuildFailure::new(format!(
            "The deployment file holds {} entries; at most {} are allowed",
            archive.len(),
            limits.max_entries
        )));
    }

    // The zip crate keeps one entry per name; the hidden duplicate could hold
    // different content than a person inspecting the zip would see.
    if archive.has_duplicate_names() {
        return Err(BuildFailure::new(
            "The deployment file lists the same file name more than once; create the zip again",
        ));
    }

    let plan = plan_entries(&mut archive, limits)?;
    write_entries(&mut archive, &plan, dest, limits)
}

/// One archive entry, checked and ready to write.
struct PlannedEntry {
    index: usize,
    /// Safe path relative to the destination.
    relative: PathBuf,
    /// The name as stored, for messages.
    shown: String,
    is_dir: bool,
    declared_size: u64,
}

fn prepare_destination(dest: &Path) -> Result<(), BuildFailure> {
    let internal = |err: io::Error| {
        BuildFailure::new(format!(
            "Could not prepare the build directory '{}': {err}",
            dest.display()
        ))
    };
    fs::create_dir_all(dest).map_err(internal)?;
    // Refusing a non-empty destination keeps the "nothing outside dest"
    // guarantee simple: every path below it was created by this extraction,
    // so none of them can be a symlink planted beforehand.
    if fs::read_dir(dest).map_err(internal)?.next().is_some() {
        return Err(BuildFailure::new(format!(
            "The build directory '{}' is not empty",
            dest.display()
        )));
    }
    Ok(())
}

/// First pass: decides, from metadata only, whether every entry is acceptable.
fn plan_entries<R: Read + io::Seek>(
    archive: &mut ZipArchive<R>,
    limits: &Limits,
) -> Result<Vec<PlannedEntry>, BuildFailure> {
    let mut plan = Vec::with_capacity(archive.len());
    let mut seen_files = HashSet::new();
    let mut declared_total: u64 = 0;

    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(not_a_zip)?;
        let shown = match entry.name() {
            Ok(name) => printable(&name),
            Err(_) => printable(&String::from_utf8_lossy(entry.name_raw())),
        };
        let name = entry.name().map_err(|_| unsafe_path(&shown))?;

        let (relative, names_a_dir) =
            safe_relative_path(&name).ok_or_else(|| unsafe_path(&shown))?;
        if entry.is_symlink() {
            return Err(BuildFailure::new(format!(
                "Symbolic links are not allowed in the deployment file: '{shown}'"
            )));
        }
        if entry.encrypted() {
            return Err(BuildFailure::new(format!(
                "'{shown}' in the deployment file is password-protected; upload a zip without encryption"
            )));
        }

        let is_dir = names_a_dir || entry.is_dir();
        if is_dir && relative.as_os_str().is_empty() {
            // An entry for the archive root itself ("./"): nothing to create.
            continue;
        }
        // A second, independent opinion on the name: both must accept it.
        if relative.as_os_str().is_empty() || entry.enclosed_name().is_none() {
            return Err(unsafe_path(&shown));
        }
        if !is_dir {
            match entry.compression() {
                CompressionMethod::Stored | CompressionMethod::Deflated => {}
                other => {
                    return Err(BuildFailure::new(format!(
                        "'{shown}' in the deployment file uses a compression method this server cannot read ({other}); \
                         create the zip with standard (deflate) compression"
                    )))
                }
            }
            // Declared sizes cannot be trusted to be small, but when they are
            // already too big the archive can be refused before any work.
            let declared = entry.size();
            check_file_size(declared, &shown, limits)?;
            declared_total = declared_total.saturating_add(declared);
            check_total_size(declared_total, limits)?;

            if !seen_files.insert(relative.clone()) {
                return Err(BuildFailure::new(format!(
                    "The deployment file contains '{shown}' more than once"
                )));
            }
        }

        plan.push(PlannedEntry {
            index,
            relative,
            shown,
            is_dir,
            declared_size: entry.size(),
        });
    }
    Ok(plan)
}

/// Second pass: decompresses and writes, enforcing the limits on real bytes.
fn write_entries<R: Read + io::Seek>(
    archive: &mut ZipArchive<R>,
    plan: &[PlannedEntry],
    dest: &Path,
    limits: &Limits,
) -> Result<Extracted, BuildFailure> {
    let mut extracted = Extracted {
        files: 0,
        total_bytes: 0,
    };
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];

    for planned in plan {
        let target = dest.join(&planned.relative);
        if !is_inside(dest, &target) {
            return Err(unsafe_path(&planned.shown));
        }

        if planned.is_dir {
            fs::create_dir_all(&target).map_err(|err| write_error(&planned.shown, &err))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|err| write_error(&planned.shown, &err))?;
        }
        // `create_new` never follows or replaces whatever is already there.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|err| write_error(&planned.shown, &err))?;

        let mut entry = archive.by_index(planned.index).map_err(not_a_zip)?;
        match copy_capped(
            &mut entry,
            &mut out,
            &mut buffer,
            &planned.shown,
            limits,
            &mut extracted.total_bytes,
        ) {
            Ok(_) => {}
            Err(CopyError::Limit(failure)) => {
                drop(out);
                // Free the space now rather than leaving a gigabyte for the caller.
                let _ = fs::remove_file(&target);
                return Err(failure);
            }
            Err(CopyError::Read { error, written }) => {
                return Err(read_error(planned, written, &error))
            }
            Err(CopyError::Write(error)) => return Err(write_error(&planned.shown, &error)),
        }
        extracted.files += 1;
    }
    Ok(extracted)
}

enum CopyError {
    Limit(BuildFailure),
    Read { error: io::Error, written: u64 },
    Write(io::Error),
}

/// Copies one entry, counting the bytes the decompressor really produces and
/// stopping within one buffer of crossing a cap, whatever the headers claim.
/// `total` carries the bytes written by earlier entries.
fn copy_capped(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    buffer: &mut [u8],
    shown: &str,
    limits: &Limits,
    total: &mut u64,
) -> Result<u64, CopyError> {
    let mut written: u64 = 0;
    loop {
        let read = match reader.read(buffer) {
            Ok(0) => return Ok(written),
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Read { error, written }),
        };
        written = written.saturating_add(read as u64);
        *total = total.saturating_add(read as u64);
        check_file_size(written, shown, limits).map_err(CopyError::Limit)?;
        check_total_size(*total, limits).map_err(CopyError::Limit)?;
        out.write_all(&buffer[..read]).map_err(CopyError::Write)?;
    }
}

/// Turns an entry name into a relative path made only of normal components,
/// and says whether the name denotes a folder. `None` means the name is unsafe.
///
/// Backslashes are read as separators: some Windows tools write them, and
/// treating them as ordinary characters would hide a `..\` from the checks.
fn safe_relative_path(name: &str) -> Option<(PathBuf, bool)> {
    if name.contains('\0') {
        return None;
    }
    let normalized = name.replace('\\', "/");
    if normalized.starts_with('/') {
        return None;
    }
    let names_a_dir = normalized.ends_with('/');
    let mut relative = PathBuf::new();
    for (position, part) in normalized.split('/').enumerate() {
        match part {
            "" | "." => continue,
            ".." => return None,
            // A drive letter ("C:", "c:evil") makes the name absolute on Windows.
            _ if position == 0 && has_drive_prefix(part) => return None,
            _ => relative.push(part),
        }
    }
    // Defence in depth: `push` of a normal segment must never yield anything
    // but normal components.
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    Some((relative, names_a_dir))
}

fn has_drive_prefix(part: &str) -> bool {
    let bytes = part.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

fn is_inside(dest: &Path, target: &Path) -> bool {
    target
        .strip_prefix(dest)
        .map(|rest| rest.components().all(|c| matches!(c, Component::Normal(_))))
        .unwrap_or(false)
}

fn check_file_size(bytes: u64, shown: &str, limits: &Limits) -> Result<(), BuildFailure> {
    if bytes > limits.max_file_uncompressed {
        return Err(BuildFailure::new(format!(
            "'{shown}' in the deployment file expands beyond {}, the most a single file may hold",
            human_size(limits.max_file_uncompressed)
        )));
    }
    Ok(())
}

fn check_total_size(bytes: u64, limits: &Limits) -> Result<(), BuildFailure> {
    if bytes > limits.max_total_uncompressed {
        return Err(BuildFailure::new(format!(
            "The deployment file expands beyond {}: zip bombs are refused",
            human_size(limits.max_total_uncompressed)
        )));
    }
    Ok(())
}

fn unsafe_path(shown: &str) -> BuildFailure {
    BuildFailure::new(format!("Unsafe path in the deployment file: '{shown}'"))
}

fn not_a_zip(err: ZipError) -> BuildFailure {
    BuildFailure::new(format!(
        "The deployment file is not a valid zip archive: {err}"
    ))
}

fn read_error(planned: &PlannedEntry, written: u64, err: &io::Error) -> BuildFailure {
    // The zip crate stops an entry that inflates past its declared size; that
    // is the signature of a zip bomb with a lying header, not mere corruption.
    let lying_header =
        err.to_string().contains("declared uncompressed size") || written > planned.declared_size;
    if lying_header {
        return BuildFailure::new(format!(
            "'{}' in the deployment file holds more data than its header declares: zip bombs are refused",
            planned.shown
        ));
    }
    BuildFailure::new(format!(
        "The deployment file is not a valid zip archive: '{}': {err}",
        planned.shown
    ))
}

fn write_error(shown: &str, err: &io::Error) -> BuildFailure {
    match err.kind() {
        ErrorKind::AlreadyExists | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            BuildFailure::new(format!(
                "Conflicting entries in the deployment file: '{shown}' clashes with a file or folder of the same name"
            ))
        }
        _ => BuildFailure::new(format!("Could not extract '{shown}' from the deployment file: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str) -> Option<(String, bool)> {
        safe_relative_path(name).map(|(p, d)| (p.to_string_lossy().into_owned(), d))
    }

    #[test]
    fn relative_paths_are_kept() {
        assert_eq!(rel("deployment.py"), Some(("deployment.py".into(), false)));
        assert_eq!(
            rel("model/deployment.py"),
            Some(("model/deployment.py".into(), false))
        );
        assert_eq!(rel("./model//a.py"), Some(("model/a.py".into(), false)));
        assert_eq!(rel("model/"), Some(("model".into(), true)));
        assert_eq!(
            rel("model\\sub\\a.py"),
            Some(("model/sub/a.py".into(), false))
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        for name in [
            "../evil.py",
            "a/../../evil.py",
            "a/../b.py",
            "/etc/passwd",
            "\\etc\\passwd",
            "..\\evil.py",
            "a\\..\\..\\evil.py",
            "C:/Windows/evil.py",
            "c:evil.py",
            "a\0b",
        ] {
            assert_eq!(rel(name), None, "{name:?} should be refused");
        }
    }

    #[test]
    fn copy_stops_at_the_file_cap_even_on_endless_input() {
        let limits = Limits {
            max_entries: 10,
            max_total_uncompressed: u64::MAX,
            max_file_uncompressed: 1 << 20,
        };
        let mut endless = io::repeat(0);
        let mut out = Vec::new();
        let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
        let mut total = 0;
        let result = copy_capped(
            &mut endless,
            &mut out,
            &mut buffer,
            "bomb.bin",
            &limits,
            &mut total,
        );
        let Err(CopyError::Limit(failure)) = result else {
            panic!("expected a limit failure")
        };
        assert_eq!(
            failure.message(),
            "'bomb.bin' in the deployment file expands beyond 1 MiB, the most a single file may hold"
        );
        // Nothing past the cap reaches the output.
        assert!(out.len() as u64 <= limits.max_file_uncompressed);
    }

    #[test]
    fn copy_stops_at_the_total_cap_across_entries() {
        let limits = Limits {
            max_entries: 10,
            max_total_uncompressed: 1 << 20,
            max_file_uncompressed: u64::MAX,
        };
        let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
        let mut total = 0;
        let mut first = io::repeat(1).take(700 * 1024);
        let written = copy_capped(
            &mut first,
            &mut io::sink(),
            &mut buffer,
            "a",
            &limits,
            &mut total,
        );
        assert!(matches!(written, Ok(n) if n == 700 * 1024));
        let mut second = io::repeat(1).take(700 * 1024);
        let result = copy_capped(
            &mut second,
            &mut io::sink(),
            &mut buffer,
            "b",
            &limits,
            &mut total,
        );
        let Err(CopyError::Limit(failure)) = result else {
            panic!("expected a limit failure")
        };
        assert_eq!(
            failure.message(),
            "The deployment file expands beyond 1 MiB: zip bombs are refused"
        );
    }

    #[test]
    fn inside_check() {
        let dest = Path::new("/tmp/dest");
        assert!(is_inside(dest, Path::new("/tmp/dest/a/b")));
        assert!(!is_inside(dest, Path::new("/tmp/dest/../x")));
        assert!(!is_inside(dest, Path::new("/tmp/other")));
    }
}
