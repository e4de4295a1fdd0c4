//! Serving targets kept between requests, so that a request to a version
//! that serves costs no query.
//!
//! A target is kept only while this process follows changes: triggers on
//! the projects, deployments and versions tables (which every variable and
//! revision change touches too) notify [`SERVING_CHANNEL`], and one
//! connection per process listens. Each notification, and each change this
//! process makes itself ([`Store::serving_changed`], for the request that
//! follows it at once), starts a new generation; a target is good only in
//! the generation in which its query began. While the connection is down
//! nothing is kept, and on reconnecting a new generation starts, as
//! notifications may have been missed meanwhile. So another process's
//! change reaches requests here as fast as its notification, which is the
//! same as a request already on its way when the change committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::serving::ServingTarget;
use crate::Store;

/// The channel the tables' triggers notify (see the migration
/// `serving_notifications`).
const SERVING_CHANNEL: &str = "ubiops_serving_changed";

/// Beyond this many targets, the next one starts over with an empty map:
/// far more than the versions one process serves at a time.
const MAX_TARGETS: usize = 4096;

/// (project, deployment, version or `None` for the default).
pub(crate) type Key = (String, String, Option<String>);

#[derive(Default)]
pub(crate) struct ServingCache {
    generation: AtomicU64,
    following: AtomicBool,
    targets: Mutex<HashMap<Key, (u64, ServingTarget)>>,
}

impl ServingCache {
    /// The target kept for `key` in the current generation.
    pub(crate) fn get(&self, key: &Key) -> Option<ServingTarget> {
        let generation = self.current()?;
        let targets = self.targets.lock();
        targets
            .get(key)
            .filter(|(kept_in, _)| *kept_in == generation)
            .map(|(_, target)| target.clone())
    }

    /// The generation a query beginning now belongs to, or `None` when
    /// changes are not followed and its result must not be kept.
    pub(crate) fn current(&self) -> Option<u64> {
        // Read before the generation: a change that stops the following
        // bumps the generation after clearing the flag.
        let following = self.following.load(Ordering::Acquire);
        following.then(|| self.generation.load(Ordering::Acquire))
    }

    /// Keeps `target`, read by a query that began in `generation`, unless a
    /// change came since.
    pub(crate) fn keep(&self, key: Key, generation: u64, target: &ServingTarget) {
        let mut targets = self.targets.lock();
        // Checked under the lock, which `changed` takes after bumping.
        if self.current() != Some(generation) {
            return;
        }
        if targets.len() >= MAX_TARGETS {
            targets.clear();
        }
        targets.insert(key, (generation, target.clone()));
    }

    /// Something a target may depend on changed: nothing kept so far is
    /// used again.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.targets.lock().clear();
    }

    fn set_following(&self, following: bool) {
        self.following.store(following, Ordering::Release);
        self.changed();
    }
}

impl Store {
    /// Tells this process's kept serving targets that a project, deployment,
    /// version, variable or revision changed. Other processes learn it from
    /// PostgreSQL's notification.
    pub fn serving_changed(&self) {
        self.lookups.serving_cache.changed();
    }

    /// Follows the notifications of changes until `shutdown` turns true;
    /// serving targets are kept only meanwhile. Reconnects after losing
    /// the connection.
    pub async fn follow_serving_changes(self, mut shutdown: watch::Receiver<bool>) {
        let cache = &self.lookups.serving_cache;
        loop {
            match self.listen_to_serving_changes().await {
                Ok(mut listener) => {
                    // Whatever changed before the LISTEN was not notified.
                    cache.set_following(true);
                    loop {
                        tokio::select! {
                            received = listener.try_recv() => match received {
                                Ok(Some(_)) => cache.changed(),
                                Ok(None) => {
                                    tracing::warn!("serving change notifications interrupted; reconnecting");
                                    break;
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "serving change notifications interrupted; reconnecting");
                                    break;
                                }
                            },
                            _ = shutdown.wait_for(|stop| *stop) => {
                                cache.set_following(false);
                                return;
                            }
                        }
                    }
                    cache.set_following(false);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not LISTEN for serving changes; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn listen_to_serving_changes(&self) -> sqlx::Result<PgListener> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(SERVING_CHANNEL).await?;
        Ok(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::Retention;
    use ubiops_domain::deployment::IoType;
    use ubiops_domain::version::RetentionMode;
    use uuid::Uuid;

    fn target(version_name: &str) -> ServingTarget {
        ServingTarget {
            project_id: Uuid::nil(),
            project_name: "p".into(),
            deployment_id: Uuid::nil(),
            deployment_name: "d".into(),
            version_id: Uuid::nil(),
            version_name: version_name.into(),
            input_type: IoType::Plain,
            output_type: IoType::Plain,
            input_fields: vec![],
            output_fields: vec![],
            status: "available".into(),
            active_revision: None,
            language: "python3.11".into(),
            memory_mib: 256,
            minimum_instances: 0,
            maximum_instances: 1,
            maximum_idle_time: 300,
            maximum_queue_size_express: 100,
            maximum_queue_size_batch: 100,
            restart_request_interruption: false,
            retention: Retention {
                mode: RetentionMode::Full,
                seconds: 60,
            },
            variables: vec![],
        }
    }

    fn key(version: &str) -> Key {
        ("p".into(), "d".into(), Some(version.into()))
    }

    fn kept(cache: &ServingCache, version: &str) -> Option<String> {
        cache.get(&key(version)).map(|t| t.version_name)
    }

    #[test]
    fn nothing_is_kept_unless_changes_are_followed() {
        let cache = ServingCache::default();
        assert_eq!(cache.current(), None);
        cache.keep(key("v1"), 0, &target("v1"));
        assert_eq!(kept(&cache, "v1"), None);
    }

    #[test]
    fn a_target_is_kept_until_the_next_change() {
        let cache = ServingCache::default();
        cache.set_following(true);
        let generation = cache.current().unwrap();
        cache.keep(key("v1"), generation, &target("v1"));
        assert_eq!(kept(&cache, "v1").as_deref(), Some("v1"));
        assert_eq!(kept(&cache, "v2"), None);
        cache.changed();
        assert_eq!(kept(&cache, "v1"), None);
    }

    #[test]
    fn a_query_overtaken_by_a_change_is_not_kept() {
        let cache = ServingCache::default();
        cache.set_following(true);
        let generation = cache.current().unwrap();
        cache.changed();
        cache.keep(key("v1"), generation, &target("v1"));
        assert_eq!(kept(&cache, "v1"), None);
    }

    #[test]
    fn losing_the_notifications_drops_what_was_kept_and_keeps_nothing_more() {
        let cache = ServingCache::default();
        cache.set_following(true);
        let generation = cache.current().unwrap();
        cache.keep(key("v1"), generation, &target("v1"));
        cache.set_following(false);
        assert_eq!(kept(&cache, "v1"), None);
        cache.keep(key("v1"), generation, &target("v1"));
        assert_eq!(kept(&cache, "v1"), None);
        // Following again starts a generation of its own.
        cache.set_following(true);
        cache.keep(key("v1"), generation, &target("v1"));
        assert_eq!(kept(&cache, "v1"), None);
    }
}
