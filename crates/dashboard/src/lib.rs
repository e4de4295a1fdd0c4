//! The web dashboard: `/` serves its page and `/dashboard/*` its scripts and
//! styles, all embedded in the binary at compile time.
//!
//! The page is a static front end (plain ES modules, no build step) that
//! signs in with an API token kept in the browser session and does
//! everything through the public JSON API, so a token sees and may do in the
//! dashboard exactly what it may do with the clients. The server holds no
//! session and renders nothing per user. docs/DASHBOARD.md says why.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::{EmbeddedFile, RustEmbed};
use tower_http::compression::CompressionLayer;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Where the assets are served; the page refers to them relative to itself,
/// so the dashboard also works behind a proxy that mounts it under a prefix.
pub const ASSETS_PREFIX: &str = "/dashboard";

/// Everything the page may load: its own scripts, styles and API calls, and
/// the object URLs it makes for downloads. Data is only ever inserted as text
/// (no `innerHTML`), and this keeps any injected markup from running anyway.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its assets, gzipped for browsers that accept it.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route(&format!("{ASSETS_PREFIX}/{{*file}}"), get(asset))
        .layer(CompressionLayer::new())
}

async fn page(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    // index.html is the page, served at `/` only.
    if file == "index.html" {
        return not_found();
    }
    serve(&file, &headers)
}

/// The file with a validator: browsers ask again each time (`no-cache`) and
/// get `304` while the binary is the same, so a new release is seen at once.
/// The tag is weak: it names the content, whichever encoding carries it.
fn serve(file: &str, headers: &HeaderMap) -> Response {
    let Some(EmbeddedFile { data, metadata }) = Assets::get(file) else {
        return not_found();
    };
    let etag = format!("W/\"{}\"", hex(&metadata.sha256_hash()[..16]));
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|sent| sent.to_str().ok())
        .flat_map(|sent| sent.split(','))
        .any(|sent| sent.trim() == etag || sent.trim() == "*");
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
        (
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY.to_owned(),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let content_type = HeaderValue::from_static(content_type(file));
    (
        common,
        [(header::CONTENT_TYPE, content_type)],
        data.into_owned(),
    )
        .into_response()
}

/// The dashboard only ships these kinds of file; anything else is a mistake
/// in `assets/` that the tests catch.
fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"error": "No such file of the dashboard"}"#,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types() {
        let page = get("/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let html = to_bytes(page.into_body(), usize::MAX).await.unwrap();
        let html = String::from_utf8(html.to_vec()).unwrap();
        for referenced in ["dashboard/app.js", "dashboard/style.css"] {
            assert!(
                html.contains(referenced),
                "index.html should load {referenced}"
            );
        }
        let script = get("/dashboard/app.js", None).await;
        assert_eq!(script.status(), StatusCode::OK);
        assert_eq!(
            script.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }

    #[test]
    fn the_page_preloads_every_module() {
        let page = Assets::get("index.html").unwrap();
        let page = std::str::from_utf8(&page.data).unwrap();
        for file in Assets::iter().filter(|file| file.ends_with(".js")) {
            let preload = format!(r#"<link rel="modulepreload" href="dashboard/{file}">"#);
            assert!(page.contains(&preload), "index.html should preload {file}");
        }
    }

    #[tokio::test]
    async fn every_asset_has_a_known_type() {
        for file in Assets::iter() {
            assert_ne!(content_type(&file), "application/octet-stream", "{file}");
        }
    }

    #[tokio::test]
    async fn text_is_gzipped_for_browsers_that_accept_it() {
        let request = Request::get("/dashboard/app.js").header(header::ACCEPT_ENCODING, "gzip, br");
        let response = routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let plain = get("/dashboard/app.js", None).await;
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[tokio::test]
    async fn an_unchanged_asset_is_answered_304() {
        let first = get("/dashboard/app.js", None).await;
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(
            get("/dashboard/app.js", Some(&etag)).await.status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            get("/dashboard/app.js", Some("\"other\"")).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn unknown_files_and_the_page_under_the_prefix_are_404() {
        for path in [
            "/dashboard/nope.js",
            "/dashboard/index.html",
            "/dashboard/../Cargo.toml",
        ] {
            assert_eq!(
                get(path, None).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}
