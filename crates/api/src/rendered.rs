//! Responses kept as the JSON they were rendered to, by the version of what
//! they show, so that a list whose rows have not changed is answered from
//! memory after one query for ids and versions (`Store::list_deployments`),
//! GET one deployment skips decoding and encoding a row it has rendered
//! before, and a variable list costs one lookup of its scope's versions
//! (`Store::list_variables`).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use serde::Serialize;
use ubiops_storage::{Listed, RowStamp, ScopeStamp};

use crate::error::{ApiError, ApiResult};

/// How much rendered JSON is kept: tens of thousands of deployments, or
/// variable lists, of typical size. A cache that is full admits a new
/// rendering only on its second read (`quick_cache`'s CLOCK-Pro), so a
/// working set near the budget warms slowly: the budget leaves room above the
/// benchmark's seeded data (see BENCHMARKS.md).
pub const DEFAULT_RENDERED_BYTES: u64 = 32 * 1024 * 1024;

/// Rendered responses. Nothing is ever invalidated: a change makes a new
/// version, so the old rendering is simply no longer asked for and is evicted
/// in time. What a rendering shows beyond its rows (a deployment's project
/// name) never changes for those rows.
pub struct Renderings {
    items: Cache<Rendering, Bytes, ByLength>,
}

/// What a kept rendering is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rendering {
    /// One deployment row version.
    Deployment(RowStamp),
    /// The variable list of a scope, as of the versions of its rows.
    Variables(ScopeStamp),
}

impl From<RowStamp> for Rendering {
    fn from(stamp: RowStamp) -> Self {
        Rendering::Deployment(stamp)
    }
}

impl From<ScopeStamp> for Rendering {
    fn from(stamp: ScopeStamp) -> Self {
        Rendering::Variables(stamp)
    }
}

#[derive(Clone)]
struct ByLength;

impl Weighter<Rendering, Bytes> for ByLength {
    fn weight(&self, _: &Rendering, rendered: &Bytes) -> u64 {
        rendered.len() as u64
    }
}

/// Rendered deployments are about 500 bytes; the estimate only sizes tables.
const TYPICAL_ITEM_BYTES: u64 = 512;

impl Renderings {
    pub fn new(capacity_bytes: u64) -> Self {
        let estimated_items = (capacity_bytes / TYPICAL_ITEM_BYTES).max(1);
        Renderings {
            items: Cache::with_weighter(
                usize::try_from(estimated_items).unwrap_or(usize::MAX),
                capacity_bytes,
                ByLength,
            ),
        }
    }

    /// The kept rendering of this version, if any.
    pub(crate) fn get(&self, stamp: impl Into<Rendering>) -> Option<Bytes> {
        self.items.get(&stamp.into())
    }

    /// The JSON of one item: a kept rendering as it is, a row read rendered
    /// with `render` and kept.
    pub(crate) fn json_one<T, R: Serialize, S: Into<Rendering>>(
        &self,
        item: Listed<T, Bytes, S>,
        render: impl Fn(T) -> R,
    ) -> ApiResult<RenderedJson> {
        self.rendering(item, &render).map(RenderedJson)
    }

    /// A JSON array of the listed items, each as [`json_one`](Self::json_one).
    pub(crate) fn json_array<T, R: Serialize>(
        &self,
        listed: Vec<Listed<T, Bytes>>,
        render: impl Fn(T) -> R,
    ) -> ApiResult<RenderedJson> {
        let items = listed
            .into_iter()
            .map(|item| self.rendering(item, &render))
            .collect::<ApiResult<Vec<Bytes>>>()?;
        let length = 2 + items.iter().map(|item| item.len() + 1).sum::<usize>();
        let mut body = BytesMut::with_capacity(length);
        body.put_u8(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.put_u8(b',');
            }
            body.put_slice(item);
        }
        body.put_u8(b']');
        Ok(RenderedJson(body.freeze()))
    }

    fn rendering<T, R: Serialize, S: Into<Rendering>>(
        &self,
        item: Listed<T, Bytes, S>,
        render: impl Fn(T) -> R,
    ) -> ApiResult<Bytes> {
        match item {
            Listed::Known(rendered) => Ok(rendered),
            Listed::Read(stamp, row) => {
                let rendered = to_json(&render(row))?;
                self.items.insert(stamp.into(), rendered.clone());
                Ok(rendered)
            }
        }
    }
}

fn to_json(item: &impl Serialize) -> ApiResult<Bytes> {
    let json = serde_json::to_vec(item).map_err(|error| {
        tracing::error!(%error, "could not render a list item");
        ApiError::Internal
    })?;
    Ok(Bytes::from(json))
}

/// JSON already serialized.
pub(crate) struct RenderedJson(Bytes);

impl RenderedJson {
    pub(crate) fn empty_array() -> Self {
        RenderedJson(Bytes::from_static(b"[]"))
    }
}

impl IntoResponse for RenderedJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}
