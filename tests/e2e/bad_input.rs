//! Malformed requests against every endpoint, as a table: each row is sent
//! byte for byte (so `..`, `%2F`, invalid UTF-8 and cut-off bodies reach the
//! server as written) and must get its status, an `{"error"}` body whose
//! message says what to fix, and leave the database and the object store
//! exactly as they were.

use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

use crate::builds::{deployment_zip, upload};

const P: &str = "/projects/p";
const D: &str = "/projects/p/deployments/d";
const V: &str = "/projects/p/deployments/d/versions/v1";
const BOUNDARY: &str = "BadInputBoundary";

/// One malformed request and what the server must answer.
struct Case {
    method: &'static str,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    status: u16,
    /// A part of the error message that tells the user what to fix.
    says: String,
}

impl Case {
    fn new(method: &'static str, path: impl Into<String>) -> Self {
        Case {
            method,
            path: path.into(),
            content_type: None,
            body: Vec::new(),
            status: 0,
            says: String::new(),
        }
    }

    fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type.to_owned());
        self.body = body.into();
        self
    }

    fn json(self, body: Value) -> Self {
        self.raw("application/json", body.to_string())
    }

    fn multipart(self, body: Vec<u8>) -> Self {
        self.raw(&format!("multipart/form-data; boundary={BOUNDARY}"), body)
    }

    fn expect(mut self, status: u16, says: impl Into<String>) -> Self {
        self.status = status;
        self.says = says.into();
        self
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(100).collect();
        let path: String = self.path.chars().take(100).collect();
        format!("{} {path} {body}", self.method)
    }

    async fn send(&self, app: &TestApp) -> Result<ubiops_test_support::Response, String> {
        let mut head = format!(
            "{} /v2.1{} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Token {}\r\nContent-Length: {}",
            self.method,
            self.path,
            app.admin_token,
            self.body.len()
        );
        if let Some(content_type) = &self.content_type {
            head.push_str(&format!("\r\nContent-Type: {content_type}"));
        }
        app.try_send_raw(head.as_bytes(), &self.body).await
    }
}

fn get(path: impl Into<String>) -> Case {
    Case::new("GET", path)
}
fn post(path: impl Into<String>) -> Case {
    Case::new("POST", path)
}
fn patch(path: impl Into<String>) -> Case {
    Case::new("PATCH", path)
}
fn delete(path: impl Into<String>) -> Case {
    Case::new("DELETE", path)
}

