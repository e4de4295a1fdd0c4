//! `ubiops-server token create`, `token list` and `token revoke`: managing
//! API tokens from the command line (also through `docker compose exec server ...`). Token
//! values are never shown: only their hashes are stored.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};
use ubiops_domain::names::validate_resource_name;
use ubiops_domain::token::{generate_token, hash_token, validate_email};
use ubiops_storage::TokenListing;
use uuid::Uuid;

use crate::config::DataConfig;
use crate::database::Database;

/// Commands do not wait for an unreachable database: whoever runs one sees
/// the error at once.
async fn open_database(data: &DataConfig) -> anyhow::Result<Database> {
    Database::open_for_command(data, Duration::ZERO).await
}

pub async fn create(data: &DataConfig, email: &str, projects: Vec<String>) -> anyhow::Result<()> {
    validate_email(email).context("--email")?;
    for project in &projects {
        validate_resource_name("project", project).context("--project")?;
    }
    let database = open_database(data).await?;
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

pub async fn list(data: &DataConfig, all: bool) -> anyhow::Result<()> {
    let database = open_database(data).await?;
    let listed = database.store.list_tokens().await;
    database.close().await?;
    let tokens: Vec<TokenListing> = listed
        .context("could not list the tokens")?
        .into_iter()
        .filter(|token| all || token.revoked_at.is_none())
        .collect();
    print!("{}", table(&tokens));
    Ok(())
}

pub async fn revoke(
    data: &DataConfig,
    id: Option<String>,
    email: Option<String>,
) -> anyhow::Result<()> {
    // Arguments are checked before anything is opened.
    let id = id
        .map(|raw| {
            Uuid::parse_str(raw.trim()).map_err(|_| {
                anyhow::anyhow!(
                    "'{raw}' is not a token id: use an ID from `ubiops-server token list`"
                )
            })
        })
        .transpose()?;
    if let Some(email) = &email {
        validate_email(email).context("--email")?;
    }
    let database = open_database(data).await?;
    let revoked = match (id, &email) {
        (Some(id), _) => database
            .store
            .revoke_token_by_id(id)
            .await
            .map(|token| token.into_iter().collect::<Vec<_>>()),
        (None, Some(email)) => database.store.revoke_tokens_by_email(email).await,
        (None, None) => unreachable!("clap requires an id or --email"),
    };
    database.close().await?;
    let revoked = revoked.context("could not revoke")?;
    if revoked.is_empty() {
        match (id, email) {
            (Some(id), _) => bail!(
                "no live token has id {id} (`ubiops-server token list --all` shows revoked ones too)"
            ),
            (None, Some(email)) => bail!("no live token belongs to {email}"),
            (None, None) => unreachable!(),
        }
    }
    for token in &revoked {
        println!(
            "Revoked token {} ({}, {}).",
            token.id,
            token.email,
            reach(token)
        );
        if token.bootstrap {
            println!(
                "It came from UBIOPS_BOOTSTRAP_TOKEN: a server started with that same value \
                 puts it back, so change or remove UBIOPS_BOOTSTRAP_TOKEN before the next start."
            );
        }
    }
    println!("Running servers refuse revoked tokens within UBIOPS_TOKEN_CACHE_SECONDS.");
    Ok(())
}

fn reach(token: &TokenListing) -> String {
    match &token.project_scope {
        None => "every project".to_owned(),
        Some(projects) => format!("only {}", projects.join(",")),
    }
}

/// One line per token under a header, columns aligned for reading in a terminal.
fn table(tokens: &[TokenListing]) -> String {
    let rows: Vec<[String; 5]> = tokens
        .iter()
        .map(|token| {
            let origin = if token.bootstrap {
                "bootstrap"
            } else {
                "created"
            };
            let state = match token.revoked_at {
                None => "live".to_owned(),
                Some(at) => format!("revoked {}", at.format("%Y-%m-%dT%H:%M:%SZ")),
            };
            [
                token.id.to_string(),
                token.email.clone(),
                reach(token),
                format!("{} {origin}", token.created_at.format("%Y-%m-%dT%H:%M:%SZ")),
                state,
            ]
        })
        .collect();
    let header = ["ID", "EMAIL", "PROJECTS", "CREATED", "STATE"].map(str::to_owned);
    let mut widths = header.clone().map(|cell| cell.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}
