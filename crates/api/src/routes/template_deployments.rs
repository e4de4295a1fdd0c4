//! `GET /template-deployments` for newer clients: on this server any
//! deployment the token can read is a template once its default version has
//! an active revision (what `template_deployment_id` copies in an upload).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use ubiops_domain::environment::environment_name;
use ubiops_storage::TemplateDeployment;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Serialize, ToSchema)]
struct TemplateResponse {
    /// The deployment's id: pass it as `template_deployment_id`.
    id: Uuid,
    details: TemplateDetails,
}

/// What the template is: where it lives and what it takes and gives.
#[derive(Serialize, ToSchema)]
struct TemplateDetails {
    project: String,
    deployment: String,
    description: Option<String>,
    version: String,
    language: String,
    environment: String,
    input_type: String,
    output_type: String,
}

impl From<TemplateDeployment> for TemplateResponse {
    fn from(t: TemplateDeployment) -> Self {
        TemplateResponse {
            id: t.id,
            details: TemplateDetails {
                environment: environment_name(&t.language),
                project: t.project,
                deployment: t.deployment,
                description: t.description,
                version: t.version,
                language: t.language,
                input_type: t.input_type,
                output_type: t.output_type,
            },
        }
    }
}

#[utoipa::path(get, path = "/template-deployments", operation_id = "template_deployments_list",
    tag = "Template deployments", responses((status = 200, body = Vec<TemplateResponse>)))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<TemplateResponse>>> {
    let templates = state
        .store
        .list_template_deployments(principal.project_scope.as_deref())
        .await?;
    Ok(Json(templates.into_iter().map(Into::into).collect()))
}
