//! GET one deployment, GET one version and variable lists are batched across
//! requests (`ubiops_storage`'s `batch.rs`): lookups that arrive together
//! share one query. Each request must still get its own answer, misses
//! included, however the lookups were grouped.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use ubiops_test_support::{Response, TestApp};

const PROJECTS: [&str; 2] = ["batch-a", "batch-b"];
const DEPLOYMENTS: usize = 4;

/// Each deployment has a variable whose value names it, and each version one
/// that names the version.
async fn seed(app: &TestApp) {
    for project in PROJECTS {
        app.create_project(project).await;
        for d in 0..DEPLOYMENTS {
            let deployment = format!("d{d}");
            app.create_deployment(project, &deployment, &["v1", "v2"])
                .await;
            let base = format!("/projects/{project}/deployments/{deployment}");
            let scopes = [
                (base.clone(), format!("{project}/{deployment}")),
                (
                    format!("{base}/versions/v2"),
                    format!("{project}/{deployment}/v2"),
                ),
            ];
            for (scope, value) in scopes {
                let response = app
                    .post(
                        &format!("{scope}/environment-variables"),
                        json!({"name": "OWNER", "value": value, "secret": false}),
                    )
                    .await;
                assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
            }
        }
    }
}

/// What one request asked for, and a check of its answer.
enum Ask {
    Deployment {
        project: &'static str,
        deployment: String,
    },
    Version {
        project: &'static str,
        deployment: String,
        version: &'static str,
    },
    Variables {
        project: &'static str,
        deployment: String,
        version: Option<&'static str>,
    },
}

impl Ask {
    fn path(&self) -> String {
        match self {
            Ask::Deployment { project, deployment } => {
                format!("/projects/{project}/deployments/{deployment}")
            }
            Ask::Version { project, deployment, version } => {
                format!("/projects/{project}/deployments/{deployment}/versions/{version}")
            }
            Ask::Variables { project, deployment, version: None } => {
                format!("/projects/{project}/deployments/{deployment}/environment-variables")
            }
            Ask::Variables { project, deployment, version: Some(version) } => format!(
                "/projects/{project}/deployments/{deployment}/versions/{version}/environment-variables"
            ),
        }
    }

    fn check(&self, response: &Response) {
        let path = self.path();
        if path.contains("/deployments/missing") {
            assert_eq!(
                response.status,
                StatusCode::NOT_FOUND,
                "{path}: {}",
                response.body
            );
            assert_eq!(response.error(), "Deployment 'missing' not found");
            return;
        }
        assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
        match self {
            Ask::Deployment {
                project,
                deployment,
            } => {
                assert_eq!(response.body["name"], json!(deployment));
                assert_eq!(response.body["project"], json!(project));
            }
            Ask::Version {
                deployment,
                version,
                ..
            } => {
                assert_eq!(response.body["deployment"], json!(deployment));
                assert_eq!(response.body["version"], json!(version));
            }
            Ask::Variables {
                project,
                deployment,
                version,
            } => {
                let owners: Vec<_> = response
                    .body
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|variable| variable["value"].as_str().unwrap().to_owned())
                    .collect();
                // v2's own variable shadows the deployment's; v1 inherits it.
                let expected = match version {
                    Some("v2") => format!("{project}/{deployment}/v2"),
                    _ => format!("{project}/{deployment}"),
                };
                assert_eq!(owners, vec![expected], "{path}");
            }
        }
    }
}

#[tokio::test]
async fn concurrent_lookups_each_get_their_own_answer() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let mut asks = Vec::new();
    for round in 0..3 {
        for project in PROJECTS {
            for d in 0..=DEPLOYMENTS {
                // d == DEPLOYMENTS names a deployment that does not exist.
                let deployment = match d {
                    DEPLOYMENTS => "missing".to_owned(),
                    _ => format!("d{d}"),
                };
                let version = if (d + round) % 2 == 0 { "v1" } else { "v2" };
                asks.push(Ask::Deployment {
                    project,
                    deployment: deployment.clone(),
                });
                asks.push(Ask::Version {
                    project,
                    deployment: deployment.clone(),
                    version,
                });
                asks.push(Ask::Variables {
                    project,
                    deployment: deployment.clone(),
                    version: None,
                });
                asks.push(Ask::Variables {
                    project,
                    deployment,
                    version: Some(version),
                });
            }
        }
    }
    let paths: Vec<String> = asks.iter().map(Ask::path).collect();
    let responses = join_all(paths.iter().map(|path| app.get(path))).await;
    for (ask, response) in asks.iter().zip(&responses) {
        ask.check(response);
    }
}
