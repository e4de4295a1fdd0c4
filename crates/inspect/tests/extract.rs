//! Stage 1: extraction of hostile and ordinary zips.

mod common;

use std::fs;
use std::path::Path;

use common::{file, make_zip, patch_bytes, tree, Entry};
use ubiops_inspect::{extract, Extracted, Limits};

struct Setup {
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("zips")).unwrap();
        fs::create_dir(tmp.path().join("work")).unwrap();
        Setup { tmp }
    }
    fn zips(&self) -> std::path::PathBuf {
        self.tmp.path().join("zips")
    }
    fn work(&self) -> std::path::PathBuf {
        self.tmp.path().join("work")
    }
    fn dest(&self) -> std::path::PathBuf {
        self.work().join("dest")
    }
    fn extract(&self, zip: &Path, limits: &Limits) -> Result<Extracted, String> {
        extract(zip, &self.dest(), limits).map_err(|f| f.message().to_string())
    }
    /// Asserts the extraction left nothing behind anywhere: `dest` is empty and
    /// no file appeared beside it or elsewhere in the sandbox.
    fn assert_nothing_written(&self) {
        assert_eq!(tree(&self.work()), vec!["dest"]);
        let outside: Vec<String> = tree(self.tmp.path())
            .into_iter()
            .filter(|p| !p.starts_with("zips") && !p.starts_with("work"))
            .collect();
        assert!(outside.is_empty(), "written outside dest: {outside:?}");
    }
}

fn small_limits() -> Limits {
    Limits {
        max_entries: 100,
        max_total_uncompressed: 1 << 20,
        max_file_uncompressed: 1 << 20,
    }
}

#[test]
fn extracts_files_and_folders() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "ok.zip",
        &[
            Entry::Dir("my_model/"),
            file("my_model/deployment.py", "print('hi')\n"),
            file("my_model/data/weights.bin", vec![7u8; 100_000]),
            file("my_model/empty.txt", ""),
        ],
    );
    let extracted = s.extract(&zip, &Limits::default()).unwrap();
    assert_eq!(
        extracted,
        Extracted {
            files: 3,
            total_bytes: 12 + 100_000
        }
    );
    assert_eq!(
        tree(&s.dest()),
        vec![
            "my_model",
            "my_model/data",
            "my_model/data/weights.bin",
            "my_model/deployment.py",
            "my_model/empty.txt"
        ]
    );
    assert_eq!(
        fs::read(s.dest().join("my_model/data/weights.bin")).unwrap(),
        vec![7u8; 100_000]
    );
}

#[test]
fn creates_a_missing_destination_but_refuses_a_non_empty_one() {
    let s = Setup::new();
    let zip = make_zip(&s.zips(), "ok.zip", &[file("a.py", "x = 1\n")]);
    s.extract(&zip, &Limits::default()).unwrap();
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert!(err.contains("is not empty"), "{err}");
}

#[test]
fn refuses_parent_directory_escape() {
    let s = Setup::new();
    // The writer will not store "../", so a same-length name is patched in.
    let zip = make_zip(
        &s.zips(),
        "slip.zip",
        &[file("ok.py", "x = 1\n"), file("zz/evil.py", "import os\n")],
    );
    assert_eq!(patch_bytes(&zip, b"zz/evil.py", b"../evil.py"), 2);
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert_eq!(err, "Unsafe path in the deployment file: '../evil.py'");
    s.assert_nothing_written();
    assert!(!s.work().join("evil.py").exists());
    assert!(!s.tmp.path().join("evil.py").exists());
}

#[test]
fn refuses_nested_parent_escape_and_backslashes() {
    for (placeholder, hostile) in [
        (&b"aa/bb/cc/dd/x.py"[..], &b"ok/../../../x.py"[..]),
        (&b"zzzzzzz.py"[..], &b"..\\evil.py"[..]),
        (&b"zz/zz/zzzzzz.py"[..], &b"a\\..\\..\\evil.py"[..]),
        (&b"zzzzzzzzzzz.py"[..], &b"C:\\Win\\evil.py"[..]),
    ] {
        let s = Setup::new();
        let name = std::str::from_utf8(placeholder).unwrap();
        let zip = make_zip(&s.zips(), "slip.zip", &[file(name, "import os\n")]);
        assert_eq!(patch_bytes(&zip, placeholder, hostile), 2);
        let err = s.extract(&zip, &Limits::default()).unwrap_err();
        assert!(
            err.starts_with("Unsafe path in the deployment file: '"),
            "{err}"
        );
        s.assert_nothing_written();
    }
}

