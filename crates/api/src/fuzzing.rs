//! Entry points for the fuzz targets in `fuzz/`: the upload form parser run
//! on any body, exactly as the upload route runs it, minus the storage.

use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart};
use axum::http::{header, Request};

use crate::error::{ApiError, ApiResult};
use crate::paced_body::paced;
use crate::routes::revisions::{
    download_name, multipart_error, read_form, read_zip_head, too_large, FileSink,
};

/// What the parser made of an upload body.
#[derive(Debug)]
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

    async fn store(&self, mut field: Field<'_>) -> ApiResult<(String, u64)> {
        let name = download_name(field.file_name());
        let mut size = 0;
        let mut chunk = Some(read_zip_head(&mut field, self.limit).await?.into());
        while let Some(bytes) = chunk {
            size += <bytes::Bytes>::len(&bytes) as u64;
            if size > self.limit {
                return Err(too_large(self.limit));
            }
            chunk = field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, self.limit))?;
        }
        Ok((name, size))
    }
}

/// Parses `body` sent with this `Content-Type` header as the upload route
/// does. A refusal is returned as the status and message the client would get.
pub async fn parse_upload(
    content_type: &[u8],
    body: Vec<u8>,
    limit: u64,
) -> Result<ParsedUpload, (u16, String)> {
    parse_body(content_type, Body::from(body), limit).await
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
    let request = Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(|_| (400, "not a valid header value".to_owned()))?;
    let multipart = Multipart::from_request(paced(request), &())
        .await
        .map_err(|rejection| (rejection.status().as_u16(), rejection.body_text()))?;
    let form = read_form(multipart, limit, &CountingSink { limit })
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
        let parsed = parse_upload(TYPE, body.to_vec(), 1024).await.unwrap();
        assert_eq!(parsed.file, Some(("a_b.zip".to_owned(), 8)));
        let cut = parse_upload(TYPE, body[..60].to_vec(), 1024)
            .await
            .unwrap_err();
        assert_eq!(cut.0, 400, "{}", cut.1);
        let large = parse_upload(TYPE, body.to_vec(), 6).await.unwrap_err();
        assert_eq!(large.0, 413, "{}", large.1);
        let mut latin1 =
            b"--B\r\nContent-Disposition: form-data; name=\"source_version\"\r\n\r\n".to_vec();
        latin1.extend_from_slice(&[0xC2; 200]);
        latin1.extend_from_slice(b"\r\n--B--\r\n");
        let not_utf8 = parse_upload(TYPE, latin1, 1024).await.unwrap_err();
        assert_eq!(not_utf8.0, 400, "{}", not_utf8.1);
        assert!(not_utf8.1.contains("not UTF-8"), "{}", not_utf8.1);
        let no_boundary = parse_upload(b"multipart/form-data", body.to_vec(), 1024)
            .await
            .unwrap_err();
        assert_eq!(no_boundary.0, 400, "{}", no_boundary.1);
    }
}
