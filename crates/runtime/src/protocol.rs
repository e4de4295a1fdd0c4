//! The conversation with the runner (`runner.py`): frames of a 4-byte
//! big-endian length and that many bytes of UTF-8 JSON, the server's on the
//! runner's stdin, the runner's on its stdout.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::instance::Level;

/// The largest frame either side sends: a call's data, an answer. A larger
/// output fails its call in the runner; a larger frame from the runner
/// breaks the conversation.
pub(crate) const MAX_FRAME_BYTES: usize = 64 << 20;

/// How deep the runner lets lists and objects of an output nest. The answer
/// frame adds levels of its own, and serde_json refuses input deeper than
/// its recursion limit: an output past that would break the conversation
/// instead of failing its call.
pub(crate) const MAX_DEPTH: usize = 100;

const HEADER_BYTES: usize = 4;

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ToRunner<'a> {
    /// The first frame: the context for `Deployment.__init__` (not in an
    /// environment variable, which the code would see) and the limits.
    Start {
        context: &'a Value,
        max_frame_bytes: usize,
        max_line_bytes: usize,
        max_depth: usize,
    },
    Call {
        id: Uuid,
        data: &'a Value,
        many: bool,
        context: &'a Value,
    },
}

/// Where a start failed.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    Import,
    /// The module has no usable `Deployment`.
    Definition,
    Init,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum FromRunner {
    /// A line the code printed. Untagged: the server knows which request is
    /// in flight, and the code cannot claim another.
    Log {
        level: Level,
        text: String,
    },
    Ready {
        has_request: bool,
        has_requests: bool,
    },
    Failed {
        stage: Stage,
        error: String,
        file: Option<String>,
        line: Option<u32>,
    },
    Returned {
        id: Uuid,
        output: Value,
    },
    Raised {
        id: Uuid,
        error: String,
    },
}

/// The frame for `message`, or its size when that is over the limit.
pub(crate) fn encode(message: &ToRunner) -> Result<Vec<u8>, usize> {
    let mut frame = vec![0; HEADER_BYTES];
    serde_json::to_writer(&mut frame, message).expect("a JSON value serialises");
    let length = frame.len() - HEADER_BYTES;
    if length > MAX_FRAME_BYTES {
        return Err(length);
    }
    let length = u32::try_from(length).expect("the frame limit fits a header");
    frame[..HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

/// Frames out of the bytes read from the runner.
#[derive(Default)]
pub(crate) struct Frames {
    buffer: Vec<u8>,
}

impl Frames {
    /// Where to read more bytes to (appending).
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        self.buffer.reserve(64 * 1024);
        &mut self.buffer
    }

    /// The next complete frame, if there is one; an error says how the
    /// runner broke the conversation.
    pub(crate) fn next(&mut self) -> Option<Result<FromRunner, String>> {
        let header: [u8; HEADER_BYTES] = self.buffer.get(..HEADER_BYTES)?.try_into().ok()?;
        let length = u32::from_be_bytes(header) as usize;
        if length > MAX_FRAME_BYTES {
            return Some(Err(format!(
                "the instance sent a message of {length} bytes, more than the {MAX_FRAME_BYTES} the server reads"
            )));
        }
        let end = HEADER_BYTES + length;
        if self.buffer.len() < end {
            self.buffer.reserve(end - self.buffer.len());
            return None;
        }
        let message = serde_json::from_slice(&self.buffer[HEADER_BYTES..end]).map_err(|error| {
            format!("the instance sent a message the server cannot read: {error}")
        });
        self.buffer.drain(..end);
        // One large answer must not hold its memory for the instance's life.
        if self.buffer.capacity() > 1 << 20 && self.buffer.len() < 64 * 1024 {
            self.buffer.shrink_to(64 * 1024);
        }
        Some(message)
    }

    /// Whether a frame was cut off.
    pub(crate) fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        frame
    }

    #[test]
    fn frames_come_whole_however_the_bytes_arrive() {
        let mut bytes = frame(br#"{"type":"log","level":"info","text":"hi"}"#);
        bytes.extend(frame(
            br#"{"type":"raised","id":"6c4ac3a5-52c4-4a4f-b3c6-0d0fbd4a1f3e","error":"E"}"#,
        ));
        let mut frames = Frames::default();
        let mut got = Vec::new();
        for byte in bytes {
            frames.buffer().push(byte);
            while let Some(message) = frames.next() {
                got.push(message.unwrap());
            }
        }
        assert!(matches!(&got[0], FromRunner::Log { level: Level::Info, text } if text == "hi"));
        assert!(matches!(&got[1], FromRunner::Raised { error, .. } if error == "E"));
        assert_eq!(got.len(), 2);
        assert!(frames.is_empty());
    }

    #[test]
    fn oversized_or_unreadable_frames_are_errors_not_panics() {
        let mut frames = Frames::default();
        frames.buffer().extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(frames.next().unwrap().unwrap_err().contains("more than"));

        let mut frames = Frames::default();
        frames.buffer().extend(frame(b"\xff{not json"));
        assert!(frames.next().unwrap().unwrap_err().contains("cannot read"));
        frames.buffer().extend(frame(br#"{"type":"surprise"}"#));
        assert!(frames.next().unwrap().is_err());
    }

    #[test]
    fn oversized_calls_are_refused_before_sending() {
        let data = Value::String("x".repeat(MAX_FRAME_BYTES));
        let call = ToRunner::Call {
            id: Uuid::nil(),
            data: &data,
            many: false,
            context: &Value::Null,
        };
        assert!(encode(&call).unwrap_err() > MAX_FRAME_BYTES);
        let small = Value::from(1);
        let frame = encode(&ToRunner::Call {
            id: Uuid::nil(),
            data: &small,
            many: false,
            context: &Value::Null,
        })
        .unwrap();
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
    }
}
