//! The HTTP API wired from its parts, one way for `serve` and for the tests
//! (tests/support), so that the tests exercise the server as it is deployed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use ubiops_api::{router, AppState, Renderings, Services, TokenCache, DEFAULT_RENDERED_BYTES};
use ubiops_domain::secrets::Keyring;
use ubiops_files::FileStore;
use ubiops_runtime::Serving;
use ubiops_storage::Store;

use crate::config::ApiConfig;

/// The router, bound to its listener and ready to serve.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
}

impl Application {
    /// Binds `config.listen` (port 0: a free port, see [`address`](Self::address)).
    /// The caller opens the parts: `serve` from its configuration, the tests
    /// over a fresh database with a generated key.
    pub async fn build(
        config: &ApiConfig,
        store: Store,
        files: FileStore,
        keyring: Arc<Keyring>,
        serving: Arc<Serving>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("UBIOPS_LISTEN: cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let router = router(AppState::new(Services {
            store,
            organization_name: Arc::from(config.organization_name.as_str()),
            instance_types: Arc::new(config.instance_types.clone()),
            keyring,
            serving,
            files,
            max_upload_bytes: config.max_upload_bytes,
            upload_lease: config.upload_lease,
            tokens: Arc::new(TokenCache::new(config.token_cache_ttl)),
            rendered: Arc::new(Renderings::new(DEFAULT_RENDERED_BYTES)),
        }));
        Ok(Self {
            listener,
            address,
            router,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `stop` completes, then until the requests in flight have
    /// finished.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stop)
            .await
    }
}
