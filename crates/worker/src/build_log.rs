//! The system log lines a build writes for the people watching it, tagged
//! with its project, deployment, version, build and revision: one insert per
//! stage, and the output of what the build runs (pip, the import) streamed
//! in batches as it comes, up to a cap per build. A line that cannot be
//! written is logged here and the build goes on.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use ubiops_domain::logs::Level;
use ubiops_inspect::Validation;
use ubiops_storage::{ClaimedBuild, LogTags, NewLogLine, Store};

use crate::Worker;

/// Output lines one build logs at most; a package that prints without end
/// (on import, say) must not fill the log store.
pub(crate) const MAX_OUTPUT_LINES: usize = 5_000;
pub(crate) const MAX_OUTPUT_BYTES: usize = 2 << 20;

/// Lines written in one insert, at most.
const BATCH: usize = 500;

/// What a build has logged of its programs' output so far.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OutputCap {
    lines: usize,
    bytes: usize,
    reached: bool,
}

/// The output of one program a build runs, on its way to the log. Lines are
/// written in order, in batches, while the program runs; `finish` waits for
/// the last of them, so stage lines written after it come after it.
pub(crate) struct StreamedOutput {
    sender: mpsc::UnboundedSender<String>,
    writer: JoinHandle<()>,
    cap: OutputCap,
}

impl StreamedOutput {
    pub(crate) fn line(&mut self, text: &str) {
        if self.cap.reached {
            return;
        }
        if self.cap.lines >= MAX_OUTPUT_LINES || self.cap.bytes >= MAX_OUTPUT_BYTES {
            self.cap.reached = true;
            let _ = self.sender.send(format!(
                "[output truncated: a build logs at most {MAX_OUTPUT_LINES} lines or {} MiB of what it runs]",
                MAX_OUTPUT_BYTES >> 20
            ));
            return;
        }
        self.cap.lines += 1;
        self.cap.bytes += text.len();
        let _ = self.sender.send(text.to_owned());
    }

    /// Waits until every line is written; what was logged, for the next
    /// program's output.
    pub(crate) async fn finish(self) -> OutputCap {
        drop(self.sender);
        let _ = self.writer.await;
        self.cap
    }
}

impl Worker {
    /// Starts streaming a program's output to `build`'s log.
    pub(crate) fn stream_output(&self, build: &ClaimedBuild, cap: OutputCap) -> StreamedOutput {
        let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
        let store = self.store.clone();
        let build = build.clone();
        let writer = tokio::spawn(async move {
            let mut texts = Vec::new();
            while receiver.recv_many(&mut texts, BATCH).await > 0 {
                let lines: Vec<NewLogLine> = texts
                    .drain(..)
                    .map(|text| log_line(&build, Level::Info, text))
                    .collect();
                write(&store, &lines).await;
            }
        });
        StreamedOutput {
            sender,
            writer,
            cap,
        }
    }

    /// Writes system lines about `build`; a failure is only logged here.
    pub(crate) async fn log(&self, build: &ClaimedBuild, lines: Vec<(Level, String)>) {
        let lines: Vec<NewLogLine> = lines
            .into_iter()
            .map(|(level, text)| log_line(build, level, text))
            .collect();
        write(&self.store, &lines).await;
    }

    pub(crate) async fn log_one(&self, build: &ClaimedBuild, line: String) {
        self.log(build, vec![(Level::Info, line)]).await;
    }
}

async fn write(store: &Store, lines: &[NewLogLine]) {
    if let Err(error) = store.append_logs(lines).await {
        tracing::warn!(%error, lines = lines.len(), "could not write the build's log lines; the build goes on");
    }
}

fn log_line(build: &ClaimedBuild, level: Level, text: String) -> NewLogLine {
    NewLogLine {
        project_id: build.project_id,
        tags: LogTags {
            deployment_id: Some(build.deployment_id),
            deployment_name: Some(build.deployment_name.clone()),
            version_id: Some(build.version_id),
            version_name: Some(build.version_name.clone()),
            build_id: Some(build.id),
            revision_id: Some(build.revision_id),
            deployment_request_id: None,
        },
        system: true,
        level,
        text,
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