#[test]
fn refuses_absolute_paths() {
    let s = Setup::new();
    let target = s.tmp.path().join("escaped.py");
    let absolute = target.to_string_lossy().into_owned();
    let placeholder = "z".repeat(absolute.len());
    let zip = make_zip(&s.zips(), "abs.zip", &[file(&placeholder, "import os\n")]);
    assert_eq!(
        patch_bytes(&zip, placeholder.as_bytes(), absolute.as_bytes()),
        2
    );
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        format!("Unsafe path in the deployment file: '{absolute}'")
    );
    assert!(!target.exists());
    s.assert_nothing_written();

    let s = Setup::new();
    let zip = make_zip(&s.zips(), "etc.zip", &[file("zzzzzz", "x")]);
    patch_bytes(&zip, b"zzzzzz", b"/etc/x");
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert_eq!(err, "Unsafe path in the deployment file: '/etc/x'");
    s.assert_nothing_written();
}

#[test]
fn refuses_symlinks() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "link.zip",
        &[
            file("deployment.py", "x = 1\n"),
            Entry::Symlink("secrets", "/etc/passwd"),
        ],
    );
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        "Symbolic links are not allowed in the deployment file: 'secrets'"
    );
    s.assert_nothing_written();
}

#[test]
fn refuses_a_bomb_by_its_declared_size() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "bomb.zip",
        &[file("zeros.bin", vec![0u8; 10 << 20])],
    );
    assert!(
        fs::metadata(&zip).unwrap().len() < 100_000,
        "deflate should shrink zeros"
    );
    let err = s.extract(&zip, &small_limits()).unwrap_err();
    assert_eq!(
        err,
        "'zeros.bin' in the deployment file expands beyond 1 MiB, the most a single file may hold"
    );
    s.assert_nothing_written();
}

#[test]
fn refuses_a_bomb_by_its_declared_total() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "bomb.zip",
        &[
            file("a.bin", vec![0u8; 700 << 10]),
            file("b.bin", vec![0u8; 700 << 10]),
        ],
    );
    let err = s.extract(&zip, &small_limits()).unwrap_err();
    assert_eq!(
        err,
        "The deployment file expands beyond 1 MiB: zip bombs are refused"
    );
    s.assert_nothing_written();
}

/// Writes a zip whose single entry inflates to 10 MiB while its headers claim
/// `declared` bytes.
fn lying_zip(s: &Setup, declared: u32) -> std::path::PathBuf {
    let real: u32 = 10 << 20;
    let zip = make_zip(
        &s.zips(),
        "liar.zip",
        &[file("zeros.bin", vec![0u8; real as usize])],
    );
    // The size appears once in the local header and once in the central directory.
    assert_eq!(
        patch_bytes(&zip, &real.to_le_bytes(), &declared.to_le_bytes()),
        2
    );
    zip
}

#[test]
fn refuses_a_bomb_with_a_lying_header() {
    let s = Setup::new();
    let zip = lying_zip(&s, 1000);
    let err = s.extract(&zip, &small_limits()).unwrap_err();
    assert_eq!(
        err,
        "'zeros.bin' in the deployment file holds more data than its header declares: zip bombs are refused"
    );
    // Extraction stopped early: nothing near the real size reached the disk.
    let written = fs::metadata(s.dest().join("zeros.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 64 * 1024, "{written} bytes written");
}

#[test]
fn refuses_too_many_entries() {
    let s = Setup::new();
    let names: Vec<String> = (0..11).map(|i| format!("f{i}.py")).collect();
    let entries: Vec<Entry<'_>> = names.iter().map(|n| file(n, "x = 1\n")).collect();
    let zip = make_zip(&s.zips(), "many.zip", &entries);
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let err = s.extract(&zip, &limits).unwrap_err();
    assert_eq!(
        err,
        "The deployment file holds 11 entries; at most 10 are allowed"
    );
    s.assert_nothing_written();
    // Exactly at the limit is fine.
    let limits = Limits {
        max_entries: 11,
        ..Limits::default()
    };
    assert_eq!(s.extract(&zip, &limits).unwrap().files, 11);
}

#[test]
fn refuses_duplicate_entries() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "dup.zip",
        &[file("a.py", "x = 1\n"), file("b.py", "y = 2\n")],
    );
    assert_eq!(patch_bytes(&zip, b"b.py", b"a.py"), 2);
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        "The deployment file lists the same file name more than once; create the zip again"
    );
    s.assert_nothing_written();

    // Names that differ only in spelling still land on the same path.
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "dup.zip",
        &[file("m/a.py", "x = 1\n"), file("m/b.py", "y = 2\n")],
    );
    assert_eq!(patch_bytes(&zip, b"m/b.py", b"m\\a.py"), 2);
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert_eq!(err, "The deployment file contains 'm\\a.py' more than once");
    s.assert_nothing_written();
}

