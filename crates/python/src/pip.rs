//! What pip is asked, and what of its output tells a user why an install
//! failed.

use std::path::Path;

/// Arguments of `python -m pip` that install a requirements file: no
/// questions, no progress bars or colours in the log, no nagging about pip's
/// own version. The index and everything else come from the operator's pip
/// configuration.
pub(crate) fn install_args(requirements: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--no-color",
        "-r",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(requirements.into());
    args
}

/// The lines of pip's output that say why it failed: its `ERROR:` lines
/// (the requirement it could not find, the package whose build failed), and
/// the last exception an install script raised, which pip only quotes.
pub(crate) fn failure_reason(output: &[String]) -> String {
    let mut reasons: Vec<String> = Vec::new();
    let exception = output
        .iter()
        .rev()
        .map(|line| line.trim())
        .find(|line| is_exception_line(line));
    if let Some(exception) = exception {
        reasons.push(exception.to_owned());
    }
    for line in output {
        if let Some(error) = line.strip_prefix("ERROR: ") {
            let error = error.trim();
            if !reasons.iter().any(|seen| seen == error) {
                reasons.push(error.to_owned());
            }
        }
    }
    if reasons.is_empty() {
        if let Some(last) = output.iter().rev().find(|line| !line.trim().is_empty()) {
            reasons.push(last.trim().to_owned());
        }
    }
    reasons.join("; ")
}

/// `ValueError: ...`, `mypackage.BuildError: ...`: a traceback's last line.
fn is_exception_line(line: &str) -> bool {
    let Some((name, _)) = line.split_once(": ") else {
        return false;
    };
    let last = name.rsplit('.').next().unwrap_or(name);
    (last.ends_with("Error") || last.ends_with("Exception"))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_missing_requirement_is_pips_own_words() {
        let output = lines(
            "ERROR: Could not find a version that satisfies the requirement no-such-pkg-4242 (from versions: none)\n\
             ERROR: No matching distribution found for no-such-pkg-4242",
        );
        assert_eq!(
            failure_reason(&output),
            "Could not find a version that satisfies the requirement no-such-pkg-4242 (from versions: none); \
             No matching distribution found for no-such-pkg-4242"
        );
    }

    #[test]
    fn a_failing_install_script_gives_its_exception() {
        let output = lines(
            "  error: subprocess-exited-with-error\n\
             \n\
             \u{d7} python setup.py egg_info did not run successfully.\n\
             \u{2502} exit code: 1\n\
             \u{2570}\u{2500}> [6 lines of output]\n\
             \x20   Traceback (most recent call last):\n\
             \x20     File \"<string>\", line 2, in <module>\n\
             \x20   RuntimeError: this package refuses to install\n\
             \x20   [end of output]\n\
             error: metadata-generation-failed",
        );
        assert_eq!(
            failure_reason(&output),
            "RuntimeError: this package refuses to install"
        );
    }

    #[test]
    fn otherwise_the_last_line() {
        assert_eq!(failure_reason(&lines("Collecting x\nKilled\n")), "Killed");
    }
}
