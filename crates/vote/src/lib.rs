//! The `vote` service: the page where people vote.
//!
//! ```text
//! browser ──GET /──►  vote  (renders the question and one button per option)
//! browser ──POST / vote=a──► vote ──EVALSHA (INCR votes:seq; RPUSH votes JSON)──► Redis
//! ```
//!
//! How a vote flows through this crate:
//! 1. [`routes`] checks that the POST comes from the page itself
//!    ([`security`]: `Sec-Fetch-Site` / `Origin`), reads the `voter_id` cookie
//!    ([`voter`]; a missing or malformed one gets a fresh random id) and the
//!    form field `vote` (at most [`routes::BODY_LIMIT`] bytes), and checks the
//!    vote against the configured options.
//! 2. [`queue`] appends the message to the Redis list in one round trip: a Lua
//!    script takes the order key from the `votes:seq` counter and `RPUSH`es
//!    `{"voter_id":"..","vote":"a","seq":N}`, the original stack's message
//!    plus the order key the worker uses to keep each voter's latest vote.
//! 3. The answer is the page with the chosen option marked ([`templates`]; each
//!    variant of the page is rendered once at start).
//!
//! Every failure is an [`error::Error`], which answers with a plain-text
//! message and the right status: 4xx for what the client sent, 503 while Redis
//! is unreachable. The page itself (`GET /`) needs no Redis, and the
//! connection heals by itself when Redis comes back.
//!
//! The stylesheet and icon are compiled into the binary ([`assets`]) and served
//! under fingerprinted URLs, so they can be cached forever and the
//! Content-Security-Policy can allow nothing but the page's own origin.
//!
//! Beside the page, the admin port serves `/healthz`, `/readyz` (Redis answers
//! `PING`) and `/metrics` (see [`common::admin`]).

pub mod assets;
pub mod error;
pub mod queue;
pub mod routes;
pub mod security;
pub mod settings;
pub mod templates;
pub mod voter;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use common::admin::ReadyCheck;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use routes::{router, AppState};
pub use settings::Settings;

/// Binds the public port on all addresses, naming `BIND_PORT` if that fails.
pub async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .map_err(|e| anyhow::anyhow!("BIND_PORT: cannot listen on port {port}: {e}"))
}

/// Serves the vote page on `listener` and the admin routes on `admin` until
/// `shutdown` is cancelled; then stops accepting, lets requests in flight
/// finish, and returns.
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let options = settings.options.options()?;
    let client = common::queue::client(&settings.redis)?;
    let manager = common::queue::manager(client)?;
    let queue = queue::VoteQueue::new(manager, (&settings.queue).into());
    let state =
        AppState::new(options, host_name(), queue.clone()).context("rendering the vote page")?;

    let ready_queue = queue.clone();
    let ready: ReadyCheck = Arc::new(move || {
        let q = ready_queue.clone();
        Box::pin(async move { q.ping().await.map_err(|e| format!("redis: {e}")) })
    });

    tracing::info!(
        addr = %listener.local_addr()?,
        admin = %admin.local_addr()?,
        redis = %settings.redis.describe(),
        queue = %settings.queue.votes_queue,
        "vote listening"
    );
    let admin_server = tokio::spawn(common::admin::serve(admin, ready, shutdown.clone()));
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serving the vote page")?;
    // The admin server stops on the same token; wait for it so that the
    // process exits only when both are done.
    shutdown.cancel();
    admin_server.await.context("admin server task")??;
    tracing::info!("vote stopped");
    Ok(())
}

/// The name shown as "Processed by container ID": the host name, which in a
/// container is the container ID (as the original app shows it).
fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
