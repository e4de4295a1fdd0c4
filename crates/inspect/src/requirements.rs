//! Checking `requirements.txt` the way pip reads it, restricted to what a
//! build can honour: package requirements and index locations, but no
//! references to other files or editable checkouts.

use std::fs;
use std::panic;
use std::path::Path;
use std::str::FromStr;

use pep508_rs::Requirement;

use crate::source::read_source;
use crate::text::printable;
use crate::BuildFailure;

/// Options allowed on a line of their own. Everything else (`-r other.txt`,
/// `-e ./pkg`, `-c constraints.txt`) names files or checkouts the build
/// does not have.
const ALLOWED_OPTIONS: &[&str] = &[
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
];

/// Reads the requirements file if there is one; a missing file means no
/// requirements.
pub(crate) fn read_requirements(path: &Path, shown: &str) -> Result<Vec<String>, BuildFailure> {
    let is_file = fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file());
    if !is_file {
        return Ok(Vec::new());
    }
    let text = read_source(path, shown)?;
    parse_requirements(&text, shown)
}

/// Checks the text of a requirements file and returns its requirement
/// specifiers (PEP 508 strings) in order. Comments, blank lines, index options
/// and per-requirement `--hash` options are checked but not returned.
pub(crate) fn parse_requirements(text: &str, shown: &str) -> Result<Vec<String>, BuildFailure> {
    let mut requirements = Vec::new();
    for (line_number, line) in logical_lines(text) {
        let line = strip_comment(&line).trim().to_string();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            check_option_line(&line, line_number, shown)?;
            continue;
        }
        let (requirement, options) = split_options(&line);
        check_requirement_options(options, &line, line_number, shown)?;
        check_requirement(requirement, &line, line_number, shown)?;
        requirements.push(requirement.to_string());
    }
    Ok(requirements)
}

/// Joins lines continued with a trailing backslash, as pip does (pip-compile
/// writes `--hash` options that way), keeping the number of the first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(raw);
                lines.push((start, joined));
            }
        }
    }
    if let Some(last) = pending {
        lines.push(last);
    }
    lines
}

/// pip treats `#` as a comment only at the start or after whitespace, so a URL
/// fragment such as `#sha256=...` survives.
fn strip_comment(line: &str) -> &str {
    let mut previous_is_space = true;
    for (at, c) in line.char_indices() {
        if c == '#' && previous_is_space {
            return &line[..at];
        }
        previous_is_space = c.is_whitespace();
    }
    line
}

fn check_option_line(line: &str, line_number: usize, shown: &str) -> Result<(), BuildFailure> {
    let (option, value) = match line.find(|c: char| c == '=' || c.is_whitespace()) {
        Some(at) => (
            &line[..at],
            line[at..].trim_start_matches(|c: char| c == '=' || c.is_whitespace()),
        ),
        None => (line, ""),
    };
    if !ALLOWED_OPTIONS.contains(&option) {
        return Err(BuildFailure::new(format!(
            "{shown} line {line_number}: '{}' is not supported; only --index-url, --extra-index-url and --find-links options may be used",
            printable(line)
        )));
    }
    if value.is_empty() || value.split_whitespace().count() != 1 {
        return Err(BuildFailure::new(format!(
            "{shown} line {line_number}: '{}' needs exactly one value",
            printable(line)
        )));
    }
    Ok(())
}

/// Splits `name==1.0 --hash=sha256:...` into the requirement and its options,
/// at the first whitespace-separated word starting with `-` (pip's rule).
fn split_options(line: &str) -> (&str, &str) {
    let mut previous_is_space = false;
    for (at, c) in line.char_indices() {
        if c == '-' && previous_is_space {
            return (line[..at].trim_end(), &line[at..]);
        }
        previous_is_space = c.is_whitespace();
    }
    (line, "")
}

fn check_requirement_options(
    options: &str,
    line: &str,
    line_number: usize,
    shown: &str,
) -> Result<(), BuildFailure> {
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let has_value = match word.strip_prefix("--hash") {
            Some("") => words.next().is_some_and(|value| !value.starts_with('-')),
            Some(rest) => rest.len() > 1 && rest.starts_with('='),
            None => false,
        };
        if !has_value {
            return Err(BuildFailure::new(format!(
                "{shown} line {line_number}: '{}' is not a valid requirement: only --hash options may follow a requirement",
                printable(line)
            )));
        }
    }
    Ok(())
}

