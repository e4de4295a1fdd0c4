//! `multipart/form-data` (RFC 7578), read in place as the body arrives.
//!
//! The upload route used `multer` (behind axum's `Multipart`) until a profile
//! of a 1 GiB upload showed its cost: it copies every received chunk into a
//! buffer of its own before looking for the boundary (`memmove` stood out in
//! the server's profile), and returns everything ready as one
//! chunk, so a fast client made chunks of several MB that the upload had to
//! hold. This reader hands out slices of the chunks the HTTP server received
//! (`Bytes::split_to`, no copy) and never holds more than one of them: only
//! the few bytes that might begin a boundary are kept back between chunks.
//! Headers are parsed by `httparse`, the boundary found by `memchr`'s
//! `memmem`, the `Content-Type` read by `mime`.

use std::fmt;

use axum::body::{Body, BodyDataStream};
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use memchr::memmem::Finder;

/// Header blocks beyond this size are refused rather than buffered.
const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;

/// Why a body is not a form this reader can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormError {
    /// The body ended before the closing boundary.
    CutOff,
    /// The body could not be read (the client went away, for one).
    Unreadable(String),
    /// No line break after a boundary.
    NoLineBreak,
    /// A part's headers are not HTTP headers.
    BadHeaders,
    HeadersTooLong,
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::CutOff => f.write_str("the body ends before the closing boundary"),
            FormError::Unreadable(why) => write!(f, "the body could not be read: {why}"),
            FormError::NoLineBreak => f.write_str("a boundary is not followed by a line break"),
            FormError::BadHeaders => f.write_str("a part's headers are malformed"),
            FormError::HeadersTooLong => write!(
                f,
                "a part's headers are longer than {MAX_HEADER_BYTES} bytes"
            ),
        }
    }
}

/// What a part's `Content-Disposition` header names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PartHead {
    pub(crate) name: Option<String>,
    pub(crate) file_name: Option<String>,
}

enum Position {
    /// Before the first boundary: the preamble, which is skipped.
    Preamble,
    /// In a part's data.
    Data,
    /// Just past a boundary: `--` ends the form, a line break begins a part.
    AfterBoundary,
    /// Past the closing boundary; the epilogue is never read.
    End,
}

/// Reads the parts of a form one after the other: [`FormReader::next_part`]
/// gives a part's head, then [`FormReader::chunk`] its data.
pub(crate) struct FormReader {
    body: BodyDataStream,
    /// `\r\n--boundary`, which ends every part's data.
    delimiter: Finder<'static>,
    /// Received and not yet handed out.
    pending: Bytes,
    position: Position,
}

/// The boundary of a `multipart/form-data` content type, or `None` for any
/// other content type.
pub(crate) fn form_boundary(content_type: &str) -> Option<String> {
    let mime: mime::Mime = content_type.parse().ok()?;
    if mime.type_() != mime::MULTIPART || mime.subtype() != mime::FORM_DATA {
        return None;
    }
    let boundary = mime.get_param(mime::BOUNDARY)?.as_str();
    // RFC 2046: 1 to 70 characters.
    (!boundary.is_empty() && boundary.len() <= 70).then(|| boundary.to_owned())
}

impl FormReader {
    pub(crate) fn new(boundary: &str, body: Body) -> Self {
        FormReader {
            body: body.into_data_stream(),
            delimiter: Finder::new(format!("\r\n--{boundary}").as_bytes()).into_owned(),
            // The first boundary has no line break before it when there is
            // no preamble; supplying one lets a single search find them all.
            pending: Bytes::from_static(b"\r\n"),
            position: Position::Preamble,
        }
    }

    /// The next part's head, skipping what is left of the current part's
    /// data; `None` after the closing boundary.
    pub(crate) async fn next_part(&mut self) -> Result<Option<PartHead>, FormError> {
        while matches!(self.position, Position::Preamble | Position::Data) {
            self.next_data().await?;
        }
        if matches!(self.position, Position::End) {
            return Ok(None);
        }
        self.fill_to(2).await?;
        if self.pending.starts_with(b"--") {
            self.position = Position::End;
            return Ok(None);
        }
        self.skip_to_line_break().await?;
        let head = self.read_headers().await?;
        self.position = Position::Data;
        Ok(Some(head))
    }

