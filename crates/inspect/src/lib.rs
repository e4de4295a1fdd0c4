//! Inspection of uploaded deployment packages, free of database and network I/O.
//!
//! The build worker runs the two stages separately so it can notice a
//! cancellation between them:
//!
//! 1. [`extract`] ("building") unpacks the uploaded zip into a directory,
//!    refusing anything that could escape that directory or fill the disk.
//! 2. [`validate`] ("validating") finds the deployment file and checks the
//!    code the way the runtime would need it.
//!
//! Every failure is a [`BuildFailure`] whose message is written for the person
//! who uploaded the zip.

use std::fmt;
use std::path::{Path, PathBuf};

mod extract;
mod locate;
mod python;
mod r;
mod requirements;
mod source;
mod text;

pub use extract::{extract, Extracted};

/// Caps applied while extracting, so a hostile zip cannot exhaust the disk or
/// the inode table of the build machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most entries (files and folders) the archive may hold.
    pub max_entries: usize,
    /// Most bytes all files together may expand to.
    pub max_total_uncompressed: u64,
    /// Most bytes a single file may expand to.
    pub max_file_uncompressed: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_total_uncompressed: 2 * 1024 * 1024 * 1024,
            max_file_uncompressed: 1024 * 1024 * 1024,
        }
    }
}

/// The language of a deployment, derived by the caller from its environment
/// (for example `python3.11_cuda` is Python, `r4.0` is R).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    R,
}

impl Language {
    /// Name of the file that holds the deployment code.
    pub fn deployment_file_name(self) -> &'static str {
        match self {
            Language::Python => "deployment.py",
            Language::R => "deployment.R",
        }
    }
}

/// What [`validate`] learned about a deployment package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Path of the deployment file relative to the archive root, such as
    /// `deployment.py` or `my_model/deployment.py`.
    pub deployment_file: PathBuf,
    /// The `Deployment` class (Python) or the script (R) defines `request`.
    pub has_request_method: bool,
    /// The `Deployment` class defines `requests` (batch requests; Python only).
    pub has_requests_method: bool,
    /// Requirement lines of `requirements.txt` beside the deployment file, with
    /// comments and pip options removed. Empty when there is no such file.
    pub requirements: Vec<String>,
}

/// Why a build failed, phrased so the person who uploaded the package can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildFailure {
    message: String,
}

impl BuildFailure {
    /// Longest message kept, in characters: it is stored with the version and
    /// shown in the UI, where a wall of text helps nobody.
    pub const MAX_MESSAGE_CHARS: usize = 1024;

    /// Wraps a message, truncating it to [`Self::MAX_MESSAGE_CHARS`].
    pub fn new(message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.chars().count() > Self::MAX_MESSAGE_CHARS {
            let ellipsis = '…';
            let keep = Self::MAX_MESSAGE_CHARS - 1;
            let cut = message
                .char_indices()
                .nth(keep)
                .map_or(message.len(), |(at, _)| at);
            message.truncate(cut);
            message.push(ellipsis);
        }
        BuildFailure { message }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Stage 2 ("validating"): inspects a tree produced by [`extract`].
///
/// Locates the deployment file, checks its code, and reads the
/// `requirements.txt` next to it (Python only: R packages are installed
/// differently).
pub fn validate(root: &Path, language: Language) -> Result<Validation, BuildFailure> {
    let deployment_file = locate::find_deployment_file(root, language)?;
    let shown = DisplayPath(&deployment_file).to_string();
    match language {
        Language::Python => {
            let methods = python::check_deployment(&root.join(&deployment_file), &shown)?;
            let requirements_file = deployment_file.with_file_name("requirements.txt");
            let requirements = requirements::read_requirements(
                &root.join(&requirements_file),
                &DisplayPath(&requirements_file).to_string(),
            )?;
            Ok(Validation {
                deployment_file,
                has_request_method: methods.has_request,
                has_requests_method: methods.has_requests,
                requirements,
            })
        }
        Language::R => {
            r::check_deployment(&root.join(&deployment_file), &shown)?;
            Ok(Validation {
                deployment_file,
                has_request_method: true,
                has_requests_method: false,
                requirements: Vec::new(),
            })
        }
    }
}

/// Both stages in one call: extracts into `work_dir` (which must be empty or
/// absent) and validates the result. The caller owns `work_dir` and removes it.
pub fn inspect(
    zip_path: &Path,
    work_dir: &Path,
    language: Language,
    limits: &Limits,
) -> Result<Validation, BuildFailure> {
    extract(zip_path, work_dir, limits)?;
    validate(work_dir, language)
}

/// Shows a relative path with `/` separators, as people see it in their zip tool.
struct DisplayPath<'a>(&'a Path);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for component in self.0.components() {
            if !first {
                f.write_str("/")?;
            }
            first = false;
            f.write_str(&text::printable(&component.as_os_str().to_string_lossy()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_truncated_on_a_character_boundary() {
        let failure = BuildFailure::new("é".repeat(5000));
        assert_eq!(
            failure.message().chars().count(),
            BuildFailure::MAX_MESSAGE_CHARS
        );
        assert!(failure.message().ends_with('…'));
        assert_eq!(BuildFailure::new("short").to_string(), "short");
    }
}