/// A multipart/form-data body of `(name, filename, contents)` parts.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, contents) in parts {
        let file = file_name
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(contents);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `[[[...]]]` nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn labels(count: usize) -> Value {
    (0..count)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn fields(count: usize) -> Value {
    (0..count)
        .map(|i| json!({"name": format!("f{i}"), "data_type": "int"}))
        .collect::<Vec<_>>()
        .into()
}

fn deployment(extra: Value) -> Value {
    let mut body = json!({"name": "d2", "input_type": "plain", "output_type": "plain"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

fn variable(extra: Value) -> Value {
    let mut body = json!({"name": "B", "value": "x", "secret": false});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

fn project_cases() -> Vec<Case> {
    vec![
        post("/projects")
            .json(json!({}))
            .expect(400, "missing field `name`"),
        post("/projects")
            .json(json!({"name": 5}))
            .expect(400, "name: invalid type: integer `5`, expected a string"),
        post("/projects")
            .json(json!({"name": "Bad_Name"}))
            .expect(400, "Invalid project name 'Bad_Name'"),
        post("/projects")
            .json(json!({"name": "x".repeat(65)}))
            .expect(400, "use 1-64 lowercase letters"),
        post("/projects")
            .json(json!({"name": "a\u{0}b"}))
            .expect(400, "Invalid project name"),
        post("/projects")
            .json(json!({"name": "../etc"}))
            .expect(400, "Invalid project name"),
        post("/projects")
            .json(json!({"name": "q", "colour": "red"}))
            .expect(400, "unknown field `colour`"),
        post("/projects")
            .json(json!({"name": "q", "organization_name": "o".repeat(257)}))
            .expect(400, "`organization_name` must be at most 256 characters"),
        post("/projects")
            .json(json!({"name": "q", "organization_name": 7}))
            .expect(400, "organization_name: invalid type"),
        post("/projects")
            .json(json!({"name": "q", "advanced_permissions": "yes"}))
            .expect(400, "advanced_permissions: invalid type"),
        post("/projects")
            .json(json!([]))
            .expect(400, "invalid type: sequence, expected a JSON object"),
        post("/projects")
            .json(Value::Null)
            .expect(400, "invalid type: null"),
        post("/projects")
            .json(json!({"name": "p"}))
            .expect(400, "already exists"),
        post("/projects")
            .raw("text/plain", r#"{"name": "q"}"#)
            .expect(415, "Content-Type: application/json"),
        post("/projects").expect(415, "Content-Type: application/json"),
        post("/projects")
            .raw("application/json", b"{\"name\": \"q\xff\"}".to_vec())
            .expect(400, "not valid JSON"),
        post("/projects")
            .raw("application/json", r#"{"name": "q""#)
            .expect(400, "not valid JSON"),
        post("/projects")
            .raw("application/json", "")
            .expect(400, "not valid JSON"),
        post("/projects")
            .raw(
                "application/json",
                format!(r#"{{"name": {}}}"#, nested(10_000)),
            )
            .expect(400, "name: invalid type: sequence, expected a string"),
        post("/projects")
            .raw("application/json", r#"{"name": "q"} trailing"#)
            .expect(400, "trailing characters"),
        get("/projects/..").expect(404, "not found"),
        get("/projects/a%2Fb").expect(404, "not found"),
        get("/projects/%2E%2E%2F%2E%2E%2Fetc").expect(404, "not found"),
        get("/projects/%FF").expect(400, "UTF-8"),
        get("/projects/a%00b").expect(400, "NUL"),
        get(format!("/projects/{}", "x".repeat(5000))).expect(404, "not found"),
        delete("/projects/ghost").expect(404, "not found"),
        delete("/projects/..").expect(404, "not found"),
        delete("/projects/a%2Fb").expect(404, "not found"),
    ]
}

fn deployment_cases() -> Vec<Case> {
    let create = format!("{P}/deployments");
    let structured = |input_fields: Value| {
        deployment(json!({"input_type": "structured", "input_fields": input_fields}))
    };
    vec![
        post(&create).json(json!({})).expect(400, "missing field `name`"),
        post(&create).json(json!({"name": "d2"})).expect(400, "missing field `input_type`"),
        post(&create).json(deployment(json!({"input_type": "json"}))).expect(400, "input_type: unknown variant `json`, expected `structured` or `plain`"),
        post(&create).json(deployment(json!({"name": "D2"}))).expect(400, "Invalid deployment name 'D2'"),
        post(&create).json(deployment(json!({"name": ""}))).expect(400, "Invalid deployment name"),
        post(&create).json(deployment(json!({"name": "d".repeat(65)}))).expect(400, "use 1-64 lowercase letters"),
        post(&create).json(deployment(json!({"name": 123}))).expect(400, "name: invalid type"),
        post(&create).json(deployment(json!({"name": "a/b"}))).expect(400, "Invalid deployment name"),
        post(&create).json(deployment(json!({"name": "d"}))).expect(400, "already exists"),
        post(&create).json(deployment(json!({"description": "x".repeat(401)}))).expect(400, "`description` is too long: at most 400"),
        post(&create).json(deployment(json!({"description": "a\u{0}b"}))).expect(400, "`description` must not contain NUL"),
        post(&create).json(deployment(json!({"labels": {"bad key": "v"}}))).expect(400, "Invalid label key 'bad key'"),
        post(&create).json(deployment(json!({"labels": {"k": ""}}))).expect(400, "Invalid value for label 'k'"),
        post(&create).json(deployment(json!({"labels": {"k": "a,b"}}))).expect(400, "without commas"),
        post(&create).json(deployment(json!({"labels": {"k": 5}}))).expect(400, "labels.k: invalid type"),
        post(&create).json(deployment(json!({"labels": ["k"]}))).expect(400, "labels: invalid type"),
        post(&create).json(deployment(json!({"labels": labels(51)}))).expect(400, "Too many labels: at most 50"),
        post(&create).json(deployment(json!({"labels": {"k".repeat(65): "v"}}))).expect(400, "Invalid label key"),
        post(&create).json(deployment(json!({"input_type": "structured"}))).expect(400, "`input_fields` is required when `input_type` is structured"),
        post(&create).json(deployment(json!({"input_fields": fields(1)}))).expect(400, "`input_fields` must be empty when `input_type` is plain"),
        post(&create).json(structured(json!([{"name": "x", "data_type": "integer"}]))).expect(400, "unknown variant `integer`"),
        post(&create).json(structured(json!([{"name": "x", "data_type": "int"}, {"name": "x", "data_type": "int"}]))).expect(400, "appears more than once"),
        post(&create).json(structured(json!([{"name": "", "data_type": "int"}]))).expect(400, "Invalid field name ''"),
        post(&create).json(structured(json!([{"name": " x", "data_type": "int"}]))).expect(400, "surrounding spaces"),
        post(&create).json(structured(json!([{"name": "x"}]))).expect(400, "missing field `data_type`"),
        post(&create).json(structured(json!([{"name": "x", "data_type": "int", "widget": {"type": "knob"}}]))).expect(400, "Widget type 'knob' of field 'x' is not available"),
        post(&create).json(structured(json!([{"name": "x", "data_type": "int", "widget": {"configuration": {"a": 1}}}]))).expect(400, "has a configuration but no `type`"),
        post(&create).json(structured(json!([{"name": "x", "data_type": "int", "widget": {"type": "slider", "configuration": {"a": "x".repeat(17 * 1024)}}}]))).expect(400, "is too large"),
        post(&create).json(structured(json!([{"name": "x", "data_type": "int", "colour": 1}]))).expect(400, "unknown field `colour`"),
        post(&create).json(structured(fields(201))).expect(400, "Too many input_fields: at most 200"),
        post(&create).json(structured(json!({"name": "x"}))).expect(400, "input_fields: invalid type: map, expected a sequence"),
        post(&create).json(deployment(json!({"colour": "red"}))).expect(400, "unknown field `colour`"),
        post("/projects/ghost/deployments").json(deployment(json!({}))).expect(404, "not found"),
        post(&create).raw("text/plain", deployment(json!({})).to_string()).expect(415, "Content-Type: application/json"),
        post(&create).raw("application/json", format!(r#"{{"name": "d2", "labels": {}}}"#, nested(5_000))).expect(400, "labels: invalid type: sequence, expected a map"),
        // Widget configurations take any JSON: there the nesting itself is refused.
        post(&create).raw("application/json", format!(r#"{{"name": "d2", "input_type": "structured", "output_type": "plain", "input_fields": [{{"name": "x", "data_type": "int", "widget": {{"type": "slider", "configuration": {{"a": {}}}}}}}]}}"#, nested(10_000))).expect(400, "recursion limit exceeded"),
        get(format!("{create}?labels=nocolon")).expect(400, "Invalid labels filter 'nocolon'"),
        get(format!("{create}?labels=:v")).expect(400, "use 'key:value' pairs"),
        get(format!("{create}?labels=a:b&labels=c:d")).expect(400, "duplicate field `labels`"),
        get(format!("{create}?labels=%FF")).expect(400, "Invalid labels filter"),
        get("/projects/p%2Fx/deployments").expect(404, "not found"),
        get(format!("{P}/deployments/..")).expect(404, "not found"),
        get(format!("{P}/deployments/%2E%2E%2F%2E%2E")).expect(404, "not found"),
        patch(D).json(json!({"name": "Bad"})).expect(400, "Invalid deployment name 'Bad'"),
        patch(D).json(json!({"default_version": "ghost"})).expect(400, "ghost"),
        patch(D).json(json!({"default_version": "Bad Version"})).expect(400, "Invalid version name"),
        patch(D).json(json!({"input_type": "structured"})).expect(400, "unknown field `input_type`"),
        patch(D).json(json!({"labels": "team:ml"})).expect(400, "labels: invalid type"),
        patch(D).json(json!({"description": 5})).expect(400, "description: invalid type"),
        patch(D).json(json!({"output_fields": fields(1)})).expect(400, "`output_fields` must be empty when `output_type` is plain"),
        patch(D).raw("application/json", "[1, 2").expect(400, "expected a JSON object"),
        patch(D).raw("application/x-www-form-urlencoded", "name=x").expect(415, "Content-Type: application/json"),
        patch(format!("{P}/deployments/ghost")).json(json!({})).expect(404, "not found"),
        delete(format!("{P}/deployments/ghost")).expect(404, "not found"),
        delete(format!("{P}/deployments/%FF%FE")).expect(400, "UTF-8"),
        delete(format!("{P}/deployments/..")).expect(404, "not found"),
    ]
}

fn audit_cases() -> Vec<Case> {
    let audit = format!("{D}/audit");
    vec![
        get(format!("{audit}?limit=ten")).expect(400, "Invalid `limit` 'ten'"),
        get(format!("{audit}?limit=0")).expect(400, "Invalid `limit`"),
        get(format!("{audit}?limit=99999999999999999999")).expect(400, "Invalid `limit`"),
        get(format!("{audit}?offset=-1")).expect(
            400,
            "Invalid `offset` '-1': use a whole number of at least 0",
        ),
        get(format!("{audit}?action=explode")).expect(
            400,
            "Invalid `action` 'explode': use one of create, update, delete, info",
        ),
        get(format!("{audit}?limit=%FF")).expect(400, "Invalid `limit`"),
        get(format!("{P}/deployments/ghost/audit")).expect(404, "not found"),
    ]
}

fn version_cases() -> Vec<Case> {
    let create = format!("{D}/versions");
    let version = |extra: Value| {
        let mut body = json!({"version": "v2"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    vec![
        post(&create)
            .json(json!({}))
            .expect(400, "`version` is required"),
        post(&create)
            .json(json!({"version": "V1"}))
            .expect(400, "Invalid version name 'V1'"),
        post(&create)
            .json(json!({"version": "v".repeat(65)}))
            .expect(400, "Invalid version name"),
        post(&create)
            .json(json!({"version": "v1"}))
            .expect(400, "already exists"),
        post(&create)
            .json(version(json!({"language": "cobol"})))
            .expect(400, "Unsupported language 'cobol': use one of python3.7"),
        post(&create)
            .json(version(json!({"memory_allocation": 1000})))
            .expect(400, "Unsupported memory_allocation 1000: use one of 256"),
        post(&create)
            .json(version(json!({"memory_allocation": "big"})))
            .expect(
                400,
                "memory_allocation: invalid type: string \"big\", expected i32",
            ),
        post(&create)
            .json(version(json!({"memory_allocation": 99_999_999_999_i64})))
            .expect(400, "memory_allocation: invalid value"),
        post(&create)
            .json(version(json!({"memory_allocation": 1.5})))
            .expect(400, "memory_allocation: invalid type: floating point"),
        post(&create)
            .json(version(json!({"instance_type": "huge"})))
            .expect(400, "Unknown instance_type 'huge': use one of"),
        post(&create)
            .json(version(
                json!({"instance_type": "512mb", "memory_allocation": 1024}),
            ))
            .expect(400, "send one of them, or matching values"),
        post(&create)
            .json(version(
                json!({"minimum_instances": 10, "maximum_instances": 5}),
            ))
            .expect(
                400,
                "minimum_instances (10) must not exceed maximum_instances (5)",
            ),
        post(&create)
            .json(version(json!({"maximum_instances": -1})))
            .expect(400, "maximum_instances must be between 0 and 1000, got -1"),
        post(&create)
            .json(version(json!({"maximum_idle_time": 5})))
            .expect(400, "maximum_idle_time must be between 10 and 3600"),
        post(&create)
            .json(version(json!({"request_retention_mode": "forever"})))
            .expect(400, "unknown variant `forever`"),
        post(&create)
            .json(version(json!({"request_retention_time": -1})))
            .expect(400, "request_retention_time must be between 0"),
        post(&create)
            .json(version(json!({"maximum_queue_size_batch": 2_000_000_000})))
            .expect(
                400,
                "maximum_queue_size_batch must be between 0 and 10000000",
            ),
        post(&create)
            .json(version(json!({"static_ip": "yes"})))
            .expect(400, "static_ip: invalid type"),
        post(&create)
            .json(version(json!({"colour": "red"})))
            .expect(400, "unknown field `colour`"),
        post(&create)
            .json(version(json!({"monitoring": "m".repeat(65)})))
            .expect(400, "`monitoring` is too long: at most 64"),
        post(&create)
            .json(version(json!({"labels": {"k": "v\n"}})))
            .expect(400, "Invalid value for label 'k'"),
        post(&create)
            .json(version(json!({"description": ["a"]})))
            .expect(400, "description: invalid type"),
        post(format!("{P}/deployments/ghost/versions"))
            .json(version(json!({})))
            .expect(404, "not found"),
        patch(V)
            .json(json!({"language": "python3.11"}))
            .expect(400, "cannot be changed after a version is created"),
        patch(V)
            .json(json!({"version": "Bad"}))
            .expect(400, "Invalid version name 'Bad'"),
        patch(V)
            .json(json!({"maximum_instances": "many"}))
            .expect(400, "maximum_instances: invalid type"),
        patch(V).json(json!({"minimum_instances": 6})).expect(
            400,
            "minimum_instances (6) must not exceed maximum_instances (5)",
        ),
        patch(V)
            .raw("text/plain", "{}")
            .expect(415, "Content-Type: application/json"),
        get(format!("{create}?labels=x")).expect(400, "Invalid labels filter 'x'"),
        get(format!("{create}/..")).expect(404, "not found"),
        get(format!("{create}/v1%2F..%2F..")).expect(404, "not found"),
        delete(format!("{create}/ghost")).expect(404, "not found"),
    ]
}

fn variable_cases(secret_id: &str) -> Vec<Case> {
    let scopes = [P.to_owned(), D.to_owned(), V.to_owned()];
    let [project, deployment, version] = scopes.map(|s| format!("{s}/environment-variables"));
    vec![
        post(&project)
            .json(json!({}))
            .expect(400, "missing field `name`"),
        post(&project)
            .json(variable(json!({"name": "1A"})))
            .expect(400, "Invalid variable name '1A'"),
        post(&project)
            .json(variable(json!({"name": "A_"})))
            .expect(400, "not ending with an underscore"),
        post(&project)
            .json(variable(json!({"name": "A".repeat(65)})))
            .expect(400, "Invalid variable name"),
        post(&project)
            .json(json!({"name": "B", "value": "x"}))
            .expect(400, "missing field `secret`"),
        post(&project)
            .json(variable(json!({"secret": "yes"})))
            .expect(400, "secret: invalid type"),
        post(&project)
            .json(variable(json!({"value": 5})))
            .expect(400, "value: invalid type"),
        post(&project)
            .json(variable(json!({"value": "x".repeat(64 * 1024 + 1)})))
            .expect(400, "too long: at most 65536 bytes"),
        post(&project)
            .json(variable(json!({"value": "a\u{0}b"})))
            .expect(400, "must not contain NUL"),
        post(&project)
            .json(variable(json!({"name": "S"})))
            .expect(400, "already exists"),
        post(&deployment)
            .json(variable(json!({"name": "B-C"})))
            .expect(400, "Invalid variable name 'B-C'"),
        post(&deployment)
            .raw(
                "application/json",
                b"{\"name\": \"B\", \"value\": \"\xc3\x28\", \"secret\": false}".to_vec(),
            )
            .expect(400, "not valid JSON"),
        post(&version)
            .json(variable(json!({"colour": 1})))
            .expect(400, "unknown field `colour`"),
        post(&version)
            .raw("text/plain", variable(json!({})).to_string())
            .expect(415, "Content-Type: application/json"),
        get(format!("{project}/not-a-uuid")).expect(404, "Environment variable not found"),
        get(format!("{project}/{}", uuid::Uuid::new_v4())).expect(404, "not found"),
        get(format!("{version}/..")).expect(404, "not found"),
        get(format!("{deployment}/%2E%2E%2F{secret_id}")).expect(404, "not found"),
        // The project's variable is not the deployment's.
        get(format!("{deployment}/{secret_id}")).expect(404, "not found"),
        patch(format!("{project}/{secret_id}"))
            .json(json!({"name": "S", "value": "x", "secret": false}))
            .expect(400, "cannot be made non-secret"),
        patch(format!("{project}/{secret_id}"))
            .json(json!({}))
            .expect(400, "missing field `name`"),
        patch(format!("{project}/{secret_id}"))
            .json(json!({"name": "s p", "value": "x", "secret": true}))
            .expect(400, "Invalid variable name 's p'"),
        delete(format!("{deployment}/not-a-uuid")).expect(404, "not found"),
        delete(format!("{version}/{secret_id}")).expect(404, "not found"),
        post(format!("{D}/copy-environment-variables"))
            .json(json!({}))
            .expect(400, "missing field `source_deployment`"),
        post(format!("{D}/copy-environment-variables"))
            .json(json!({"source_deployment": "ghost"}))
            .expect(404, "not found"),
        post(format!("{D}/copy-environment-variables"))
            .json(json!({"source_deployment": 5}))
            .expect(400, "source_deployment: invalid type"),
        post(format!("{V}/copy-environment-variables"))
            .json(json!({"source_deployment": "d", "source_version": "ghost"}))
            .expect(404, "not found"),
        post(format!("{V}/copy-environment-variables"))
            .json(json!({"source_deployment": "d", "colour": 1}))
            .expect(400, "unknown field `colour`"),
    ]
}

fn revision_cases(revision: &str, build: &str) -> Vec<Case> {
    let upload = format!("{V}/revisions");
    let not_zip: &[u8] = b"this is not a zip";
    let zip = deployment_zip();
    // Multipart bodies cut off inside the file part, and before the closing
    // boundary. (A client that drops the connection mid-upload gets no
    // answer; its partial file is swept, see builds.rs.)
    let mut cut = form(&[("file", Some("d.zip"), &zip)]);
    cut.truncate(cut.len() / 2);
    let mut unclosed = form(&[("file", Some("d.zip"), &zip)]);
    unclosed.truncate(unclosed.len() - format!("--{BOUNDARY}--\r\n").len());
    vec![
        get(format!("{upload}/not-a-uuid")).expect(404, "Revision not found"),
        get(format!("{upload}/{}", uuid::Uuid::new_v4())).expect(404, "not found"),
        get(format!("{D}/versions/ghost/revisions/{revision}/download")).expect(404, "not found"),
        get(format!("{upload}/..%2F..%2F{revision}/download")).expect(404, "not found"),
        post(format!("{upload}/not-a-uuid/rebuild")).expect(404, "Revision not found"),
        get(format!("{V}/builds/not-a-uuid")).expect(404, "Build not found"),
        get(format!("{V}/builds/{revision}")).expect(404, "not found"),
        patch(format!("{V}/builds/{build}"))
            .json(json!({"status": "running"}))
            .expect(400, "can only be set to 'cancelled'"),
        patch(format!("{V}/builds/{build}"))
            .json(json!({}))
            .expect(400, "missing field `status`"),
        patch(format!("{V}/builds/{build}"))
            .json(json!({"status": "cancelled", "colour": 1}))
            .expect(400, "unknown field `colour`"),
        patch(format!("{V}/builds/{build}"))
            .json(json!({"status": 1}))
            .expect(400, "status: invalid type"),
        patch(format!("{V}/builds/{build}"))
            .raw("text/plain", "cancelled")
            .expect(415, "Content-Type: application/json"),
        post(&upload)
            .json(json!({"file": "x"}))
            .expect(400, "multipart/form-data part `file`"),
        post(&upload)
            .raw("text/plain", zip.clone())
            .expect(400, "multipart/form-data part `file`"),
        post(&upload)
            .raw(
                "multipart/form-data",
                form(&[("file", Some("d.zip"), &zip)]),
            )
            .expect(400, "multipart/form-data part `file`"),
        post(&upload)
            .multipart(format!("--{BOUNDARY}--\r\n").into_bytes())
            .expect(400, "No deployment file"),
        post(&upload)
            .multipart(form(&[("file", Some("d.zip"), not_zip)]))
            .expect(400, "must be a zip archive"),
        post(&upload)
            .multipart(form(&[("file", Some("d.zip"), b"")]))
            .expect(400, "must be a zip archive"),
        post(&upload)
            .multipart(form(&[("file", Some("../../../etc/passwd"), not_zip)]))
            .expect(400, "must be a zip archive"),
        post(&upload)
            .multipart(form(&[("colour", None, b"red")]))
            .expect(400, "Unknown part 'colour'"),
        post(&upload)
            .multipart(form(&[
                ("file", Some("a.zip"), &zip),
                ("file", Some("b.zip"), &zip),
            ]))
            .expect(400, "Send only one `file` part"),
        post(&upload)
            .multipart(form(&[
                ("file", Some("a.zip"), &zip),
                ("source_deployment", None, b"d"),
                ("source_version", None, b"v1"),
            ]))
            .expect(400, "not both"),
        post(&upload)
            .multipart(form(&[("source_deployment", None, b"d")]))
            .expect(400, "must be given together"),
        post(&upload)
            .multipart(form(&[("template_deployment_id", None, b"nope")]))
            .expect(400, "must be the UUID of a deployment"),
        post(&upload)
            .multipart(form(&[(
                "template_deployment_id",
                None,
                uuid::Uuid::new_v4().to_string().as_bytes(),
            )]))
            .expect(404, "Template deployment not found"),
        post(&upload)
            .multipart(form(&[
                (
                    "template_deployment_id",
                    None,
                    uuid::Uuid::new_v4().to_string().as_bytes(),
                ),
                ("source_deployment", None, b"d"),
                ("source_version", None, b"v1"),
            ]))
            .expect(400, "not both"),
        post(&upload)
            .multipart(form(&[
                ("source_deployment", None, b"ghost"),
                ("source_version", None, b"v1"),
            ]))
            .expect(404, "not found"),
        post(&upload)
            .multipart(form(&[
                ("source_deployment", None, b"../d"),
                ("source_version", None, b"v1"),
            ]))
            .expect(404, "not found"),
        post(&upload)
            .multipart(form(&[
                ("source_deployment", None, b"d"),
                ("source_version", None, b"ghost"),
            ]))
            .expect(404, "not found"),
        post(&upload)
            .multipart(form(&[(
                "source_deployment",
                None,
                "d".repeat(300).as_bytes(),
            )]))
            .expect(400, "The `source_deployment` part is too long"),
        post(&upload)
            .multipart(cut)
            .expect(400, "malformed or was cut off"),
        post(&upload)
            .multipart(unclosed)
            .expect(400, "malformed or was cut off"),
        post(&upload)
            .multipart(b"garbage that is no multipart body".to_vec())
            .expect(400, "No deployment file"),
        post(format!("{D}/versions/ghost/revisions"))
            .multipart(form(&[("file", Some("d.zip"), &zip)]))
            .expect(404, "not found"),
        post(format!("{D}/versions/..%2F..%2Fx/revisions"))
            .multipart(form(&[("file", Some("d.zip"), &zip)]))
            .expect(404, "not found"),
    ]
}

/// Project `p` with a secret variable, deployment `d` with version `v1`
/// and one uploaded (queued, never built) revision.
async fn setup() -> (TestApp, String, String, String) {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    let secret = app
        .post(
            &format!("{P}/environment-variables"),
            json!({"name": "S", "value": "hidden", "secret": true}),
        )
        .await;
    assert_eq!(secret.status, StatusCode::CREATED, "{}", secret.body);
    let uploaded = upload(&app, V, deployment_zip(), "d.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let id = |value: &Value| value.as_str().unwrap().to_owned();
    (
        app,
        id(&secret.body["id"]),
        id(&uploaded.body["revision"]),
        id(&uploaded.body["build"]),
    )
}

#[tokio::test]
async fn malformed_requests_get_a_helpful_4xx_and_change_nothing() {
    let (app, secret_id, revision, build) = setup().await;
    let cases: Vec<Case> = [
        project_cases(),
        deployment_cases(),
        audit_cases(),
        version_cases(),
        variable_cases(&secret_id),
        revision_cases(&revision, &build),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let before = app.snapshot().await;
    assert!(
        before["objects"].as_object().is_some_and(|o| o.len() == 1),
        "the snapshot covers the uploaded file: {}",
        before["objects"]
    );
    let mut failures = Vec::new();
    for case in &cases {
        let response = match case.send(&app).await {
            Ok(response) => response,
            Err(problem) => {
                failures.push(format!("{}\n    {problem}", case.describe()));
                continue;
            }
        };
        let message = response.body["error"].as_str();
        let status_ok = response.status.as_u16() == case.status;
        let message_ok = message.is_some_and(|m| m.contains(&case.says));
        if !status_ok || !message_ok {
            failures.push(format!(
                "{}\n    expected {} containing {:?}\n    got {} {}",
                case.describe(),
                case.status,
                case.says,
                response.status,
                response.body
            ));
        }
        let after = app.snapshot().await;
        if after != before {
            panic!("{} changed the stored state:\n{after}", case.describe());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed requests were mishandled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} malformed requests refused as expected", cases.len());
}

/// `body` in HTTP/1.1 chunks of 64 KiB (no `Content-Length`).
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

#[tokio::test]
async fn json_bodies_over_2_mib_get_413_with_or_without_a_length() {
    let (app, ..) = setup().await;
    let before = app.snapshot().await;
    let over = ubiops_api::MAX_JSON_BODY_BYTES + 1024;
    let big = json!({"name": "x".repeat(over)}).to_string();
    let expected = "The request body is larger than the limit of 2 MiB for JSON requests";
    let with_length = app
        .send(
            app.client()
                .post(app.url("/v2.1/projects"))
                .header("Authorization", format!("Token {}", app.admin_token))
                .header("Content-Type", "application/json")
                .body(big.clone()),
        )
        .await;
    assert_eq!(with_length.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(with_length.error(), expected);
    let head = format!(
        "POST /v2.1{P}/environment-variables HTTP/1.1\r\nHost: localhost\r\nAuthorization: Token {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        app.admin_token
    );
    let streamed = app
        .send_raw(head.as_bytes(), &chunked(big.as_bytes()))
        .await;
    assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(streamed.error(), expected);
    // Just under the limit is read, and refused for what it says.
    let under = json!({"name": "x".repeat(ubiops_api::MAX_JSON_BODY_BYTES - 100)}).to_string();
    let response = app
        .post("/projects", serde_json::from_str(&under).unwrap())
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.error().contains("Invalid project name"));
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_whether_declared_or_streamed() {
    let app = TestApp::spawn_with(ubiops_test_support::TestOptions {
        max_upload_bytes: 256 * 1024,
        ..Default::default()
    })
    .await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    let before = app.snapshot().await;
    let expected = "The deployment file is larger than the limit of 262144 bytes";
    let mut zip = b"PK\x03\x04".to_vec();
    zip.resize(300 * 1024, 1);
    let body = form(&[("file", Some("d.zip"), &zip)]);
    let head = |framing: &str| {
        format!(
            "POST /v2.1{V}/revisions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Token {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}",
            app.admin_token
        )
    };
    // Declared: refused from the header, before the body is read.
    let declared = app
        .send_raw(head("Content-Length: 1073741824").as_bytes(), &body[..1024])
        .await;
    assert_eq!(
        declared.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        declared.body
    );
    assert!(
        declared.error().starts_with(expected),
        "{}",
        declared.error()
    );
    // Streamed without a length: refused once the limit is passed.
    let streamed = app
        .send_raw(
            head("Transfer-Encoding: chunked").as_bytes(),
            &chunked(&body),
        )
        .await;
    assert_eq!(
        streamed.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        streamed.body
    );
    assert!(
        streamed.error().starts_with(expected),
        "{}",
        streamed.error()
    );
    assert_eq!(
        app.snapshot().await,
        before,
        "no revision and no stored object"
    );
}
