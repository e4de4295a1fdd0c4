//! What an operator does with the binary beside a running installation:
//! `token list` and `token revoke`, rotating `UBIOPS_BOOTSTRAP_TOKEN`, a lost
//! secret key (refused, never silently replaced), and a database that comes
//! up after the server.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use ubiops_embedded_postgres::{ClusterConfig, EmbeddedPostgres};

use crate::cli::{command, data_dir, last_line, run, Server};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn token_command(dir: &Path, args: &[&str]) -> Output {
    run(command(dir).arg("token").args(args))
}

/// The id column of the `token list` rows of this email.
fn ids_of(listing: &str, email: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some(email))
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn tokens_are_listed_and_revoked_by_id_or_email() {
    let dir = data_dir();
    let admin = "operations-admin-token-0123456789";
    let server = Server::start(
        dir.path(),
        &[
            ("UBIOPS_BOOTSTRAP_TOKEN", admin),
            ("UBIOPS_TOKEN_CACHE_SECONDS", "0"),
        ],
    );
    let create = |email: &str, project: Option<&str>| {
        let mut args = vec!["create", "--email", email];
        if let Some(project) = project {
            args.extend(["--project", project]);
        }
        let output = token_command(dir.path(), &args);
        assert!(output.status.success(), "{}", stderr(&output));
        last_line(&output)
    };
    let alice_one = create("alice@example.com", None);
    let alice_two = create("alice@example.com", Some("p"));
    let bob = create("bob@example.com", None);

    let listed = token_command(dir.path(), &["list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listing = stdout(&listed);
    assert!(listing.starts_with("ID "), "{listing}");
    assert_eq!(ids_of(&listing, "alice@example.com").len(), 2, "{listing}");
    assert!(listing.contains("only p"), "{listing}");
    let admin_row = listing
        .lines()
        .find(|line| line.contains("admin@localhost"))
        .unwrap();
    assert!(
        admin_row.contains("bootstrap") && admin_row.contains("live"),
        "{listing}"
    );
    for token in [admin, &alice_one, &alice_two, &bob] {
        assert!(!listing.contains(token), "token list shows a token's value");
    }

    // By id: only that token stops working.
    let bob_id = ids_of(&listing, "bob@example.com").pop().unwrap();
    let revoked = token_command(dir.path(), &["revoke", &bob_id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(stdout(&revoked).contains(&bob_id));
    assert_eq!(
        server.get(&bob, "/projects").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.get(&alice_one, "/projects").status(), StatusCode::OK);

    // By email: every live token of it.
    let revoked = token_command(dir.path(), &["revoke", "--email", "alice@example.com"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(stdout(&revoked).matches("Revoked token").count(), 2);
    for token in [&alice_one, &alice_two] {
        assert_eq!(
            server.get(token, "/projects").status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(server.get(admin, "/projects").status(), StatusCode::OK);

    // Revoked tokens leave the default list and show with --all.
    let listing = stdout(&token_command(dir.path(), &["list"]));
    assert!(
        ids_of(&listing, "alice@example.com").is_empty(),
        "{listing}"
    );
    let all = stdout(&token_command(dir.path(), &["list", "--all"]));
    assert_eq!(all.matches("revoked ").count(), 3, "{all}");

    // Clear errors, nothing revoked.
    let again = token_command(dir.path(), &["revoke", &bob_id]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no live token has id"),
        "{}",
        stderr(&again)
    );
    let nobody = token_command(dir.path(), &["revoke", "--email", "nobody@example.com"]);
    assert!(!nobody.status.success());
    assert!(stderr(&nobody).contains("nobody@example.com"));
    let not_an_id = token_command(dir.path(), &["revoke", "not-a-uuid"]);
    assert!(!not_an_id.status.success());
    assert!(
        stderr(&not_an_id).contains("not a token id"),
        "{}",
        stderr(&not_an_id)
    );
    let neither = token_command(dir.path(), &["revoke"]);
    assert!(!neither.status.success());
    let bad_email = token_command(dir.path(), &["revoke", "--email", "not-an-email"]);
    assert!(!bad_email.status.success());
    assert!(stderr(&bad_email).contains("--email"));

    let (status, log) = server.terminate();
    assert!(status.success());
    for token in [admin, &alice_one, &alice_two, &bob] {
        assert!(!log.contains(token), "a token reached the log");
    }
}

#[test]
fn a_rotated_bootstrap_token_revokes_the_old_value() {
    let dir = data_dir();
    let old = "bootstrap-old-value-0123456789";
    let new = "bootstrap-new-value-9876543210";
    let server = Server::start(dir.path(), &[("UBIOPS_BOOTSTRAP_TOKEN", old)]);
    assert_eq!(server.get(old, "/projects").status(), StatusCode::OK);
    server.terminate();

    let server = Server::start(dir.path(), &[("UBIOPS_BOOTSTRAP_TOKEN", new)]);
    assert_eq!(server.get(new, "/projects").status(), StatusCode::OK);
    assert_eq!(
        server.get(old, "/projects").status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, log) = server.terminate();
    assert!(status.success());
    assert!(
        log.contains("revoked the token of an earlier UBIOPS_BOOTSTRAP_TOKEN"),
        "{log}"
    );
    assert!(!log.contains(old) && !log.contains(new));

    // The same value again: nothing more is revoked, the token stays.
    let server = Server::start(dir.path(), &[("UBIOPS_BOOTSTRAP_TOKEN", new)]);
    assert_eq!(server.get(new, "/projects").status(), StatusCode::OK);
    server.terminate();
    let all = stdout(&token_command(dir.path(), &["list", "--all"]));
    assert_eq!(all.matches("bootstrap").count(), 2, "{all}");
    assert_eq!(all.matches(" live").count(), 1, "{all}");
}

/// The key id the server logged at start (`secret key loaded key_id=...`).
fn logged_key_id(log: &str) -> String {
    let line = log
        .lines()
        .find(|line| line.contains("secret key loaded"))
        .expect("the server logs its key id");
    let start = line.find("key_id=").unwrap() + "key_id=".len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

fn start_fails(dir: &Path, env: &[(&str, &str)]) -> String {
    let output = run(command(dir)
        .env("UBIOPS_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied()));
    assert!(!output.status.success(), "the server started");
    stderr(&output)
}

#[test]
fn a_missing_secret_key_stops_the_start_instead_of_orphaning_secrets() {
    let dir = data_dir();
    let token = "key-test-token-0123456789abcdef";
    let env = [("UBIOPS_BOOTSTRAP_TOKEN", token)];
    let server = Server::start(dir.path(), &env);
    server.create_version_v1(token);
    let created = server.post(
        token,
        "/projects/p/deployments/d/versions/v1/environment-variables",
        json!({"name": "API_KEY", "value": "hunter2-but-longer", "secret": true}),
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    let (_, log) = server.terminate();
    let key_id = logged_key_id(&log);
    let key_file = dir.path().join("secret.key");
    let key = std::fs::read_to_string(&key_file).unwrap();

    // The data directory's key is gone (a container recreated without its
    // volume): no new key is generated, the start fails naming the key id.
    std::fs::remove_file(&key_file).unwrap();
    let refused = start_fails(dir.path(), &env);
    assert!(refused.contains(&key_id), "{refused}");
    assert!(
        refused.contains("secret.key") && refused.contains("UBIOPS_SECRET_KEY"),
        "{refused}"
    );
    assert!(
        !key_file.exists(),
        "a new key was generated beside sealed secrets"
    );

    // Another key than the one the secrets need: refused too, naming both.
    let other = "11".repeat(32);
    let refused = start_fails(dir.path(), &[env[0], ("UBIOPS_SECRET_KEY", &other)]);
    assert!(
        refused.contains(&key_id) && refused.contains("no configured key"),
        "{refused}"
    );
    assert!(!refused.contains(&other), "the key reached the output");

    // The lost key, provided as a previous key while rotating to a new one:
    // the server starts and the secret still opens (a copy re-seals it).
    let server = Server::start(
        dir.path(),
        &[
            env[0],
            ("UBIOPS_SECRET_KEY", &other),
            ("UBIOPS_PREVIOUS_SECRET_KEYS", key.trim()),
        ],
    );
    assert_eq!(
        server
            .post(
                token,
                "/projects/p/deployments/d/versions",
                json!({"version": "v2"})
            )
            .status(),
        StatusCode::CREATED
    );
    let copied = server.post(
        token,
        "/projects/p/deployments/d/versions/v2/copy-environment-variables",
        json!({"source_deployment": "d", "source_version": "v1"}),
    );
    assert!(copied.status().is_success(), "{}", copied.status());
    let (status, log) = server.terminate();
    assert!(status.success());
    assert!(
        !log.contains(key.trim()) && !log.contains(&other),
        "a key reached the log"
    );

    // Restoring the file works as well.
    std::fs::write(&key_file, &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let refused = start_fails(dir.path(), &env);
    // v2's copy was sealed with the other key, which is now missing.
    assert!(refused.contains("no configured key"), "{refused}");
    let server = Server::start(
        dir.path(),
        &[env[0], ("UBIOPS_PREVIOUS_SECRET_KEYS", &other)],
    );
    server.terminate();
}

#[test]
fn without_sealed_secrets_a_lost_key_is_simply_replaced() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]);
    server.terminate();
    let key_file = dir.path().join("secret.key");
    let first = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let server = Server::start(dir.path(), &[]);
    server.terminate();
    assert_ne!(std::fs::read_to_string(&key_file).unwrap(), first);
}

#[test]
fn the_server_waits_for_a_database_that_starts_after_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = data_dir();
    let config = ClusterConfig::new(dir.path().join("external"), "ubiops");
    // The cluster's URL (a socket in its directory) stays the same across starts.
    let cluster = runtime
        .block_on(EmbeddedPostgres::start(config.clone()))
        .unwrap();
    let url = cluster.database_url();
    runtime.block_on(cluster.stop()).unwrap();

    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let token = "late-database-token-0123456789";
    let started = {
        let url = url.clone();
        let server_dir = server_dir.clone();
        std::thread::spawn(move || {
            Server::start(
                &server_dir,
                &[
                    ("DATABASE_URL", &url),
                    ("UBIOPS_BOOTSTRAP_TOKEN", token),
                    ("UBIOPS_DATABASE_WAIT_SECONDS", "60"),
                ],
            )
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let cluster = runtime
        .block_on(EmbeddedPostgres::start(config.clone()))
        .unwrap();
    let server = started.join().unwrap();
    assert_eq!(server.get(token, "/projects").status(), StatusCode::OK);
    let (status, log) = server.terminate();
    assert!(status.success());
    assert!(log.contains("PostgreSQL is not reachable yet"), "{log}");
    assert!(!log.contains(&url), "the database URL reached the log");

    // With the database down for longer than the wait, the start fails in
    // about that time, naming the setting.
    runtime.block_on(cluster.stop()).unwrap();
    let began = Instant::now();
    let output = run(command(&server_dir)
        .env("DATABASE_URL", &url)
        .env("UBIOPS_DATABASE_WAIT_SECONDS", "2"));
    assert!(!output.status.success());
    assert!(began.elapsed() < Duration::from_secs(30));
    assert!(
        stderr(&output).contains("UBIOPS_DATABASE_WAIT_SECONDS"),
        "{}",
        stderr(&output)
    );
}
