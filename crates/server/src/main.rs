//! `ubiops-server`: a self-hosted server for the UbiOps Deployments API v2.1.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use ubiops_server::config::{Config, DataConfig};
use ubiops_server::{serve, tokens};

/// Requests allocate many small, short-lived buffers (headers, rows, JSON),
/// on which glibc's allocator spent a large share of the server's CPU.
/// jemalloc rather than mimalloc: both cut that cost alike, but mimalloc held
/// far more memory during a large upload.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ubiops-server",
    version,
    about = "A self-hosted server for the UbiOps Deployments API v2.1",
    long_about = "A self-hosted server for the UbiOps Deployments API v2.1.\n\n\
        Configured from the environment (UBIOPS_LISTEN, DATABASE_URL, UBIOPS_DATA_DIR, \
        UBIOPS_STORAGE_URL, ...) or the flags of the same meaning: `ubiops-server serve --help` \
        lists every setting, README.md explains them."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, with build workers inside (the default).
    Serve(Config),
    /// Run build workers only, against the same database and storage as the API.
    Worker(Config),
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
        #[command(flatten)]
        data: DataConfig,
    },
    /// List the API tokens (never their values, which are not stored).
    List {
        /// Include revoked tokens.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        data: DataConfig,
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
        #[command(flatten)]
        data: DataConfig,
    },
}

fn main() -> ExitCode {
    let command = parse_command_line();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve(config) => serve::serve(config).await,
            Command::Worker(config) => serve::work(config).await,
            Command::Token { command } => match command {
                TokenCommand::Create {
                    email,
                    projects,
                    data,
                } => tokens::create(&data, &email, projects).await,
                TokenCommand::List { all, data } => tokens::list(&data, all).await,
                TokenCommand::Revoke { id, email, data } => tokens::revoke(&data, id, email).await,
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

/// The command to run, with its settings checked: a bad one exits here,
/// before anything starts.
fn parse_command_line() -> Command {
    unset_blank_settings(&Cli::command());
    let command = Cli::parse().command.unwrap_or_else(|| {
        // Without a command, serve: parsed as `serve`, so that its settings
        // are read and checked in the one way.
        let program = std::env::args_os().next().unwrap_or_default();
        Cli::parse_from([program, "serve".into()])
            .command
            .expect("serve is a command")
    });
    let (name, config) = match &command {
        Command::Serve(config) => ("serve", config),
        Command::Worker(config) => ("worker", config),
        Command::Token { .. } => return command,
    };
    if let Err(error) = config.check() {
        let mut cli = Cli::command();
        cli.build();
        let subcommand = cli.find_subcommand_mut(name).expect("a command");
        subcommand
            .error(ErrorKind::ArgumentConflict, format!("{error:#}"))
            .exit();
    }
    command
}

/// Compose passes `${VARIABLE:-}` on as an empty variable: a blank setting
/// means its default, as an unset one does. Called before any other thread
/// exists (changing the environment is not thread-safe).
fn unset_blank_settings(command: &clap::Command) {
    for name in command.get_arguments().filter_map(clap::Arg::get_env) {
        let blank = std::env::var_os(name)
            .is_some_and(|value| value.to_str().is_some_and(|value| value.trim().is_empty()));
        if blank {
            std::env::remove_var(name);
        }
    }
    command.get_subcommands().for_each(unset_blank_settings);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
