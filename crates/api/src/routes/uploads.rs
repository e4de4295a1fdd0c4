//! revisions_file_upload: a deployment file streamed from a multipart body
//! to object storage (or copied from another version or a template) as a new
//! revision, whose build is queued.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use ubiops_files::FileStore;
use ubiops_storage::{NewRevision, StoredFile, Trigger};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::multipart::{form_boundary, FormError, FormReader, PartHead};
use crate::paths::{resolve_deployment, VersionName};
use crate::AppState;

const ZIP_SIGNATURE: &[u8] = b"PK\x03\x04";

/// Relative to the version's path.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    // The upload enforces its own, configurable limit while streaming.
    OpenApiRouter::new().routes(routes!(upload).layer(DefaultBodyLimit::disable()))
}

#[derive(Serialize, ToSchema)]
struct UploadResponse {
    success: bool,
    revision: Uuid,
    build: Uuid,
}

/// The multipart parts `read_form` accepts, for the document. Send `file`,
/// or `source_deployment` with `source_version`, or `template_deployment_id`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct UploadParts {
    /// The deployment package: a zip with `deployment.py` (or `deployment.R`).
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
    /// Copy the active file of this deployment's `source_version` (same project).
    source_deployment: Option<String>,
    source_version: Option<String>,
    /// Copy the file of this deployment's default version (UUID of a deployment).
    template_deployment_id: Option<String>,
}

/// What the multipart body asked for besides (or instead of) a file; `F` is
/// what became of the `file` part (a stored [`NewRevision`] when serving).
pub(crate) struct UploadForm<F> {
    pub(crate) file: Option<F>,
    pub(crate) source_deployment: Option<String>,
    pub(crate) source_version: Option<String>,
    pub(crate) template_deployment_id: Option<String>,
}

impl<F> Default for UploadForm<F> {
    fn default() -> Self {
        UploadForm {
            file: None,
            source_deployment: None,
            source_version: None,
            template_deployment_id: None,
        }
    }
}

/// Where [`read_form`] streams the `file` part, whose data `form` gives
/// next. Parsing is kept apart from storing so that the parser can be fuzzed
/// without a server (`fuzz/`).
pub(crate) trait FileSink {
    type Stored;
    async fn store(&self, head: &PartHead, form: &mut FormReader) -> ApiResult<Self::Stored>;
}

/// Streams the file part to object storage.
struct ObjectStoreSink<'a>(&'a AppState);

impl FileSink for ObjectStoreSink<'_> {
    type Stored = NewRevision;
    async fn store(&self, head: &PartHead, form: &mut FormReader) -> ApiResult<NewRevision> {
        stream_file(self.0, head, form).await
    }
}

/// Uploads a deployment file (or copies one) as a new revision and queues its build.
#[utoipa::path(post, path = "/revisions", operation_id = "revisions_file_upload", tag = "Revisions",
    request_body(content = UploadParts, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = UploadResponse),
        (status = 400, description = "No source, an unknown part, or a file that is not a zip", body = ErrorBody),
        (status = 413, description = "The file is larger than `UBIOPS_MAX_UPLOAD_MB`", body = ErrorBody),
    ))]
async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    path: VersionName,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let version = path.resolve(&state).await?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.max_upload_bytes + 64 * 1024) {
        return Err(too_large(state.max_upload_bytes));
    }
    let form = FormReader::new(&upload_boundary(&headers)?, body);
    let form = read_form(form, &ObjectStoreSink(&state)).await;
    let form = match form {
        Ok(form) => form,
        Err((error, stored)) => {
            if let Some(stored) = stored {
                discard(&state, &stored.object_key).await;
            }
            return Err(error);
        }
    };
    let (file, trigger) = match resolve_source(&state, &principal, &path, form).await {
        Ok(source) => source,
        Err((error, stored)) => {
            if let Some(stored) = stored {
                discard(&state, &stored.object_key).await;
            }
            return Err(error);
        }
    };
    let created = state
        .store
        .create_revision(version.as_ref(), &file, trigger, &principal.actor)
        .await;
    match created {
        Ok((revision, build)) => Ok((
            StatusCode::CREATED,
            Json(UploadResponse {
                success: true,
                revision: revision.id,
                build: build.id,
            }),
        )),
        Err(error) => {
            discard(&state, &file.object_key).await;
            Err(error.into())
        }
    }
}

