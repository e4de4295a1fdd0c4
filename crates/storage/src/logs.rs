//! Log lines: appended in batches with their tags, read by project within a
//! window of time, deleted after the retention period.
//!
//! Every append takes its lines' times from one row (`log_clock`), which it
//! holds until its transaction ends: times are unique, in write order, and a
//! line never becomes visible after a line with a later time, so a reader
//! paging forward from the last time it saw never misses one.

use sqlx::PgConnection;
use ubiops_domain::logs::{line_text, Keep, Level, LogQuery};
use uuid::Uuid;

use crate::{Result, Store};

/// What a line is about. Names are those at the time of the line.
#[derive(Debug, Clone, Default)]
pub struct LogTags {
    pub deployment_id: Option<Uuid>,
    pub deployment_name: Option<String>,
    pub version_id: Option<Uuid>,
    pub version_name: Option<String>,
    pub build_id: Option<Uuid>,
    pub revision_id: Option<Uuid>,
    pub deployment_request_id: Option<Uuid>,
}

/// A line to append.
#[derive(Debug, Clone)]
pub struct NewLogLine {
    pub project_id: Uuid,
    pub tags: LogTags,
    /// Written by the server (build stages, ...) rather than user code.
    pub system: bool,
    pub level: Level,
    /// Capped and cleaned by [`line_text`] when appended.
    pub text: String,
}

/// A stored line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Nanoseconds since the epoch; unique.
    pub ns: i64,
    pub text: String,
    pub system: bool,
    pub level: String,
    pub deployment_name: Option<String>,
    pub version_name: Option<String>,
    pub build_id: Option<Uuid>,
    pub revision_id: Option<Uuid>,
    pub deployment_request_id: Option<Uuid>,
}

/// Appends `lines` in one statement, with consecutive times in their order.
pub(crate) async fn append(conn: &mut PgConnection, lines: &[NewLogLine]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut projects = Vec::with_capacity(lines.len());
    let mut deployment_ids = Vec::with_capacity(lines.len());
    let mut deployment_names = Vec::with_capacity(lines.len());
    let mut version_ids = Vec::with_capacity(lines.len());
    let mut version_names = Vec::with_capacity(lines.len());
    let mut builds = Vec::with_capacity(lines.len());
    let mut revisions = Vec::with_capacity(lines.len());
    let mut requests = Vec::with_capacity(lines.len());
    let mut systems = Vec::with_capacity(lines.len());
    let mut levels = Vec::with_capacity(lines.len());
    let mut texts = Vec::with_capacity(lines.len());
    for line in lines {
        projects.push(line.project_id);
        deployment_ids.push(line.tags.deployment_id);
        deployment_names.push(line.tags.deployment_name.clone());
        version_ids.push(line.tags.version_id);
        version_names.push(line.tags.version_name.clone());
        builds.push(line.tags.build_id);
        revisions.push(line.tags.revision_id);
        requests.push(line.tags.deployment_request_id);
        systems.push(line.system);
        levels.push(line.level.as_str().to_owned());
        texts.push(line_text(&line.text));
    }
    let count = lines.len() as i64;
    sqlx::query!(
        r#"WITH clock AS (
               UPDATE log_clock
               SET last_ns = greatest(
                       floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1000,
                       last_ns + 1) + $12 - 1
               RETURNING last_ns - $12 + 1 AS first_ns)
           INSERT INTO logs (ns, project_id, deployment_id, deployment_name, version_id,
                             version_name, build_id, revision_id, deployment_request_id,
                             system, level, text)
           SELECT clock.first_ns + line.position - 1, line.project_id, line.deployment_id,
                  line.deployment_name, line.version_id, line.version_name, line.build_id,
                  line.revision_id, line.deployment_request_id, line.system, line.level,
                  line.text
           FROM clock,
                unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::uuid[],
                       $7::uuid[], $8::uuid[], $9::bool[], $10::text[], $11::text[])
                    WITH ORDINALITY AS line(project_id, deployment_id, deployment_name,
                                            version_id, version_name, build_id, revision_id,
                                            deployment_request_id, system, level, text,
                                            position)"#,
        &projects,
        &deployment_ids as &[Option<Uuid>],
        &deployment_names as &[Option<String>],
        &version_ids as &[Option<Uuid>],
        &version_names as &[Option<String>],
        &builds as &[Option<Uuid>],
        &revisions as &[Option<Uuid>],
        &requests as &[Option<Uuid>],
        &systems,
        &levels,
        &texts,
        count,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends system lines about a build, tagged from the build's rows as they