    /// The next slice of the current part's data; `None` at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, FormError> {
        match self.position {
            Position::Data => self.next_data().await,
            _ => Ok(None),
        }
    }

    /// Data up to the next delimiter, which is consumed when reached.
    async fn next_data(&mut self) -> Result<Option<Bytes>, FormError> {
        let delimiter_length = self.delimiter.needle().len();
        loop {
            if let Some(at) = self.delimiter.find(&self.pending) {
                if at > 0 {
                    return Ok(Some(self.pending.split_to(at)));
                }
                self.pending.advance(delimiter_length);
                self.position = Position::AfterBoundary;
                return Ok(None);
            }
            let kept = partial_delimiter_at_end(&self.pending, self.delimiter.needle());
            let ready = self.pending.len() - kept;
            if ready > 0 {
                return Ok(Some(self.pending.split_to(ready)));
            }
            self.receive().await?;
        }
    }

    /// Transport padding (spaces and tabs) may follow a boundary, then CRLF.
    async fn skip_to_line_break(&mut self) -> Result<(), FormError> {
        loop {
            let padding = self
                .pending
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            self.pending.advance(padding);
            if self.pending.len() >= 2 {
                break;
            }
            self.receive().await?;
        }
        if !self.pending.starts_with(b"\r\n") {
            return Err(FormError::NoLineBreak);
        }
        self.pending.advance(2);
        Ok(())
    }

    async fn read_headers(&mut self) -> Result<PartHead, FormError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(&self.pending, &mut headers) {
                Ok(httparse::Status::Complete((length, _))) if length > MAX_HEADER_BYTES => {
                    return Err(FormError::HeadersTooLong)
                }
                Ok(httparse::Status::Complete((length, headers))) => {
                    let head = headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-disposition"))
                        .map(|h| disposition(h.value))
                        .unwrap_or_default();
                    self.pending.advance(length);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if self.pending.len() > MAX_HEADER_BYTES => {
                    return Err(FormError::HeadersTooLong)
                }
                Ok(httparse::Status::Partial) => self.receive().await?,
                Err(_) => return Err(FormError::BadHeaders),
            }
        }
    }

    async fn fill_to(&mut self, length: usize) -> Result<(), FormError> {
        while self.pending.len() < length {
            self.receive().await?;
        }
        Ok(())
    }

    /// Appends the next chunk of the body. Only a few kept-back bytes (or a
    /// header block) are ever pending here, so the copy is small and rare.
    async fn receive(&mut self) -> Result<(), FormError> {
        let chunk = loop {
            match self.body.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => break chunk,
                Some(Err(error)) => return Err(FormError::Unreadable(error.to_string())),
                None => return Err(FormError::CutOff),
            }
        };
        self.pending = if self.pending.is_empty() {
            chunk
        } else {
            let mut joined = BytesMut::with_capacity(self.pending.len() + chunk.len());
            joined.extend_from_slice(&self.pending);
            joined.extend_from_slice(&chunk);
            joined.freeze()
        };
        Ok(())
    }
}

/// The length of the longest end of `data` that is a beginning of
/// `delimiter` (and not all of it): those bytes may be a delimiter whose rest
/// has not arrived, so they are kept back. Almost always 0, since the
/// delimiter starts with `\r`.
fn partial_delimiter_at_end(data: &[u8], delimiter: &[u8]) -> usize {
    let longest = data.len().min(delimiter.len() - 1);
    let tail = &data[data.len() - longest..];
    memchr::memchr_iter(b'\r', tail)
        .map(|at| &tail[at..])
        .find(|end| delimiter.starts_with(end))
        .map_or(0, <[u8]>::len)
}