fn check_requirement(
    requirement: &str,
    line: &str,
    line_number: usize,
    shown: &str,
) -> Result<(), BuildFailure> {
    // The parser is third-party code fed with uploaded text; a panic in it
    // must become a failed build, not a crashed worker.
    let outcome = panic::catch_unwind(|| {
        Requirement::<pep508_rs::VerbatimUrl>::from_str(requirement)
            .map(|_| ())
            // The error's own Display draws an underline and asserts on the
            // span; the bare message is enough here.
            .map_err(|err| err.message.to_string())
    });
    let reason = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(reason)) => reason,
        Err(_) => "the requirement could not be parsed".to_string(),
    };
    let reason = reason.lines().next().unwrap_or_default().to_string();
    Err(BuildFailure::new(format!(
        "{shown} line {line_number}: '{}' is not a valid requirement: {}",
        printable(line),
        printable(&reason)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<String>, String> {
        parse_requirements(text, "requirements.txt").map_err(|f| f.message().to_string())
    }

    #[test]
    fn accepts_common_requirement_files() {
        let text = "\
# pinned for the model
numpy==1.26.4
pandas >= 2.0, < 3  # trailing comment
requests[security,socks]~=2.31
scikit-learn!=1.3.0
torch==2.1.0+cu118 ; platform_system == \"Linux\"
tomli; python_version < \"3.11\"
weird-name.with_dots===1.0
mypkg @ https://example.com/mypkg-1.0.tar.gz#sha256=abc
Flask

--index-url https://pypi.org/simple
--extra-index-url=https://download.pytorch.org/whl/cu118
-f https://example.com/wheels/
-i https://pypi.org/simple
";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                "numpy==1.26.4",
                "pandas >= 2.0, < 3",
                "requests[security,socks]~=2.31",
                "scikit-learn!=1.3.0",
                "torch==2.1.0+cu118 ; platform_system == \"Linux\"",
                "tomli; python_version < \"3.11\"",
                "weird-name.with_dots===1.0",
                "mypkg @ https://example.com/mypkg-1.0.tar.gz#sha256=abc",
                "Flask",
            ]
        );
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse("\u{a0}\n# only comments\n   \n").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn accepts_pip_compile_hashes() {
        let text = "\
certifi==2024.2.2 \\
    --hash=sha256:0569859f95fc761b18b45ef421b1290a0f65f147e92a1e5eb3e635f9a5e4e66f \\
    --hash sha256:dc383c07b76109f368f6106eee2b593b04a011ea4d55f652c6ca24a754d1cdd1
idna==3.6\r
";
        assert_eq!(parse(text).unwrap(), vec!["certifi==2024.2.2", "idna==3.6"]);
    }

    #[test]
    fn rejects_invalid_lines_with_their_number() {
        let cases = [
            ("numpy\nnot a requirement\n", 2, "not a requirement"),
            ("# c\n\nnumpy==\n", 3, "numpy=="),
            ("numpy=1.0\n", 1, "numpy=1.0"),
            ("numpy==latest\n", 1, "numpy==latest"),
            ("_private\n", 1, "_private"),
            ("pkg[extra\n", 1, "pkg[extra"),
            (
                "pkg; python_version <<< '3'\n",
                1,
                "pkg; python_version <<< '3'",
            ),
            ("numpy\n./local/package\n", 2, "./local/package"),
            (
                "git+https://github.com/org/repo.git\n",
                1,
                "git+https://github.com/org/repo.git",
            ),
            (
                "numpy==1.0 --install-option=x\n",
                1,
                "numpy==1.0 --install-option=x",
            ),
        ];
        for (text, line, shown) in cases {
            let err = parse(text).unwrap_err();
            let expected =
                format!("requirements.txt line {line}: '{shown}' is not a valid requirement");
            assert!(err.starts_with(&expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn rejects_unsupported_options() {
        for (text, line) in [
            ("numpy\n-r other.txt\n", 2),
            ("-e ./src\n", 1),
            ("--requirement=other.txt\n", 1),
            ("-c constraints.txt\n", 1),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.starts_with(&format!("requirements.txt line {line}: '")),
                "{err}"
            );
            assert!(err.contains("is not supported"), "{err}");
        }
        let err = parse("--index-url\n").unwrap_err();
        assert_eq!(
            err,
            "requirements.txt line 1: '--index-url' needs exactly one value"
        );
    }

    #[test]
    fn continuation_lines_report_their_first_line() {
        let err = parse("numpy\nbad \\\n  line\n").unwrap_err();
        assert!(
            err.starts_with("requirements.txt line 2: 'bad   line'"),
            "{err}"
        );
    }

    #[test]
    fn comments_need_leading_space() {
        assert_eq!(strip_comment("pkg # note"), "pkg ");
        assert_eq!(strip_comment("# note"), "");
        assert_eq!(
            strip_comment("pkg @ https://x/y#egg=pkg"),
            "pkg @ https://x/y#egg=pkg"
        );
    }
}
