//! Running `sturnusd`: the store, the relay's thread, the HTTP API and the reaper, until a
//! shutdown signal.

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Config;
use crate::http::{RelayProbe, router};
use crate::matchmaker::Matchmaker;
use crate::relay::{RelayMinter, RelayService};
use crate::store::{self, Store};

/// Why `sturnusd` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] store::StoreError),
    /// An address could not be bound, or the relay key not read.
    #[error("{0}")]
    Io(String),
}

/// The addresses a running service listens at (its ports, when the configuration said 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The HTTP API.
    pub http: SocketAddr,
    /// The relay (UDP), if it runs one.
    pub relay: Option<SocketAddr>,
}

#[expect(clippy::disallowed_methods, reason = "the service is a driver: it reads the clock")]
fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Serves `config` until `shutdown` completes; `on_bound` is told the bound addresses once
/// everything listens.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let store = store::open(&config.store, config.rules.schema.clone()).await?;
    serve_with(store, config, shutdown, on_bound).await
}

/// [`serve`] over a store of the caller's.
pub async fn serve_with<S: Store>(
    store: S,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let relay = match config.relay {
        Some(bind) => Some(
            RelayService::start(
                bind,
                config.relay_public,
                config.relay_key_file.as_deref(),
                config.rules.allocation_seconds,
                config.rules.player_allocation_seconds,
                config.rules.relay_limits,
            )
            .map_err(|e| ServeError::Io(format!("relay on {bind}: {e}")))?,
        ),
        None => None,
    };
    let minter: Option<RelayMinter> = relay.as_ref().map(RelayService::minter);
    let probe: Option<RelayProbe> = relay.as_ref().map(RelayService::probe);
    let matchmaker = Matchmaker::new(store, config.rules.clone(), minter);
    let (app, state) = router(matchmaker, &config.limits, probe);
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|e| ServeError::Io(format!("HTTP on {}: {e}", config.http)))?;
    let http = listener.local_addr().map_err(|e| ServeError::Io(e.to_string()))?;
    let bound = Bound { http, relay: relay.as_ref().map(RelayService::local_addr) };
    tracing::info!(
        http = %bound.http,
        relay = ?bound.relay,
        store = %store::redacted(&config.store),
        "sturnusd serving"
    );
    on_bound(bound);
    // Any node may reap: the store makes it idempotent.
    let reaper_state = std::sync::Arc::clone(&state);
    let reaper = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            match reaper_state.store().reap(now_unix()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "matches expired"),
                Err(e) => tracing::warn!(error = %e, "reaping failed"),
            }
        }
    });
    // Requests in flight get a grace period after the signal, not forever: a client that
    // stalls mid-request would otherwise hold the stop off indefinitely.
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = signalled.send(());
    };
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let serving = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .into_future();
    let result = tokio::select! {
        result = serving => result,
        () = async {
            if on_signal.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(
                grace_seconds = config.shutdown_grace_seconds,
                "stopping with requests still in flight"
            );
            Ok(())
        }
    };
    reaper.abort();
    if let Some(relay) = relay {
        relay.stop();
    }
    tracing::info!("sturnusd stopped");
    result.map_err(|e| ServeError::Io(e.to_string()))
}
