//! Helpers shared by the integration tests: building zips on disk.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

pub enum Entry<'a> {
    File(&'a str, Vec<u8>),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

pub fn file(name: &str, contents: impl AsRef<[u8]>) -> Entry<'_> {
    Entry::File(name, contents.as_ref().to_vec())
}

/// Writes a deflate-compressed zip and returns its path.
pub fn make_zip(dir: &Path, zip_name: &str, entries: &[Entry<'_>]) -> PathBuf {
    let path = dir.join(zip_name);
    let mut writer = ZipWriter::new(File::create(&path).unwrap());
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(false);
    for entry in entries {
        match entry {
            Entry::File(name, contents) => {
                writer.start_file(*name, options).unwrap();
                writer.write_all(contents).unwrap();
            }
            Entry::Dir(name) => writer.add_directory(*name, options).unwrap(),
            Entry::Symlink(name, target) => writer.add_symlink(*name, *target, options).unwrap(),
        }
    }
    writer.finish().unwrap();
    path
}

/// Replaces every occurrence of `from` with `to` (same length) in a file,
/// for crafting archives the writer refuses to produce.
pub fn patch_bytes(path: &Path, from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut bytes = fs::read(path).unwrap();
    let mut count = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(from.len()).position(|w| w == from) {
        let start = at + found;
        bytes[start..start + to.len()].copy_from_slice(to);
        at = start + to.len();
        count += 1;
    }
    fs::write(path, bytes).unwrap();
    count
}

pub const INIT: &str =
    "    def __init__(self, base_directory, context):\n        self.base = base_directory\n";

pub fn deployment_py(methods: &str) -> String {
    format!("import os\n\n\nclass Deployment:\n{INIT}\n{methods}")
}

pub const REQUEST: &str = "    def request(self, data):\n        return {'out': data}\n";

/// Every path below `dir`, relative and sorted, for checking what was written.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            found.push(
                path.strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}