/// are now (project, deployment, version, build, revision). Nothing is
/// written if the build is gone.
pub(crate) async fn append_for_build(
    conn: &mut PgConnection,
    build_id: Uuid,
    lines: &[(Level, String)],
) -> Result<()> {
    let Some(build) = sqlx::query!(
        r#"SELECT d.project_id, d.id AS deployment_id, d.name AS deployment_name,
                  v.id AS version_id, v.name AS version_name, b.revision_id
           FROM builds b
           JOIN versions v ON v.id = b.version_id
           JOIN deployments d ON d.id = v.deployment_id
           WHERE b.id = $1"#,
        build_id,
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let tags = LogTags {
        deployment_id: Some(build.deployment_id),
        deployment_name: Some(build.deployment_name),
        version_id: Some(build.version_id),
        version_name: Some(build.version_name),
        build_id: Some(build_id),
        revision_id: Some(build.revision_id),
        deployment_request_id: None,
    };
    let lines: Vec<NewLogLine> = lines
        .iter()
        .map(|(level, text)| NewLogLine {
            project_id: build.project_id,
            tags: tags.clone(),
            system: true,
            level: *level,
            text: text.clone(),
        })
        .collect();
    append(conn, &lines).await
}

/// `text LIKE` pattern that matches `needle` anywhere, literally.
pub(crate) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `query_as!` of a project's lines within `$window` that pass `$filter`, in
/// `$order` of their time: the two reads of [`Store::list_logs`] differ only
/// in their order, so that each reads `logs_by_project` in its own direction
/// and stops at the limit.
macro_rules! query_log_lines {
    ($order:literal, $project_id:ident, $window:ident, $filter:ident, $contains:ident, $excludes:ident) => {
        sqlx::query_as!(
            LogLine,
            r#"SELECT ns, text, system, level, deployment_name, version_name,
                      build_id, revision_id, deployment_request_id
               FROM logs
               WHERE project_id = $1 AND ns BETWEEN $2 AND $3
                 AND ($4::text IS NULL OR deployment_name = $4)
                 AND (deployment_name IS NULL OR deployment_name <> ALL($5::text[]))
                 AND ($6::text IS NULL OR version_name = $6)
                 AND (version_name IS NULL OR version_name <> ALL($7::text[]))
                 AND ($8::uuid IS NULL OR revision_id = $8 OR build_id = $8)
                 AND NOT (coalesce(revision_id = ANY($9::uuid[]), false)
                          OR coalesce(build_id = ANY($9::uuid[]), false))
                 AND ($10::uuid IS NULL OR build_id = $10)
                 AND (build_id IS NULL OR build_id <> ALL($11::uuid[]))
                 AND ($12::uuid IS NULL OR deployment_request_id = $12)
                 AND (deployment_request_id IS NULL OR deployment_request_id <> ALL($13::uuid[]))
                 AND ($14::bool IS NULL OR system = $14)
                 AND system <> ALL($15::bool[])
                 AND ($16::text IS NULL OR level = $16)
                 AND level <> ALL($17::text[])
                 AND text LIKE ALL($18::text[])
                 AND NOT text LIKE ANY($19::text[])
               ORDER BY "#
                + $order
                + " LIMIT $20",
            $project_id,
            $window.from_ns,
            $window.to_ns,
            $filter.deployment_name.equals.as_deref(),
            &$filter.deployment_name.not_equals,
            $filter.deployment_version.equals.as_deref(),
            &$filter.deployment_version.not_equals,
            $filter.revision_id.equals,
            &$filter.revision_id.not_equals,
            $filter.build_id.equals,
            &$filter.build_id.not_equals,
            $filter.deployment_request_id.equals,
            &$filter.deployment_request_id.not_equals,
            $filter.system.equals,
            &$filter.system.not_equals,
            $filter.level.equals.as_deref(),
            &$filter.level.not_equals,
            &$contains,
            &$excludes,
            $window.limit,
        )
    };
}

impl Store {
    /// Appends a batch of lines (one statement, one transaction).
    pub async fn append_logs(&self, lines: &[NewLogLine]) -> Result<()> {
        append(&mut *self.connection().await?, lines).await
    }

    /// Appends system lines about a build (see [`append_for_build`]).
    pub async fn append_build_logs(&self, build_id: Uuid, lines: &[(Level, String)]) -> Result<()> {
        append_for_build(&mut *self.connection().await?, build_id, lines).await
    }

    /// A project's lines that pass the query's filter within its window, at
    /// most its limit (the oldest or the newest of the window), oldest first.
    pub async fn list_logs(&self, project_id: Uuid, query: &LogQuery) -> Result<Vec<LogLine>> {
        if query.matches_nothing() {
            return Ok(Vec::new());
        }
        let filter = &query.filter;
        let window = &query.window;
        let contains: Vec<String> = filter
            .contains
            .iter()
            .map(|t| contains_pattern(t))
            .collect();
        let excludes: Vec<String> = filter
            .excludes
            .iter()
            .map(|t| contains_pattern(t))
            .collect();
        // A revision filter also matches a build's id: newer clients read
        // the answer of a rebuild (a build) as a revision and then wait for
        // that "revision" by its id.
        let mut connection = self.connection().await?;
        let lines = match window.keep {
            Keep::Oldest => {
                query_log_lines!("ns", project_id, window, filter, contains, excludes)
                    .fetch_all(&mut *connection)
                    .await?
            }
            Keep::Newest => {
                let mut newest =
                    query_log_lines!("ns DESC", project_id, window, filter, contains, excludes)
                        .fetch_all(&mut *connection)
                        .await?;
                newest.reverse();
                newest
            }
        };
        Ok(lines)
    }

    /// Deletes lines older than `cutoff_ns`, a bounded number at a time so
    /// that no statement holds locks for long. Returns how many.
    pub async fn delete_logs_before(&self, cutoff_ns: i64) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let batch = sqlx::query!(
                "DELETE FROM logs WHERE ns IN (
                     SELECT ns FROM logs WHERE ns < $1 ORDER BY ns LIMIT 10000)",
                cutoff_ns,
            )
            .execute(&mut *self.connection().await?)
            .await?
            .rows_affected();
            deleted += batch;
            if batch < 10000 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn contains_patterns_match_literally() {
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
