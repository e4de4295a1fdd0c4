//! Importing a package's deployment file in its environment, the way an
//! instance will but without constructing `Deployment`: in a sandbox, in a
//! process of its own, with a time limit. Proves the code loads with the
//! requirements installed.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use ubiops_sandbox::{Ended, Sandbox};

use crate::StepError;

/// The script, passed with `-c`: nothing of it is written where the
/// package's code could change it first.
const CHECK: &str = include_str!("check_import.py");

/// What the import found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub has_request: bool,
    pub has_requests: bool,
}

#[derive(Deserialize)]
struct Report {
    /// The import raised this.
    error: Option<String>,
    /// The module loaded but `Deployment` is not what an instance needs.
    definition: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    #[serde(default)]
    has_request: bool,
    #[serde(default)]
    has_requests: bool,
}

/// Imports `deployment_file` (readable from the sandbox) with `python` (the
/// environment's). `shown` names the file in messages; `log` gets every
/// line the import prints.
pub async fn check_import(
    python: &Path,
    deployment_file: &Path,
    shown: &str,
    sandbox: &Sandbox,
    time_limit: Duration,
    cancelled: impl Future<Output = ()>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Loaded, StepError> {
    let report = sandbox.dir().join("tmp").join("import-check.json");
    let _ = std::fs::remove_file(&report);
    let mut command = sandbox.command(python);
    command
        .arg("-c")
        .arg(CHECK)
        .arg(deployment_file)
        .arg(&report)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let ended = sandbox.run(command, time_limit, cancelled, log).await?;
    let status = match ended {
        Ended::Cancelled => return Err(StepError::Cancelled),
        Ended::TimedOut => {
            return Err(StepError::Failed(format!(
                "{shown} did not finish importing within {} s",
                time_limit.as_secs()
            )))
        }
        Ended::Exited(status) => status,
    };
    let Some(report) = std::fs::read(&report)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Report>(&bytes).ok())
    else {
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (_, Some(libc::SIGKILL)) | (_, Some(libc::SIGSEGV)) => format!(
                "was killed by signal {} (it may have run out of memory or crashed)",
                status.signal().unwrap_or_default()
            ),
            (_, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "ended unexpectedly".to_owned(),
        };
        return Err(StepError::Failed(format!(
            "Importing {shown} {how} before the import finished"
        )));
    };
    if let Some(error) = report.error {
        let place = match (report.file, report.line) {
            (Some(file), Some(line)) => format!(" ({file}, line {line})"),
            _ => String::new(),
        };
        return Err(StepError::Failed(format!(
            "{shown} could not be imported: {error}{place}"
        )));
    }
    if let Some(definition) = report.definition {
        return Err(StepError::Failed(format!("{shown}: {definition}")));
    }
    Ok(Loaded {
        has_request: report.has_request,
        has_requests: report.has_requests,
    })
}
