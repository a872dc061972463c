//! The `result` service: the vote tallies, live in the browser.
//!
//! How data flows:
//!
//! ```text
//! worker ──commit + NOTIFY tallies_changed──► Postgres
//!    feed::listen   LISTEN; each notification pokes the reader
//!    feed::read_loop  SELECT vote, count FROM tallies  (≤ 1 per 50 ms, + every 5 s)
//!        └──► watch channel: Option<Arc<Snapshot>>  (one read shared by all)
//!               ├── GET /        page rendered with the current tallies (askama)
//!               └── GET /events  SSE: current tallies on connect, then each change
//! browser: assets/result.js  EventSource('/events') → bars, percentages, total
//! ```
//!
//! - [`feed`]: change detection (LISTEN/NOTIFY, coalescing, periodic refresh,
//!   reconnection after a Postgres restart).
//! - [`routes`]: the router (page, events, static files).
//! - `server`: the accept loop; connections that open with `GET /events` are
//!   served directly on the socket (a few KiB each instead of hyper's ~24).
//! - `page`: the server-rendered page and the percentage arithmetic.
//!
//! The event data is the JSON of [`common::tally::Tallies`]
//! (`{"counts":{"a":2000,"b":1000},"total":3000}`, every configured option
//! present); the seed tool's `--verify` reads it.
//!
//! The admin port serves `/healthz`, `/readyz` (Postgres answers) and
//! `/metrics`: `sse_clients`, `sse_events_sent_total`,
//! `notify_to_send_seconds`, `tally_reads_total`, plus the HTTP metrics.

pub mod config;
pub mod feed;
mod page;
pub mod routes;
mod server;

use std::sync::Arc;

use common::options::VoteOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Cli;
pub use feed::Pacing;
pub use routes::{router, AppState};

/// What [`run`] needs besides its sockets.
#[derive(Debug, Clone)]
pub struct Settings {
    pub options: VoteOptions,
    pub pacing: Pacing,
}

/// Serves the page on `listener` and the admin routes on `admin` until
/// `shutdown` is cancelled; then closes every SSE stream and returns.
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    pool: PgPool,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    common::admin::metrics_handle();
    metrics::gauge!("sse_clients").set(0.0);
    let (latest, tasks) = feed::spawn(
        pool.clone(),
        settings.options.clone(),
        settings.pacing,
        shutdown.clone(),
    );
    let state = AppState {
        options: Arc::new(settings.options),
        latest,
        shutdown: shutdown.clone(),
    };
    let ready_pool = pool.clone();
    let ready: common::admin::ReadyCheck = Arc::new(move || {
        let pool = ready_pool.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| format!("postgres: {e}"))
        })
    });
    let admin = tokio::spawn(common::admin::serve(admin, ready, shutdown.clone()));
    tracing::info!(addr = %listener.local_addr()?, "serving the result page");
    server::serve(listener, router(state.clone()), state, shutdown.clone()).await;
    for t in tasks {
        let _ = t.await;
    }
    admin.await??;
    pool.close().await;
    Ok(())
}
