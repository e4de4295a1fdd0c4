//! Checking `deployment.R`. There is no R parser here: the file must be
//! readable text that defines a `request` function.

use std::path::Path;

use crate::source::read_source;
use crate::BuildFailure;

pub(crate) fn check_deployment(path: &Path, shown: &str) -> Result<(), BuildFailure> {
    let source = read_source(path, shown)?;
    if source.trim().is_empty() {
        return Err(BuildFailure::new(format!("{shown} is empty")));
    }
    if !defines_request(&source) {
        return Err(BuildFailure::new(format!(
            "{shown}: no request function found; define one as 'request <- function(...)'"
        )));
    }
    Ok(())
}

/// True when the source assigns a function to `request`, as in
/// `request <- function(`, `request = function(` or `request <- \(`.
/// Whole-line comments are skipped so a commented-out definition does not count.
fn defines_request(source: &str) -> bool {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(found) = code[from..].find("request") {
        let start = from + found;
        let end = start + "request".len();
        from = end;
        let standalone = start == 0 || !is_r_identifier_byte(bytes[start - 1]);
        if standalone && assigns_function(&code[end..]) {
            return true;
        }
    }
    false
}

fn assigns_function(rest: &str) -> bool {
    let rest = rest.trim_start();
    let after_arrow = if let Some(after) = rest.strip_prefix("<<-") {
        after
    } else if let Some(after) = rest.strip_prefix("<-") {
        after
    } else if let Some(after) = rest.strip_prefix('=') {
        if after.starts_with('=') {
            return false;
        }
        after
    } else {
        return false;
    };
    let value = after_arrow.trim_start();
    if value.starts_with('\\') {
        return true;
    }
    value.strip_prefix("function").is_some_and(|after| {
        after
            .bytes()
            .next()
            .is_none_or(|b| !is_r_identifier_byte(b))
    })
}

fn is_r_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'_'
}

#[cfg(test)]
mod tests {
    use super::defines_request;

    #[test]
    fn recognises_request_definitions() {
        assert!(defines_request(
            "request <- function(input_data, base_directory, context) {\n}\n"
        ));
        assert!(defines_request(
            "init <- function(a, b) {}\nrequest=function(x) x\n"
        ));
        assert!(defines_request("request <-\n  function(x) x\n"));
        assert!(defines_request("request <<- function(x) x"));
        assert!(defines_request("request <- \\(x) x"));
    }

    #[test]
    fn ignores_lookalikes() {
        assert!(!defines_request("# request <- function(x) x\n"));
        assert!(!defines_request("my.request <- function(x) x\n"));
        assert!(!defines_request("bad_request <- function(x) x\n"));
        assert!(!defines_request("request == function_name\n"));
        assert!(!defines_request("request <- functional(x)\n"));
        assert!(!defines_request("x <- request(5)\n"));
    }
}