/// The form's boundary, from a `multipart/form-data` content type.
pub(crate) fn upload_boundary(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(form_boundary)
        .ok_or_else(|| {
            ApiError::bad_request(
                "Send a deployment file as the multipart/form-data part `file`, or the parts \
                 `source_deployment` and `source_version`, or `template_deployment_id`",
            )
        })
}

/// An error, and the file already stored that must now be discarded.
type FormFailure<F = NewRevision> = (ApiError, Option<F>);

/// The longest text part accepted.
const MAX_TEXT_BYTES: usize = 256;

/// Reads the parts of an upload form, handing the `file` part to `sink`.
pub(crate) async fn read_form<S: FileSink>(
    mut reader: FormReader,
    sink: &S,
) -> Result<UploadForm<S::Stored>, FormFailure<S::Stored>> {
    let mut form = UploadForm::default();
    loop {
        let head = match reader.next_part().await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(form),
            // A multipart body without any part (what 4.x sends with no file).
            Err(_) if form.is_empty() => return Err((no_source(), None)),
            Err(error) => return Err((malformed(error), form.file)),
        };
        let name = head.name.clone().unwrap_or_default();
        let text_slot = match name.as_str() {
            "file" if form.file.is_some() => {
                return Err((
                    ApiError::bad_request("Send only one `file` part"),
                    form.file,
                ));
            }
            "file" => {
                let stored = sink.store(&head, &mut reader).await;
                form.file = Some(stored.map_err(|e| (e, None))?);
                continue;
            }
            "source_deployment" => &mut form.source_deployment,
            "source_version" => &mut form.source_version,
            "template_deployment_id" => &mut form.template_deployment_id,
            other => {
                let message = format!(
                    "Unknown part '{}': use `file`, `source_deployment`, `source_version` or `template_deployment_id`",
                    other.chars().take(40).collect::<String>()
                );
                return Err((ApiError::bad_request(message), form.file));
            }
        };
        match read_text(&mut reader, &name).await {
            Ok(text) => *text_slot = Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
            Err(error) => return Err((error, form.file)),
        }
    }
}

