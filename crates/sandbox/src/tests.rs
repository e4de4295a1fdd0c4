//! Each boundary tried from inside a sandbox. These run as root (as CI does):
//! isolation by user id is what they check.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::*;

struct Fixture {
    _root: tempfile::TempDir,
    root: PathBuf,
    sandboxes: Sandboxes,
}

/// `range` keeps the tests' user ids apart: they run at once, and the locks
/// that make an id one sandbox's live in the machine-wide directory.
fn fixture(range: u32) -> Fixture {
    fixture_with_ids(range, 100)
}

fn fixture_with_ids(range: u32, ids: u32) -> Fixture {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the sandbox tests check isolation by user id, which needs root (CI runs as root)"
    );
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().to_owned();
    // Searchable, not listable, as the server makes its own directories.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o711)).unwrap();
    let sandboxes = Sandboxes::new(
        Users::Range {
            uids: 1_899_000_000 + range * 100..=1_899_000_000 + range * 100 + ids - 1,
            lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
        },
        Limits::default(),
    )
    .unwrap();
    Fixture {
        _root: temp,
        root,
        sandboxes,
    }
}

/// Runs a shell script in `sandbox`; its exit status and output lines.
async fn sh(sandbox: &Sandbox, script: &str, limit: Duration) -> (Ended, Vec<String>) {
    let mut command = sandbox.command("/bin/sh");
    command.arg("-c").arg(script);
    let mut lines = Vec::new();
    let ended = sandbox
        .run(command, limit, std::future::pending(), &mut |line| {
            lines.push(line.to_owned())
        })
        .await
        .unwrap();
    (ended, lines)
}

fn exited_ok(ended: Ended) -> bool {
    matches!(ended, Ended::Exited(status) if status.success())
}

#[tokio::test]
async fn code_runs_as_a_user_of_its_own_in_a_clean_environment() {
    let f = fixture(1);
    let one = f.sandboxes.enter(&f.root.join("one")).unwrap();
    let two = f.sandboxes.enter(&f.root.join("two")).unwrap();
    assert_ne!(one.uid(), two.uid());
    std::env::set_var("UBIOPS_SANDBOX_TEST_SECRET", "do-not-leak");
    let (ended, lines) = sh(&one, "id -u; id -G; env; pwd", Duration::from_secs(10)).await;
    assert!(exited_ok(ended), "{lines:?}");
    assert_eq!(lines[0], one.uid().unwrap().to_string());
    assert_eq!(
        lines[1],
        one.uid().unwrap().to_string(),
        "no supplementary groups"
    );
    let text = lines.join("\n");
    assert!(!text.contains("do-not-leak"), "{text}");
    assert!(
        text.contains(&format!("HOME={}", one.dir().join("home").display())),
        "{text}"
    );
    assert_eq!(lines.last().unwrap(), &one.dir().display().to_string());
}

#[tokio::test]
async fn code_cannot_read_private_files_or_another_sandbox() {
    let f = fixture(2);
    let secret = f.root.join("secret.key");
    fs::write(&secret, "key").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let one = f.sandboxes.enter(&f.root.join("one")).unwrap();
    let two = f.sandboxes.enter(&f.root.join("two")).unwrap();
    fs::write(two.dir().join("model.bin"), "weights").unwrap();
    two.hand_over(two.dir()).unwrap();
    let script = format!(
        "cat {secret}; echo rc=$?; ls {other}; echo rc=$?; cat {other}/model.bin; echo rc=$?; \
         ls {root}; echo rc=$?",
        secret = secret.display(),
        other = two.dir().display(),
        root = f.root.display(),
    );
    let (_, lines) = sh(&one, &script, Duration::from_secs(10)).await;
    let codes: Vec<&String> = lines.iter().filter(|l| l.starts_with("rc=")).collect();
    assert_eq!(codes.len(), 4, "{lines:?}");
    assert!(codes.iter().all(|code| *code != "rc=0"), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("weights") || l == "key"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_time_limit_and_a_cancel_stop_everything_the_code_started() {
    let f = fixture(3);
    let sandbox = f.sandboxes.enter(&f.root.join("s")).unwrap();
    // A daemonised grandchild (its own session) outlives its group.
    let script = "setsid sh -c 'sleep 300' & sleep 300";
    let started = Instant::now();
    let (ended, _) = sh(&sandbox, script, Duration::from_millis(300)).await;
    assert_eq!(ended, Ended::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Orphans killed are zombies until init reaps them: count the living.
    let (_, lines) = sh(
        &sandbox,
        "ps -u $(id -u) -o stat=,comm= | grep -v '^Z' | grep -c sleep",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(lines, vec!["0".to_owned()], "nothing outlives a run");

    let mut command = sandbox.command("/bin/sh");
    command.arg("-c").arg("sleep 300");
    let started = Instant::now();
    let ended = sandbox
        .run(
            command,
            Duration::from_secs(300),
            tokio::time::sleep(Duration::from_millis(200)),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(ended, Ended::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn limits_hold_and_output_comes_in_bounded_lines() {
    let f = fixture(4);
    let small = f.sandboxes.with_limits(Limits {
        memory_bytes: 256 << 20,
        ..Limits::default()
    });
    let sandbox = small.enter(&f.root.join("s")).unwrap();
    // Asking for more memory than the limit fails inside the code.
    let (_, lines) = sh(
        &sandbox,
        "python3 -c 'b = bytearray(512 * 1024 * 1024)' 2>&1 | tail -n 1",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(lines, vec!["MemoryError".to_owned()]);
    let (ended, lines) = sh(
        &sandbox,
        "head -c 20000 /dev/zero | tr '\\0' x; echo; echo after",
        Duration::from_secs(10),
    )
    .await;
    assert!(exited_ok(ended));
    assert_eq!(
        lines.iter().map(String::len).collect::<Vec<_>>(),
        vec![
            MAX_LINE_BYTES,
            MAX_LINE_BYTES,
            20000 - 2 * MAX_LINE_BYTES,
            5
        ]
    );
}

#[test]
fn an_ended_sandbox_gives_back_its_user_id_and_directory() {
    // One id only: the second sandbox can have it only if the first gave it back.
    let f = fixture_with_ids(5, 1);
    let first = enter_when_free(&f, "a");
    let uid = first.uid().unwrap();
    drop(first);
    let again = enter_when_free(&f, "b");
    assert_eq!(again.uid(), Some(uid));
    assert!(
        !f.root.join("a").exists(),
        "a sandbox's directory goes with it"
    );
}

/// Enters a sandbox, waiting briefly while its id is held: another test's
/// thread forking at the moment a lease is released holds a copy of the
/// lock until its child execs.
fn enter_when_free(f: &Fixture, dir: &str) -> Sandbox {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f.sandboxes.enter(&f.root.join(dir)) {
            Ok(sandbox) => return sandbox,
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(error) => panic!("no sandbox for {dir}: {error}"),
        }
    }
}

#[test]
fn taken_back_files_are_read_only_for_sandboxes() {
    let f = fixture(6);
    let sandbox = f.sandboxes.enter(&f.root.join("s")).unwrap();
    let made = sandbox.dir().join("env");
    fs::create_dir(&made).unwrap();
    fs::write(made.join("tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(made.join("tool"), fs::Permissions::from_mode(0o4777)).unwrap();
    sandbox.hand_over(&made).unwrap();
    take_back(&made).unwrap();
    let meta = fs::metadata(made.join("tool")).unwrap();
    assert_eq!(meta.uid(), 0);
    assert_eq!(
        meta.mode() & 0o7777,
        0o755,
        "no set-id bit, no write for others"
    );
}
