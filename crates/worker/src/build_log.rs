//! The system log lines a build writes for the people watching it, tagged
//! with its project, deployment, version, build and revision, one insert per
//! stage. A line that cannot be written is logged here and the build goes on.

use ubiops_domain::logs::Level;
use ubiops_inspect::Validation;
use ubiops_storage::{ClaimedBuild, LogTags, NewLogLine};

use crate::Worker;

impl Worker {
    /// Writes system lines about `build`; a failure is only logged here.
    pub(crate) async fn log(&self, build: &ClaimedBuild, lines: Vec<(Level, String)>) {
        let tags = LogTags {
            deployment_id: Some(build.deployment_id),
            deployment_name: Some(build.deployment_name.clone()),
            version_id: Some(build.version_id),
            version_name: Some(build.version_name.clone()),
            build_id: Some(build.id),
            revision_id: Some(build.revision_id),
            deployment_request_id: None,
        };
        let lines: Vec<NewLogLine> = lines
            .into_iter()
            .map(|(level, text)| NewLogLine {
                project_id: build.project_id,
                tags: tags.clone(),
                system: true,
                level,
                text,
            })
            .collect();
        if let Err(error) = self.store.append_logs(&lines).await {
            tracing::warn!(%error, lines = lines.len(), "could not write the build's log lines; the build goes on");
        }
    }

    pub(crate) async fn log_one(&self, build: &ClaimedBuild, line: String) {
        self.log(build, vec![(Level::Info, line)]).await;
    }
}

/// What validation found, as log lines.
pub(crate) fn findings(validation: &Validation) -> Vec<String> {
    let methods = match (
        validation.has_request_method,
        validation.has_requests_method,
    ) {
        (true, true) => "`request` and `requests` methods",
        (true, false) => "a `request` method",
        (false, true) => "a `requests` method",
        (false, false) => "no request method",
    };
    let requirements = match validation.requirements.len() {
        0 => "no requirements".to_owned(),
        1 => "1 requirement".to_owned(),
        n => format!("{n} requirements"),
    };
    vec![format!(
        "Found {} with {methods}; {requirements}",
        validation.deployment_file.display()
    )]
}
