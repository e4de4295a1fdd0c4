//! `ubiops-server`: a self-hosted server for the UbiOps Deployments API v2.1.

mod config;
mod database;
mod keyring;
mod serve;
mod tokens;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use ubiops_domain::names::validate_resource_name;
use ubiops_domain::token::{generate_token, hash_token, validate_email};

use crate::config::Config;

/// Requests allocate many small, short-lived buffers (headers, rows, JSON);
/// with glibc's allocator that was a fifth of the server's CPU per request.
/// jemalloc rather than mimalloc: both cut the server's CPU per GET by about a
/// quarter, but mimalloc's peak RSS during a 1 GiB upload was 100-180 MiB
/// against jemalloc's 48-84 (both before uploads were written to disk as
/// they arrive instead of in 5 MiB parts, which brought jemalloc's to
/// 18-20 MiB; the limit we hold to is 64 MiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ubiops-server",
    version,
    about = "A self-hosted server for the UbiOps Deployments API v2.1",
    long_about = "A self-hosted server for the UbiOps Deployments API v2.1.\n\n\
        Configured from the environment: UBIOPS_LISTEN, DATABASE_URL, UBIOPS_DATA_DIR, \
        UBIOPS_STORAGE_URL, UBIOPS_BOOTSTRAP_TOKEN, UBIOPS_BOOTSTRAP_EMAIL, UBIOPS_ORGANIZATION \
        (see README.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, with build workers inside (the default).
    Serve,
    /// Run build workers only, against the same database and storage as the API.
    Worker,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (the last line of output). It is shown only once.
    Create {
        /// The email the token acts as, shown in audit events.
        #[arg(long)]
        email: String,
        /// Limit the token to this project (repeat for several). Without it the
        /// token can touch every project.
        #[arg(long = "project", value_name = "PROJECT")]
        projects: Vec<String>,
    },
    /// List the API tokens (never their values, which are not stored).
    List {
        /// Include revoked tokens.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token by its id (from `token list`), or every token of an email.
    /// Running servers refuse it within UBIOPS_TOKEN_CACHE_SECONDS.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "email"])))]
    Revoke {
        /// The token's id, as `token list` shows it.
        id: Option<String>,
        /// Revoke every live token of this email instead.
        #[arg(long)]
        email: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve::serve(Config::from_env()?).await,
            Command::Worker => serve::work(Config::from_env()?).await,
            Command::Token { command } => match command {
                TokenCommand::Create { email, projects } => create_token(&email, projects).await,
                TokenCommand::List { all } => tokens::list(all).await,
                TokenCommand::Revoke { id, email } => tokens::revoke(id, email).await,
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, so that stdout carries only what commands print
/// (a new token is the last line of `token create`).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("UBIOPS_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn create_token(email: &str, projects: Vec<String>) -> anyhow::Result<()> {
    validate_email(email).context("--email")?;
    for project in &projects {
        validate_resource_name("project", project).context("--project")?;
    }
    let database = tokens::open_database().await?;
    let token = generate_token();
    let scope = (!projects.is_empty()).then_some(projects.as_slice());
    let stored = database
        .store
        .insert_token(&hash_token(&token), email, scope)
        .await;
    database.close().await?;
    stored.context("could not store the token")?;
    let reach = match scope {
        None => "every project".to_owned(),
        Some(projects) => format!("only project(s) {}", projects.join(", ")),
    };
    println!(
        "Created an API token for {email} with access to {reach}. It is shown only this once:"
    );
    println!("{token}");
    Ok(())
}