#[test]
fn refuses_a_file_that_is_also_a_folder() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "clash.zip",
        &[file("a", "x"), file("a/b.py", "y = 2\n")],
    );
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert!(
        err.starts_with("Conflicting entries in the deployment file: 'a/b.py'"),
        "{err}"
    );
}

#[test]
fn refuses_what_is_not_a_zip() {
    let s = Setup::new();
    let path = s.zips().join("model.zip");
    fs::write(&path, b"this is plain text, not an archive\n").unwrap();
    let err = s.extract(&path, &Limits::default()).unwrap_err();
    assert!(
        err.starts_with("The deployment file is not a valid zip archive: "),
        "{err}"
    );
    s.assert_nothing_written();

    fs::write(&path, b"").unwrap();
    let err = s.extract(&path, &Limits::default()).unwrap_err();
    assert!(
        err.starts_with("The deployment file is not a valid zip archive: "),
        "{err}"
    );
}

#[test]
fn refuses_a_truncated_zip() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "cut.zip",
        &[
            file("deployment.py", "x = 1\n".repeat(1000)),
            file("other.py", "y = 2\n".repeat(1000)),
        ],
    );
    let bytes = fs::read(&zip).unwrap();
    for keep in [bytes.len() / 2, bytes.len() - 10, 30] {
        fs::write(&zip, &bytes[..keep]).unwrap();
        let err = s.extract(&zip, &Limits::default()).unwrap_err();
        assert!(
            err.starts_with("The deployment file is not a valid zip archive: "),
            "{keep}: {err}"
        );
    }
}

#[test]
fn refuses_corrupted_data() {
    let s = Setup::new();
    let zip = s.zips().join("crc.zip");
    {
        use std::io::Write;
        let mut writer = zip::ZipWriter::new(fs::File::create(&zip).unwrap());
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        writer.start_file("deployment.py", stored).unwrap();
        writer.write_all(b"print('original content')\n").unwrap();
        writer.finish().unwrap();
    }
    assert_eq!(patch_bytes(&zip, b"original", b"tampered"), 1);
    let err = s.extract(&zip, &Limits::default()).unwrap_err();
    assert!(
        err.starts_with("The deployment file is not a valid zip archive: 'deployment.py': "),
        "{err}"
    );
}

/// Small deterministic generator, so mutation tests are reproducible.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn corrupted_archives_fail_cleanly() {
    let s = Setup::new();
    let zip = make_zip(
        &s.zips(),
        "base.zip",
        &[
            Entry::Dir("m/"),
            file(
                "m/deployment.py",
                "class Deployment:\n    pass\n".repeat(20),
            ),
            file("m/requirements.txt", "numpy\n"),
            file("m/data.bin", vec![3u8; 5000]),
        ],
    );
    let original = fs::read(&zip).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..400 {
        let mut bytes = original.clone();
        for _ in 0..(1 + round % 4) {
            let at = (next_random(&mut state) as usize) % bytes.len();
            bytes[at] = next_random(&mut state) as u8;
        }
        let mutated = s.zips().join("mutated.zip");
        fs::write(&mutated, &bytes).unwrap();
        let dest = s.work().join(format!("round{round}"));
        // Either outcome is fine; what matters is no panic and no escape.
        let _ = extract(&mutated, &dest, &small_limits());
    }
    let outside: Vec<String> = tree(s.tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("zips") && !p.starts_with("work"))
        .collect();
    assert!(outside.is_empty(), "written outside dest: {outside:?}");
}
