//! The Python interpreters of this machine: `python3.X` on `PATH` and those
//! the operator names, each tried once at start from a sandbox (it must run
//! as a sandbox user and have `venv`), and the choice of one for a version's
//! language: the same version, or, unless the operator made the choice
//! strict, the nearest installed one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ubiops_sandbox::{Ended, Sandboxes};

/// The settings an operator uses to name interpreters and to forbid a
/// substitute, quoted in messages that tell them what to change.
pub const INTERPRETERS_SETTING: &str = "UBIOPS_PYTHON_INTERPRETERS";
pub const STRICT_SETTING: &str = "UBIOPS_PYTHON_STRICT";

/// A Python version, major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl FromStr for Version {
    type Err = String;

    fn from_str(text: &str) -> Result<Version, String> {
        let (major, minor) = text
            .trim()
            .split_once('.')
            .ok_or_else(|| format!("'{text}' is not a Python version such as 3.11"))?;
        let number = |part: &str| {
            part.parse::<u32>()
                .map_err(|_| format!("'{text}' is not a Python version such as 3.11"))
        };
        Ok(Version {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The Python version a version's language asks for: `python3.11` and
/// `python3.11_cuda` both ask for 3.11. None for other languages.
pub fn requested_version(language: &str) -> Option<Version> {
    let rest = language.strip_prefix("python")?;
    let version = rest.split('_').next()?;
    version.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub version: Version,
    pub path: PathBuf,
}

/// The interpreter chosen for a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub interpreter: Interpreter,
    /// The version asked for, when it was not installed and the nearest one
    /// stands in for it.
    pub instead_of: Option<Version>,
}

impl Chosen {
    /// The one log line that says a substitute is used, if one is.
    pub fn substitution_line(&self) -> Option<String> {
        self.instead_of.map(|asked| {
            format!(
                "Python {asked} is not installed on this server: using Python {} ({}), the nearest installed version",
                self.interpreter.version,
                self.interpreter.path.display()
            )
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Interpreters {
    found: BTreeMap<Version, Interpreter>,
    strict: bool,
}

impl Interpreters {
    /// Interpreters known without looking (for tests).
    pub fn new(found: impl IntoIterator<Item = Interpreter>, strict: bool) -> Interpreters {
        Interpreters {
            found: found
                .into_iter()
                .map(|interpreter| (interpreter.version, interpreter))
                .collect(),
            strict,
        }
    }

    /// Finds `python3.X` on `path` (the server's `PATH`) and tries each,
    /// and those `configured` (which take precedence for their version),
    /// from a sandbox in `scratch`. Unusable ones are logged and left out.
    pub async fn discover(
        path: &str,
        configured: &[(Version, PathBuf)],
        strict: bool,
        sandboxes: &Sandboxes,
        scratch: &Path,
    ) -> Interpreters {
        let mut candidates: Vec<(Version, PathBuf)> = configured.to_vec();
        for dir in path.split(':').filter(|dir| !dir.is_empty()) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let version = name
                    .to_str()
                    .and_then(|name| name.strip_prefix("python"))
                    .and_then(|version| version.parse::<Version>().ok());
                if let Some(version) = version {
                    candidates.push((version, entry.path()));
                }
            }
        }
        let mut found = BTreeMap::new();
        for (version, path) in candidates {
            if found.contains_key(&version) {
                continue;
            }
            match probe(&path, sandboxes, scratch).await {
                Ok(actual) if actual == version => {
                    tracing::info!(%version, path = %path.display(), "Python interpreter found");
                    found.insert(version, Interpreter { version, path });
                }
                Ok(actual) => tracing::warn!(
                    path = %path.display(),
                    "{path} is Python {actual}, not {version}: left out",
                    path = path.display()
                ),
                Err(reason) => tracing::warn!(
                    path = %path.display(),
                    "Python {version} at {} cannot be used for builds: {reason}",
                    path.display()
                ),
            }
        }
        if found.is_empty() {
            tracing::warn!(
                "no usable Python interpreter found: Python builds will fail until one is installed \
                 (python3.X on PATH, with its venv module) or named in {INTERPRETERS_SETTING}"
            );
        }
        Interpreters { found, strict }
    }

    pub fn all(&self) -> impl Iterator<Item = &Interpreter> {
        self.found.values()
    }

    /// The interpreter for a Python language, or why there is none, in
    /// words for the build's error message.
    pub fn choose(&self, language: &str) -> Result<Chosen, String> {
        let asked = requested_version(language)
            .ok_or_else(|| format!("'{language}' is not a Python language"))?;
        if let Some(interpreter) = self.found.get(&asked) {
            return Ok(Chosen {
                interpreter: interpreter.clone(),
                instead_of: None,
            });
        }
        let installed = self.installed_list();
        if self.strict {
            return Err(format!(
                "Python {asked} is not installed on this server (installed: {installed}); \
                 the administrator can install python{asked} or name it in {INTERPRETERS_SETTING}, \
                 or unset {STRICT_SETTING} to build with the nearest installed version"
            ));
        }
        // The nearest minor version of the same major; between two equally
        // near, the newer.
        let nearest = self
            .found
            .values()
            .filter(|candidate| candidate.version.major == asked.major)
            .min_by_key(|candidate| {
                (
                    candidate.version.minor.abs_diff(asked.minor),
                    std::cmp::Reverse(candidate.version.minor),
                )
            })
            .ok_or_else(|| {
                format!(
                    "No Python {} interpreter is installed on this server (installed: {installed}); \
                     the administrator can install one or name it in {INTERPRETERS_SETTING}",
                    asked.major
                )
            })?;
        Ok(Chosen {
            interpreter: nearest.clone(),
            instead_of: Some(asked),
        })
    }

    fn installed_list(&self) -> String {
        if self.found.is_empty() {
            return "none".to_owned();
        }
        self.found
            .keys()
            .map(Version::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs the interpreter from a sandbox: it must start as a sandbox user
/// and be able to make virtual environments with pip. Its version.
async fn probe(path: &Path, sandboxes: &Sandboxes, scratch: &Path) -> Result<Version, String> {
    let sandbox = sandboxes
        .enter(&scratch.join(format!("probe-{}", std::process::id())))
        .map_err(|error| error.to_string())?;
    let mut command = sandbox.command(path);
    command.args([
        "-c",
        "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])",
    ]);
    let mut output = Vec::new();
    let ended = sandbox
        .run(
            command,
            Duration::from_secs(30),
            std::future::pending(),
            &mut |line| output.push(line.to_owned()),
        )
        .await
        .map_err(|error| error.to_string())?;
    match ended {
        Ended::Exited(status) if status.success() => output
            .last()
            .ok_or_else(|| "it printed nothing".to_owned())?
            .parse(),
        Ended::Exited(_) => Err(output
            .last()
            .cloned()
            .unwrap_or_else(|| "it failed without output".to_owned())),
        _ => Err("it did not answer within 30 s".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(versions: &[&str], strict: bool) -> Interpreters {
        Interpreters::new(
            versions.iter().map(|v| Interpreter {
                version: v.parse().unwrap(),
                path: PathBuf::from(format!("/usr/bin/python{v}")),
            }),
            strict,
        )
    }

    fn chosen(interpreters: &Interpreters, language: &str) -> String {
        interpreters
            .choose(language)
            .map(|c| c.interpreter.version.to_string())
            .unwrap_or_else(|e| e)
    }

    #[test]
    fn languages_ask_for_their_version() {
        assert_eq!(
            requested_version("python3.11_cuda"),
            Some("3.11".parse().unwrap())
        );
        assert_eq!(requested_version("python3.7"), Some("3.7".parse().unwrap()));
        assert_eq!(requested_version("r4.0"), None);
    }

    #[test]
    fn the_exact_version_or_the_nearest_newer_first() {
        let machine = installed(&["3.9", "3.11", "3.12"], false);
        assert_eq!(chosen(&machine, "python3.11"), "3.11");
        assert_eq!(chosen(&machine, "python3.7"), "3.9");
        assert_eq!(
            chosen(&machine, "python3.10"),
            "3.11",
            "a tie goes to the newer"
        );
        let substitute = machine.choose("python3.7").unwrap();
        let line = substitute.substitution_line().unwrap();
        assert!(
            line.starts_with("Python 3.7 is not installed on this server: using Python 3.9"),
            "{line}"
        );
        assert!(machine
            .choose("python3.11")
            .unwrap()
            .substitution_line()
            .is_none());
    }

    #[test]
    fn strict_refuses_a_substitute_and_names_the_settings() {
        let machine = installed(&["3.11"], true);
        let error = chosen(&machine, "python3.8");
        assert!(error.contains("Python 3.8 is not installed"), "{error}");
        assert!(
            error.contains(INTERPRETERS_SETTING) && error.contains(STRICT_SETTING),
            "{error}"
        );
        assert_eq!(chosen(&machine, "python3.11"), "3.11");
        let none = installed(&[], false);
        assert!(chosen(&none, "python3.8").contains("installed: none"));
    }
}
