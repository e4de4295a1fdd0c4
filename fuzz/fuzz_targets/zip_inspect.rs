//! Any bytes as an uploaded deployment zip: extraction and validation must
//! end in success or a message for the user, never a panic, and nothing may
//! be written outside the work directory or past the limits.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ubiops_inspect::{inspect, Language, Limits};

const LIMITS: Limits = Limits {
    max_entries: 64,
    max_total_uncompressed: 1 << 20,
    max_file_uncompressed: 1 << 19,
};

/// Total size of the regular files under `dir`; fails on any symlink.
fn written_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        assert!(
            !kind.is_symlink(),
            "extraction made a symlink: {:?}",
            entry.path()
        );
        if kind.is_dir() {
            total += written_bytes(&entry.path());
        } else {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("upload.zip");
    std::fs::write(&zip, data).unwrap();
    let work = dir.path().join("work");
    let language = if data.len() % 2 == 0 {
        Language::Python
    } else {
        Language::R
    };
    if let Err(failure) = inspect(&zip, &work, language, &LIMITS) {
        assert!(!failure.message().is_empty());
    }
    assert!(written_bytes(&work) <= LIMITS.max_total_uncompressed);
    let mut beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    beside.sort();
    beside.retain(|name| name != "upload.zip" && name != "work");
    assert!(
        beside.is_empty(),
        "written outside the work directory: {beside:?}"
    );
});
