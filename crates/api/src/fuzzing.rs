//! Entry points for the fuzz targets in `fuzz/`: the upload form parser run
//! on any body, exactly as the upload route runs it, minus the storage.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use bytes::Bytes;
use futures::stream;

use crate::error::{ApiError, ApiResult};
use crate::multipart::{FormReader, PartHead};
use crate::routes::uploads::{
    download_name, malformed, read_form, read_zip_head, too_large, upload_boundary, FileSink,
};

/// What the parser made of an upload body.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedUpload {
    /// The download name and size of the `file` part, if there was one.
    pub file: Option<(String, u64)>,
    pub source_deployment: Option<String>,
    pub source_version: Option<String>,
    pub template_deployment_id: Option<String>,
}

/// Reads the file part to the end instead of storing it.
struct CountingSink {
    limit: u64,
}

impl FileSink for CountingSink {
    type Stored = (String, u64);

    async fn store(&self, head: &PartHead, form: &mut FormReader) -> ApiResult<(String, u64)> {
        let name = download_name(head.file_name.as_deref());
        let mut size = 0;
        let mut chunk = Some(Bytes::from(read_zip_head(form).await?));
        while let Some(bytes) = chunk {
            size += bytes.len() as u64;
            if size > self.limit {
                return Err(too_large(self.limit));
            }
            chunk = form.chunk().await.map_err(malformed)?;
        }
        Ok((name, size))
    }
}

/// Parses `body` sent with this `Content-Type` header as the upload route
/// does, arriving in pieces of `piece` bytes (the last may be shorter). A
/// refusal is returned as the status and message the client would get.
pub async fn parse_upload(
    content_type: &[u8],
    body: &[u8],
    piece: usize,
    limit: u64,
) -> Result<ParsedUpload, (u16, String)> {
    let pieces: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(piece.max(1))
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    parse_body(content_type, Body::from_stream(stream::iter(pieces)), limit).await
}

async fn parse_body(
    content_type: &[u8],
    body: Body,
    limit: u64,
) -> Result<ParsedUpload, (u16, String)> {
    let refused = |error: ApiError| {
        let (status, message) = error.status_and_message();
        (status.as_u16(), message)
    };
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_bytes(content_type)
        .map_err(|_| (400, "not a valid header value".to_owned()))?;
    headers.insert(header::CONTENT_TYPE, content_type);
    let boundary = upload_boundary(&headers).map_err(refused)?;
    let form = FormReader::new(&boundary, body);
    let form = read_form(form, &CountingSink { limit })
        .await
        .map_err(|(error, _)| refused(error))?;
    Ok(ParsedUpload {
        file: form.file,
        source_deployment: form.source_deployment,
        source_version: form.source_version,
        template_deployment_id: form.template_deployment_id,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use futures::{stream, StreamExt};

    use super::{parse_body, parse_upload};

    /// A text part is refused once it passes its limit, not read to its end
    /// first: this one never ends.
    #[tokio::test]
    async fn an_endless_text_part_is_refused_without_reading_it_all() {
        let head = b"--B\r\nContent-Disposition: form-data; name=\"source_version\"\r\n\r\n";
        let endless =
            stream::iter(std::iter::once(head.to_vec()).chain(std::iter::repeat(vec![b'v'; 4096])))
                .map(Ok::<_, std::io::Error>);
        let parse = parse_body(TYPE, Body::from_stream(endless), 1024);
        let (status, message) = tokio::time::timeout(Duration::from_secs(10), parse)
            .await
            .expect("the part was read on and on")
            .unwrap_err();
        assert_eq!(status, 400);
        assert!(
            message.contains("`source_version` part is too long"),
            "{message}"
        );
    }

    const TYPE: &[u8] = b"multipart/form-data; boundary=B";

    #[tokio::test]
    async fn parses_a_form_and_refuses_broken_ones_with_a_4xx() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../a b.zip\"\r\n\r\nPK\x03\x04rest\r\n--B--\r\n";
        for piece in [1, 2, 5, body.len()] {
            let parsed = parse_upload(TYPE, body, piece, 1024).await.unwrap();
            assert_eq!(parsed.file, Some(("a_b.zip".to_owned(), 8)));
            let cut = parse_upload(TYPE, &body[..60], piece, 1024)
                .await
                .unwrap_err();
            assert_eq!(cut.0, 400, "{}", cut.1);
            let large = parse_upload(TYPE, body, piece, 6).await.unwrap_err();
            assert_eq!(large.0, 413, "{}", large.1);
        }
        let mut latin1 =
            b"--B\r\nContent-Disposition: form-data; name=\"source_version\"\r\n\r\n".to_vec();
        latin1.extend_from_slice(&[0xC2; 200]);
        latin1.extend_from_slice(b"\r\n--B--\r\n");
        let not_utf8 = parse_upload(TYPE, &latin1, 7, 1024).await.unwrap_err();
        assert_eq!(not_utf8.0, 400, "{}", not_utf8.1);
        assert!(not_utf8.1.contains("not UTF-8"), "{}", not_utf8.1);
        let no_boundary = parse_upload(b"multipart/form-data", body, 4, 1024)
            .await
            .unwrap_err();
        assert_eq!(no_boundary.0, 400, "{}", no_boundary.1);
    }
}
