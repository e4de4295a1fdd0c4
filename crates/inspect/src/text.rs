//! Small helpers for turning untrusted names and text into safe messages.

/// Longest entry name quoted in a message; zip names can be 64 KiB long.
const MAX_SHOWN_CHARS: usize = 200;

/// Makes an untrusted string safe to quote in a message: control characters
/// (a newline in a file name could forge a log line) are escaped and very long
/// strings are shortened.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SHOWN_CHARS + 8));
    for (count, c) in s.chars().enumerate() {
        if count == MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A byte count as people think of limits: "2048 MiB", "512 KiB", "100 bytes".
pub(crate) fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// 1-based line number of a byte offset, counting `\n`, `\r\n` and a lone `\r`
/// as line ends the way Python does.
pub(crate) fn line_of(source: &str, offset: usize) -> usize {
    let bytes = source.as_bytes();
    let end = offset.min(bytes.len());
    let mut line = 1;
    for (i, &b) in bytes[..end].iter().enumerate() {
        match b {
            b'\n' => line += 1,
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => line += 1,
            _ => {}
        }
    }
    line
}

/// Decodes a text file as UTF-8 (dropping a byte-order mark), or explains
/// where it is not UTF-8.
pub(crate) fn decode_utf8(bytes: Vec<u8>, shown: &str) -> Result<String, String> {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(text)
        }
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let bytes = err.as_bytes();
            let line = 1 + bytes[..valid].iter().filter(|&&b| b == b'\n').count();
            Err(format!(
                "{shown} line {line}: the file is not valid UTF-8 text; save it with UTF-8 encoding"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_shortens() {
        assert_eq!(printable("a\nb"), "a\\nb");
        let long = "x".repeat(500);
        let shown = printable(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(2 * 1024 * 1024 * 1024), "2048 MiB");
        assert_eq!(human_size(1024 * 1024), "1 MiB");
        assert_eq!(human_size(1536), "1536 bytes");
        assert_eq!(human_size(2048), "2 KiB");
        assert_eq!(human_size(7), "7 bytes");
    }

    #[test]
    fn lines_follow_python_line_ends() {
        let src = "a\nb\r\nc\rd";
        assert_eq!(line_of(src, 0), 1);
        assert_eq!(line_of(src, 2), 2);
        assert_eq!(line_of(src, 5), 3);
        assert_eq!(line_of(src, 7), 4);
        assert_eq!(line_of(src, 999), 4);
    }

    #[test]
    fn utf8_errors_name_the_line() {
        let err = decode_utf8(b"ok\nbad \xff\n".to_vec(), "deployment.py").unwrap_err();
        assert!(err.starts_with("deployment.py line 2:"), "{err}");
        assert_eq!(decode_utf8(b"\xef\xbb\xbfx".to_vec(), "f").unwrap(), "x");
    }
}
