//! The OpenAPI 3 document, generated from the same declarations as the router
//! so that the two cannot drift apart: every handler carries
//! `#[utoipa::path]` with its success response, and is routed with
//! `utoipa_axum::routes!`, which puts it into the router and the document at
//! once. What every operation shares is filled in here from the operation
//! itself, once: the token requirement (by the function that adds the token
//! middleware), path parameters (from the path template), and the
//! `{"error"}` responses that the extractors and the middleware produce.
//!
//! To add a route: give its handler `#[utoipa::path(...)]` and add it to its
//! module's router with `.routes(routes!(handler))`. Nothing else.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Extension;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::OpenApi as _;

use crate::error::ErrorBody;

/// The name of the `Authorization: Token <token>` security scheme.
pub const TOKEN_SCHEME: &str = "token";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "UbiOps Deployments API (ubiops-server)",
        description = "The UbiOps Deployments API v2.1 as served by ubiops-server. Every \
            operation is available under both server prefixes, `/v2.1` and `/v2`. Errors are \
            `{\"error\": \"<message>\"}` with the status code given for each operation.",
    ),
    servers((url = "/v2.1"), (url = "/v2")),
    components(schemas(ErrorBody)),
)]
struct BaseDocument;

/// An empty document with the title, servers and shared components, for the
/// router to fill in.
pub fn base() -> OpenApi {
    let mut document = BaseDocument::openapi();
    let components = document.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        TOKEN_SCHEME.to_owned(),
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "`Token <your API token>` (`Bearer <token>` works too). Create tokens with \
             `ubiops-server token create`.",
        ))),
    );
    for &(name, description) in SHARED_ERRORS {
        components
            .responses
            .insert(name.to_owned(), error_response(description));
    }
    document
}

/// The `{"error"}` responses many operations share, by component name.
const SHARED_ERRORS: &[(&str, &str)] = &[
    (
        "BadRequest",
        "The request is invalid; the message says what to fix",
    ),
    (
        "Unauthorized",
        "No, a malformed, an unknown or a revoked API token",
    ),
    ("Forbidden", "The API token has no access to this project"),
    ("NotFound", "An object named in the path does not exist"),
    ("PayloadTooLarge", "The request body is too large"),
    (
        "UnsupportedMediaType",
        "The body is not sent as `application/json`",
    ),
    (
        "Unavailable",
        "The database or object storage is unreachable; retry later",
    ),
];

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// Documents what the token middleware adds to every operation of a router:
/// the security requirement, 401, and 503 (the token lookup needs the
/// database). Called by the function that adds the middleware.
pub fn document_token_required(document: &mut OpenApi) {
    for operation in operations(document) {
        operation
            .security
            .get_or_insert_with(Vec::new)
            .push(SecurityRequirement::new(TOKEN_SCHEME, Vec::<String>::new()));
        add_error(operation, "401", "Unauthorized");
        add_error(operation, "503", "Unavailable");
    }
}

/// Fills in what follows from each operation's own declaration: its path
/// parameters (from the path template) and the errors of its extractors
/// (path, query and JSON body).
pub fn complete(document: &mut OpenApi) {
    for (path, item) in document.paths.paths.iter_mut() {
        let names = path_parameter_names(path);
        for operation in item_operations(item) {
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            for (index, name) in names.iter().enumerate() {
                if !parameters
                    .iter()
                    .any(|p| p.name == *name && p.parameter_in == ParameterIn::Path)
                {
                    parameters.insert(index, path_parameter(name));
                }
            }
            let has_query = parameters
                .iter()
                .any(|p| p.parameter_in == ParameterIn::Query);
            if !names.is_empty() {
                add_error(operation, "400", "BadRequest");
                add_error(operation, "404", "NotFound");
            }
            if names.iter().any(|name| name == "project_name") {
                add_error(operation, "403", "Forbidden");
            }
            if has_query {
                add_error(operation, "400", "BadRequest");
            }
            let json_body = operation
                .request_body
                .as_ref()
                .is_some_and(|body| body.content.contains_key("application/json"));
            if json_body {
                add_error(operation, "400", "BadRequest");
                add_error(operation, "413", "PayloadTooLarge");
                add_error(operation, "415", "UnsupportedMediaType");
            }
            if operation
                .parameters
                .as_ref()
                .is_some_and(|parameters| parameters.is_empty())
            {
                operation.parameters = None;
            }
        }
    }
}

/// Renames the operations of a router that is nested at several scopes
/// (`list` becomes `deployment_environment_variables_list`), so that every
/// operation id stays unique and matches the UbiOps client's method name.
pub fn prefix_operation_ids(document: &mut OpenApi, prefix: &str) {
    for operation in operations(document) {
        if let Some(id) = operation.operation_id.as_mut() {
            *id = format!("{prefix}_{id}");
        }
    }
}

/// What the path parameters mean, wherever they appear.
const PATH_PARAMETERS: &[(&str, &str)] = &[
    ("project_name", "Name of the project"),
    ("deployment_name", "Name of the deployment"),
    ("version", "Name of the version"),
    ("id", "UUID of the environment variable"),
    ("revision_id", "UUID of the revision"),
    ("build_id", "UUID of the build"),
    ("request_id", "UUID of the deployment request"),
    ("environment_name", "Name of the environment"),
    ("tag_name", "Name of the environment tag"),
    ("group_id", "UUID of the instance type group"),
];

fn path_parameter(name: &str) -> Parameter {
    let description = PATH_PARAMETERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, description)| *description);
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(description)
        .schema(Some(Schema::Object(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::String)
                .build(),
        )))
        .build()
}

fn path_parameter_names(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

fn add_error(operation: &mut Operation, status: &str, component: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| Ref::from_response_name(component).into());
}

fn operations(document: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    document.paths.paths.values_mut().flat_map(item_operations)
}

fn item_operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The finished document, serialized once and served as is.
#[derive(Clone)]
pub struct Document(Arc<Bytes>);

impl Document {
    pub fn new(mut document: OpenApi) -> Self {
        complete(&mut document);
        let json = document
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        Document(Arc::new(Bytes::from(json)))
    }
}

/// This document: every operation with its parameters, bodies, responses and
/// the `{"error"}` responses with their status codes.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "Service",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)),
)]
pub async fn serve_document(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], (*document.0).clone())
}
