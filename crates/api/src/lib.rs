//! The HTTP API: every route under `/v2.1` (and the same under `/v2`, which
//! newer clients use), token authentication, and the JSON error mapping.

mod auth;
mod error;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod multipart;
mod openapi;
mod paths;
mod rendered;
mod routes;
mod token_cache;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Instrument, Level};
use ubiops_domain::instance_types::InstanceTypeCatalog;
use ubiops_domain::secrets::Keyring;
use ubiops_files::FileStore;
use ubiops_storage::Store;

pub use auth::Principal;
pub use error::ApiError;
pub use rendered::{Renderings, DEFAULT_RENDERED_BYTES};
pub use token_cache::{TokenCache, DEFAULT_TOKEN_CACHE_TTL};

/// What every handler can reach, behind one reference count: axum clones the
/// state for every extractor and layer of every request, and cloning each
/// service handle instead showed up in the profile of a GET.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services and settings requests use.
pub struct Services {
    pub store: Store,
    /// The organization reported for projects created without one.
    pub organization_name: Arc<str>,
    /// The instance types versions may use.
    pub instance_types: Arc<InstanceTypeCatalog>,
    /// Seals secret environment variables.
    pub keyring: Arc<Keyring>,
    /// Where deployment files are stored.
    pub files: FileStore,
    /// The largest deployment file accepted, in bytes.
    pub max_upload_bytes: u64,
    /// How long an upload stays claimed without news from its server: it is
    /// renewed while bytes arrive, so only an upload whose server died (or
    /// whose client stalled this long) runs out, and the sweep removes it.
    pub upload_lease: Duration,
    /// Tokens verified recently (shared by every clone of the state).
    pub tokens: Arc<TokenCache>,
    /// Runs requests on the deployments' instances.
    pub serving: Arc<ubiops_runtime::Serving>,
    /// Deployments and variable lists as rendered, by the versions of their
    /// rows (shared by every clone).
    pub rendered: Arc<Renderings>,
}

/// `UBIOPS_UPLOAD_LEASE_SECONDS` unset.
pub const DEFAULT_UPLOAD_LEASE: Duration = Duration::from_secs(120);

impl AppState {
    /// Deletes the stored files of rows just deleted, without making the
    /// request wait; what fails stays queued for the worker's next sweep.
    pub fn purge_deleted_files(&self) {
        let (store, files) = (self.store.clone(), self.files.clone());
        tokio::spawn(async move {
            if let Err(error) = ubiops_worker::purge_deleted_objects(&store, &files).await {
                tracing::warn!(%error, "could not purge deleted files; the sweep will retry");
            }
        });
    }
}

/// The largest JSON request body. The biggest valid one (200 fields with
/// large widget configurations) is far below this; file uploads have their
/// own, configurable limit (`AppState::max_upload_bytes`).
pub const MAX_JSON_BODY_BYTES: usize = 2 * 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application as a router, ready to serve.
pub fn router(state: AppState) -> Router {
    let (api, document) = routes::api_routes(state).split_for_parts();
    let api = api.layer(Extension(openapi::Document::new(document)));
    Router::new()
        .nest("/v2.1", api.clone())
        .nest("/v2", api)
        .merge(routes::status_routes())
        .merge(ubiops_dashboard::routes())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(middleware::from_fn(run_to_completion))
        .layer(CatchPanicLayer::custom(routes::panic_response))
        .layer(request_logging())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Runs each request in a task of its own, so that a client going away does
/// not cut its database work short at an arbitrary point: sqlx cannot undo a
/// `BEGIN` (or a `COMMIT`) cancelled after it was sent, and the pooled
/// connection would then stay inside a transaction that later requests write
/// into without it ever being committed. The request still ends early when it
/// reads a body its client stopped sending. A panic is passed on to
/// `CatchPanicLayer`, outside this layer.
async fn run_to_completion(request: axum::extract::Request, next: Next) -> Response {
    match tokio::spawn(next.run(request).in_current_span()).await {
        Ok(response) => response,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => {
            tracing::error!(%error, "request task did not finish");
            ApiError::Internal.into_response()
        }
    }
}

/// One span per request with method, path (never the query string or headers,
/// so no secret can reach the log), request id and the proxy's client address.
fn request_logging() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&Request<axum::body::Body>) -> tracing::Span + Clone,
    tower_http::trace::DefaultOnRequest,
    DefaultOnResponse,
> {
    TraceLayer::new_for_http()
        .make_span_with(|request: &Request<axum::body::Body>| {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %header("x-request-id"),
                forwarded_for = %header("x-forwarded-for"),
            )
        })
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Micros),
        )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "done" }))
            .route("/boom", get(|| async { panic!("boom") as &str }))
            .layer(middleware::from_fn(run_to_completion))
            .layer(CatchPanicLayer::custom(routes::panic_response))
    }

    async fn call(path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_request_run_in_its_own_task_answers_as_usual() {
        assert_eq!(call("/ok").await, (StatusCode::OK, "done".to_owned()));
    }

    #[tokio::test]
    async fn a_panic_in_the_request_task_is_still_a_json_500() {
        let (status, body) = call("/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains(r#""error":"#), "{body}");
    }
}