/// A text part, read only as far as the longest accepted.
async fn read_text(reader: &mut FormReader, name: &str) -> ApiResult<String> {
    let mut text = Vec::new();
    while let Some(chunk) = reader.chunk().await.map_err(malformed)? {
        if text.len() + chunk.len() > MAX_TEXT_BYTES {
            return Err(ApiError::bad_request(format!(
                "The `{name}` part is too long"
            )));
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text)
        .map_err(|_| ApiError::bad_request(format!("The `{name}` part is not UTF-8 text")))
}

impl<F> UploadForm<F> {
    fn is_empty(&self) -> bool {
        self.file.is_none()
            && self.source_deployment.is_none()
            && self.source_version.is_none()
            && self.template_deployment_id.is_none()
    }
}

fn no_source() -> ApiError {
    ApiError::bad_request(
        "No deployment file: send the part `file`, or `source_deployment` and `source_version`, or `template_deployment_id`",
    )
}

/// The first bytes of the `file` part, once they show the zip signature: a
/// body that does not start like a zip is refused before anything is stored.
pub(crate) async fn read_zip_head(form: &mut FormReader) -> ApiResult<Vec<u8>> {
    // The first chunk may be shorter than the signature: gather four bytes.
    let mut head = Vec::new();
    while head.len() < ZIP_SIGNATURE.len() {
        match form.chunk().await.map_err(malformed)? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    if !head.starts_with(ZIP_SIGNATURE) {
        return Err(ApiError::bad_request(
            "The deployment file must be a zip archive (it does not start with the zip signature PK\\x03\\x04)",
        ));
    }
    Ok(head)
}

/// Streams the `file` part to object storage as it arrives.
async fn stream_file(
    state: &AppState,
    part: &PartHead,
    form: &mut FormReader,
) -> ApiResult<NewRevision> {
    let file_name = download_name(part.file_name.as_deref());
    let limit = state.max_upload_bytes;
    let head = read_zip_head(form).await?;
    let id = Uuid::new_v4();
    let key = FileStore::revision_key(id);
    state
        .store
        .begin_upload(&key, state.upload_lease.as_secs_f64())
        .await?;
    let mut upload = match state.files.start_upload(&key).await {
        Ok(upload) => upload,
        Err(error) => {
            discard(state, &key).await;
            return Err(error.into());
        }
    };
    // An upload's lease is renewed while bytes arrive; if the server dies, the
    // sweep removes the partial file once the lease has run out.
    let renew_every = state.upload_lease / 4;
    let streamed = async {
        let mut renewed = Instant::now();
        let mut chunk = Some(bytes::Bytes::from(head));
        while let Some(bytes) = chunk {
            if upload.bytes_written + bytes.len() as u64 > limit {
                return Err(too_large(limit));
            }
            upload.write(&bytes).await?;
            if renewed.elapsed() > renew_every {
                state
                    .store
                    .renew_upload(&key, state.upload_lease.as_secs_f64())
                    .await?;
                renewed = Instant::now();
            }
            chunk = form.chunk().await.map_err(malformed)?;
        }
        Ok(())
    }
    .await;
    match streamed {
        Ok(()) => {
            let size = match upload.finish().await {
                Ok(size) => size,
                Err(error) => {
                    discard(state, &key).await;
                    return Err(error.into());
                }
            };
            Ok(NewRevision {
                id,
                object_key: key,
                file_name,
                size_bytes: size as i64,
            })
        }
        Err(error) => {
            if let Err(abort_error) = upload.abort().await {
                tracing::warn!(key, error = %abort_error, "could not abort a failed upload");
            }
            discard(state, &key).await;
            Err(error)
        }
    }
}

/// Decides where the file comes from: the uploaded part, a copy of another
/// version's active revision, or a template deployment's.
async fn resolve_source(
    state: &AppState,
    principal: &Principal,
    path: &VersionName,
    form: UploadForm<NewRevision>,
) -> Result<(NewRevision, Trigger), FormFailure> {
    let has_copy = form.source_deployment.is_some() || form.source_version.is_some();
    let has_template = form.template_deployment_id.is_some();
    if let Some(file) = form.file {
        if has_copy || has_template {
            let error =
                ApiError::bad_request("Send either a `file` or a source to copy from, not both");
            return Err((error, Some(file)));
        }
        return Ok((file, Trigger::Upload));
    }
    let fail = |error: ApiError| (error, None);
    let (source, trigger) = match (form.source_deployment, form.source_version, form.template_deployment_id) {
        (Some(deployment), Some(version), None) => {
            // In the project of the path, whose scope was checked.
            let source = resolve_deployment(state, &path.project_name, &deployment)
                .await
                .map_err(fail)?;
            let file = state.store.active_file(source.id, &version).await.map_err(|e| fail(e.into()))?;
            (file, Trigger::CopyFromVersion)
        }
        (None, None, Some(template)) => (template_source(state, principal, &template).await.map_err(fail)?, Trigger::Template),
        (None, None, None) => return Err(fail(no_source())),
        (_, _, Some(_)) => {
            return Err(fail(ApiError::bad_request(
                "Send either `template_deployment_id` or `source_deployment` with `source_version`, not both",
            )))
        }
        _ => {
            return Err(fail(ApiError::bad_request(
                "`source_deployment` and `source_version` must be given together",
            )))
        }
    };
    let id = Uuid::new_v4();
    let key = FileStore::revision_key(id);
    state
        .store
        .begin_upload(&key, state.upload_lease.as_secs_f64())
        .await
        .map_err(|e| fail(e.into()))?;
    let copied = state.files.copy(&source.object_key, &key).await;
    let new = NewRevision {
        id,
        object_key: key,
        file_name: source.file_name,
        size_bytes: 0,
    };
    match copied {
        Ok(()) => Ok((new, trigger)),
        Err(error) => Err((error.into(), Some(new))),
    }
}

/// A template is any deployment on this server the token can read; others
/// are "not found" so that their existence does not leak.
async fn template_source(
    state: &AppState,
    principal: &Principal,
    raw: &str,
) -> ApiResult<StoredFile> {
    let not_found = || ApiError::not_found("Template deployment not found");
    let id = Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request("`template_deployment_id` must be the UUID of a deployment")
    })?;
    let (project, file) = match state.store.template_file(id).await {
        Err(ubiops_storage::StorageError::NotFound(_)) => return Err(not_found()),
        other => other?,
    };
    if !principal.may_access(&project) {
        return Err(not_found());
    }
    file.ok_or_else(|| {
        ApiError::bad_request(
            "The template deployment has no default version with a successfully built file",
        )
    })
}