/// What follows the next `;`.
fn after_separator(from: &[u8]) -> &[u8] {
    match from.iter().position(|&b| b == b';') {
        Some(end) => &from[end + 1..],
        None => &[],
    }
}

/// `name` and `filename` of a `form-data; name="..."; filename="..."` value,
/// quoted or not (older clients do not quote); `\"` in a quoted value is a
/// quote. Any other parameter (`filename*` among them) is ignored.
fn disposition(value: &[u8]) -> PartHead {
    let mut head = PartHead::default();
    let mut rest = match value.iter().position(|&b| b == b';') {
        Some(end) => &value[end + 1..],
        None => return head,
    };
    while !rest.is_empty() {
        let Some(equals) = rest.iter().position(|&b| b == b'=' || b == b';') else {
            break;
        };
        let key = rest[..equals].trim_ascii();
        if rest[equals] == b';' {
            rest = &rest[equals + 1..];
            continue;
        }
        let (text, after) = parameter_value(rest[equals + 1..].trim_ascii_start());
        rest = after;
        let slot = if key.eq_ignore_ascii_case(b"name") {
            &mut head.name
        } else if key.eq_ignore_ascii_case(b"filename") {
            &mut head.file_name
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = text;
        }
    }
    head
}

/// A parameter's value (`None` if it is not UTF-8) and what follows its `;`.
fn parameter_value(input: &[u8]) -> (Option<String>, &[u8]) {
    if let Some(quoted) = input.strip_prefix(b"\"") {
        let mut text = Vec::new();
        let mut bytes = quoted.iter().enumerate();
        while let Some((at, &byte)) = bytes.next() {
            match byte {
                b'"' => {
                    let value = String::from_utf8(text).ok();
                    return (value, after_separator(&quoted[at + 1..]));
                }
                b'\\' => match bytes.next() {
                    Some((_, &escaped)) => text.push(escaped),
                    None => text.push(b'\\'),
                },
                other => text.push(other),
            }
        }
        // No closing quote: the value runs to the end.
        return (String::from_utf8(text).ok(), &[]);
    }
    let end = input
        .iter()
        .position(|&b| b == b';' || b.is_ascii_whitespace())
        .unwrap_or(input.len());
    let value = std::str::from_utf8(&input[..end]).ok().map(str::to_owned);
    (value, after_separator(&input[end..]))
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use proptest::prelude::*;

    use super::*;

    const BOUNDARY: &str = "B0und-ary";

    /// A form's parts as `(head, data)`.
    type Parts = Vec<(PartHead, Vec<u8>)>;

    fn pieces(body: &[u8], piece: usize) -> Vec<Result<Bytes, std::io::Error>> {
        body.chunks(piece)
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect()
    }

    async fn read_all(body: &[u8], piece: usize) -> Result<Parts, FormError> {
        let body = Body::from_stream(stream::iter(pieces(body, piece)));
        let mut form = FormReader::new(BOUNDARY, body);
        let mut parts = Vec::new();
        while let Some(head) = form.next_part().await? {
            let mut data = Vec::new();
            while let Some(chunk) = form.chunk().await? {
                assert!(!chunk.is_empty());
                data.extend_from_slice(&chunk);
            }
            parts.push((head, data));
        }
        Ok(parts)
    }

    async fn read_with_multer(body: &[u8], piece: usize) -> Result<Parts, multer::Error> {
        let body = stream::iter(pieces(body, piece));
        let mut form = multer::Multipart::new(body, BOUNDARY);
        let mut parts = Vec::new();
        while let Some(mut field) = form.next_field().await? {
            let head = PartHead {
                name: field.name().map(str::to_owned),
                file_name: field.file_name().map(str::to_owned),
            };
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await? {
                data.extend_from_slice(&chunk);
            }
            parts.push((head, data));
        }
        Ok(parts)
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// Bytes rich in line breaks, dashes and beginnings of the delimiter.
    fn data() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r\n-".to_vec()),
            Just(b"\r\n--".to_vec()),
            Just(b"\r\n--B0und".to_vec()),
            Just(b"--B0und-ar".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
        ];
        proptest::collection::vec(token, 0..12).prop_map(|tokens| tokens.concat())
    }

    fn part() -> impl Strategy<Value = (PartHead, Vec<u8>)> {
        let name = proptest::option::weighted(0.9, "[a-z_]{1,12}");
        let file_name = proptest::option::of("[a-zA-Z0-9 ._/-]{0,20}");
        (name, file_name, data())
            .prop_map(|(name, file_name, data)| (PartHead { name, file_name }, data))
    }

    fn encode(preamble: &[u8], parts: &Parts, epilogue: &[u8]) -> Vec<u8> {
        let mut body = preamble.to_vec();
        if !preamble.is_empty() {
            body.extend_from_slice(b"\r\n");
        }
        for (head, data) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let mut disposition = "form-data".to_owned();
            if let Some(name) = &head.name {
                disposition += &format!("; name=\"{name}\"");
            }
            if let Some(file_name) = &head.file_name {
                disposition += &format!("; filename=\"{file_name}\"");
            }
            body.extend_from_slice(
                format!(
                    "Content-Disposition: {disposition}\r\nContent-Type: application/zip\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--").as_bytes());
        body.extend_from_slice(epilogue);
        body
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any well-formed form reads back as it was written, however the
        /// body is cut into pieces, and as multer reads it.
        #[test]
        fn forms_read_back_as_written_and_as_multer_reads_them(
            parts in proptest::collection::vec(part(), 0..4),
            preamble in data(),
            epilogue in data(),
            piece in 1usize..80,
        ) {
            let delimiter = format!("\r\n--{BOUNDARY}");
            let contains_delimiter = |bytes: &[u8]| {
                memchr::memmem::find(bytes, delimiter.as_bytes()).is_some()
            };
            prop_assume!(!parts.iter().any(|(_, data)| contains_delimiter(data)));
            // A preamble cannot hold a boundary either.
            let mut framed_preamble = b"\r\n".to_vec();
            framed_preamble.extend_from_slice(&preamble);
            prop_assume!(!contains_delimiter(&framed_preamble));
            let body = encode(&preamble, &parts, &epilogue);
            let expected = Ok(parts.clone());
            prop_assert_eq!(run(read_all(&body, piece)), expected.clone());
            prop_assert_eq!(run(read_all(&body, body.len())), expected.clone());
            // multer takes `--boundary` anywhere in the preamble for the
            // first boundary; RFC 2046 (and this reader) only at a line's start.
            if memchr::memmem::find(&preamble, format!("--{BOUNDARY}").as_bytes()).is_none() {
                let theirs = run(read_with_multer(&body, piece)).map_err(|e| e.to_string());
                prop_assert_eq!(theirs, Ok(parts));
            }
        }

        /// Any body at all: the same outcome in one piece or many.
        #[test]
        fn any_body_reads_the_same_in_any_pieces(
            body in proptest::collection::vec(
                prop_oneof![
                    4 => any::<u8>().prop_map(|b| vec![b]),
                    1 => Just(format!("--{BOUNDARY}").into_bytes()),
                    1 => Just(b"\r\n".to_vec()),
                    1 => Just(b"Content-Disposition: form-data; name=\"f\"\r\n\r\n".to_vec()),
                ],
                0..40,
            ).prop_map(|tokens| tokens.concat()),
            piece in 1usize..20,
        ) {
            let whole = run(read_all(&body, body.len().max(1)));
            prop_assert_eq!(run(read_all(&body, piece)), whole);
        }
    }

    #[test]
    fn a_form_cut_anywhere_is_refused() {
        let parts = vec![(
            PartHead {
                name: Some("file".to_owned()),
                file_name: Some("a.zip".to_owned()),
            },
            b"PK\x03\x04 data \r\n--B0und".to_vec(),
        )];
        let body = encode(b"", &parts, b"");
        assert_eq!(run(read_all(&body, 7)), Ok(parts));
        for end in 0..body.len() - 1 {
            let cut = run(read_all(&body[..end], 3));
            assert_eq!(cut, Err(FormError::CutOff), "cut at {end}");
        }
    }

    #[test]
    fn padding_after_a_boundary_is_skipped_and_anything_else_refused() {
        let body = format!("--{BOUNDARY} \t\r\n\r\nx\r\n--{BOUNDARY}--");
        let parts = run(read_all(body.as_bytes(), 2)).unwrap();
        assert_eq!(parts, vec![(PartHead::default(), b"x".to_vec())]);
        let body = format!("--{BOUNDARY}x\r\n\r\nx\r\n--{BOUNDARY}--");
        assert_eq!(
            run(read_all(body.as_bytes(), 2)),
            Err(FormError::NoLineBreak)
        );
        let body = format!("--{BOUNDARY}\r\nno colon\r\n\r\n\r\n--{BOUNDARY}--");
        assert_eq!(
            run(read_all(body.as_bytes(), 2)),
            Err(FormError::BadHeaders)
        );
        let long = format!(
            "--{BOUNDARY}\r\nX: {}\r\n\r\n",
            "y".repeat(MAX_HEADER_BYTES)
        );
        for piece in [1000, long.len()] {
            let refused = run(read_all(long.as_bytes(), piece));
            assert_eq!(refused, Err(FormError::HeadersTooLong));
            let unended = run(read_all(&long.as_bytes()[..long.len() - 4], piece));
            assert_eq!(unended, Err(FormError::HeadersTooLong));
        }
    }

    #[test]
    fn boundaries_come_only_from_form_data_types() {
        let boundary = |t: &str| form_boundary(t);
        assert_eq!(
            boundary("multipart/form-data; boundary=ab-c").as_deref(),
            Some("ab-c")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/mixed; boundary=x"), None);
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"\""), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn only_a_beginning_of_the_delimiter_is_kept_back() {
        let delimiter = b"\r\n--B";
        assert_eq!(partial_delimiter_at_end(b"abc", delimiter), 0);
        assert_eq!(partial_delimiter_at_end(b"abc\r", delimiter), 1);
        assert_eq!(partial_delimiter_at_end(b"abc\r\n-", delimiter), 3);
        assert_eq!(partial_delimiter_at_end(b"abc\r\n--", delimiter), 4);
        assert_eq!(partial_delimiter_at_end(b"\r\n-x", delimiter), 0);
        assert_eq!(partial_delimiter_at_end(b"\r\r\n", delimiter), 2);
        assert_eq!(partial_delimiter_at_end(b"", delimiter), 0);
    }

    #[test]
    fn disposition_reads_names_quoted_or_not() {
        let head = |v: &str| disposition(v.as_bytes());
        let named = |name: &str, file: Option<&str>| PartHead {
            name: Some(name.to_owned()),
            file_name: file.map(str::to_owned),
        };
        assert_eq!(
            head(r#"form-data; name="file"; filename="a b.zip""#),
            named("file", Some("a b.zip"))
        );
        assert_eq!(
            head("form-data; name=file; filename=a.zip"),
            named("file", Some("a.zip"))
        );
        assert_eq!(
            head(r#"form-data; filename="x"; name="n""#),
            named("n", Some("x"))
        );
        assert_eq!(head(r#"form-data; name="a;b\"c""#), named("a;b\"c", None));
        assert_eq!(
            head(r#"form-data; NAME = "n" ; filename*=UTF-8''x"#),
            named("n", None)
        );
        assert_eq!(head(r#"form-data; name="你好""#), named("你好", None));
        assert_eq!(head(r#"form-data; name="open"#), named("open", None));
        assert_eq!(head("form-data"), PartHead::default());
        assert_eq!(head("form-data; ; name"), PartHead::default());
        assert_eq!(
            head("form-data; filename=x; name=y; name=z"),
            named("y", Some("x"))
        );
    }
}
