//! Any `Content-Type` and body sent to the upload route: the form parser
//! must accept it or refuse it with a 4xx and a message, never panic or
//! answer 5xx, and what it accepts respects the limits. The body is read
//! twice, in one piece and in pieces of a few bytes, and must come out the
//! same: the parser keeps bytes between pieces only where a boundary or a
//! header block may straddle them.
//! Input: the header value, a newline, then the body (no newline: the
//! whole input is the body of a `boundary=B` form).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use ubiops_api::fuzzing::parse_upload;

const LIMIT: u64 = 4096;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (&b"multipart/form-data; boundary=B"[..], data),
    };
    let whole = runtime().block_on(parse_upload(content_type, body, body.len(), LIMIT));
    let piece = 1 + body.len() % 7;
    let in_pieces = runtime().block_on(parse_upload(content_type, body, piece, LIMIT));
    assert_eq!(whole, in_pieces, "read whole and in pieces of {piece} bytes");
    match whole {
        Ok(parsed) => {
            if let Some((name, size)) = parsed.file {
                assert!(size <= LIMIT);
                assert!(name.ends_with(".zip") && !name.starts_with('.'), "{name:?}");
                assert!(name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
            }
            for text in [
                parsed.source_deployment,
                parsed.source_version,
                parsed.template_deployment_id,
            ]
            .into_iter()
            .flatten()
            {
                assert!(!text.is_empty() && text.len() <= 256);
            }
        }
        Err((status, message)) => {
            assert!((400..500).contains(&status), "{status} {message}");
            assert!(!message.is_empty());
        }
    }
});