/// Removes a stored file that will not become a revision, and its pending
/// upload record. If storage fails, the record stays and the sweep retries.
async fn discard(state: &AppState, key: &str) {
    match state.files.delete(key).await {
        Ok(()) => {
            if let Err(error) = state.store.end_upload(key).await {
                tracing::warn!(key, %error, "could not clear a pending upload record");
            }
        }
        Err(error) => {
            tracing::warn!(key, %error, "could not delete a discarded upload; the sweep will retry")
        }
    }
}

pub(crate) fn too_large(limit: u64) -> ApiError {
    const MIB: u64 = 1024 * 1024;
    // Whole MiB as configured (UBIOPS_MAX_UPLOAD_MB); exact bytes otherwise,
    // rather than a misleading "0 MiB".
    let shown = if limit >= MIB && limit.is_multiple_of(MIB) {
        format!("{} MiB", limit / MIB)
    } else {
        format!("{limit} bytes")
    };
    ApiError::Client(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("The deployment file is larger than the limit of {shown}"),
    )
}

pub(crate) fn malformed(error: FormError) -> ApiError {
    ApiError::bad_request(format!(
        "The multipart body is malformed or was cut off: {error}"
    ))
}

/// The name a download is offered under: the uploaded name without any path,
/// spaces or quotes (the clients read it with `filename=['"]?([^'"\s]+)`).
pub(crate) fn download_name(uploaded: Option<&str>) -> String {
    let base = uploaded
        .and_then(|name| name.rsplit(['/', '\\']).next())
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let stem = cleaned.trim_end_matches(".zip").trim_matches('.');
    if stem.is_empty() {
        "deployment.zip".to_owned()
    } else {
        format!("{stem}.zip")
    }
}

#[cfg(test)]
mod tests {
    use super::download_name;

    #[test]
    fn download_names_are_safe_for_the_clients() {
        assert_eq!(download_name(Some("model.zip")), "model.zip");
        assert_eq!(download_name(Some("my model.zip")), "my_model.zip");
        assert_eq!(download_name(Some("../../etc/passwd")), "passwd.zip");
        assert_eq!(download_name(Some("C:\\x\\a\"b.zip")), "a_b.zip");
        assert_eq!(download_name(Some("")), "deployment.zip");
        assert_eq!(download_name(None), "deployment.zip");
        assert_eq!(download_name(Some("..")), "deployment.zip");
    }
}
