//! `hits`: the hit counter of the course's parts 1-3, in Rust.
//!
//! The course starts with a two-tier system before the voting app: a web app
//! that counts its visits in Redis. Every `GET /` runs one `INCR hits` (atomic in
//! Redis, so concurrent requests never lose an increment) and answers
//! `Hello World! I have been seen N times.` with N the value after the increment:
//!
//! ```text
//! browser ─GET /─► hits ─INCR hits─► Redis (REDIS_HOST:REDIS_PORT)
//! ```
//!
//! Settings keep the course's names: `REDIS_HOST` (default `redis`),
//! `REDIS_PORT` (6379), or `REDIS_URL` to override both, and `BIND_PORT` (5000).
//! The course's app has a single port, so `/healthz` and `/readyz` are served on
//! it too; `ADMIN_PORT`, when set, adds the shared admin server with `/metrics`.
//!
//! Redis is reached through a [`ConnectionManager`] created without touching the
//! network: the app starts while Redis is down, answers 503 naming Redis instead
//! of crashing (the course's Flask app showed a connection-error trace), and
//! works again by itself as soon as Redis is back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::{Parser, Subcommand};
use common::admin::ReadyCheck;
use common::config::{LogArgs, RedisArgs};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The Redis key the binary counts in, as in the course.
pub const KEY: &str = "hits";

/// The course's hit counter: every GET / adds one to the Redis key `hits`.
#[derive(Debug, Parser)]
#[command(name = "hits", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Port of the web app (the course's BIND_PORT); /healthz and /readyz are served here too.
    #[arg(long, env = "BIND_PORT", default_value_t = 5000)]
    pub bind_port: u16,
    /// Optional admin port serving /healthz, /readyz and Prometheus /metrics; off when unset.
    #[arg(long, env = "ADMIN_PORT")]
    pub admin_port: Option<u16>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Probe this service's /healthz on 127.0.0.1:BIND_PORT; exit 0 if healthy, else 1.
    Healthcheck,
}

/// What [`run`] needs besides its listeners.
#[derive(Debug, Clone)]
pub struct Settings {
    pub redis: RedisArgs,
    /// The counter's key: [`KEY`] for the binary; tests use a key of their own.
    pub key: String,
}

impl From<&Cli> for Settings {
    fn from(cli: &Cli) -> Self {
        Self {
            redis: cli.redis.clone(),
            key: KEY.to_owned(),
        }
    }
}

/// The bound ports.
pub struct Listeners {
    pub web: TcpListener,
    pub admin: Option<TcpListener>,
}

/// Binds `BIND_PORT` (and `ADMIN_PORT` when set) on all addresses; a port that
/// cannot be bound is an error naming its variable.
pub async fn bind(cli: &Cli) -> anyhow::Result<Listeners> {
    let port = cli.bind_port;
    let web = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .map_err(|e| anyhow::anyhow!("BIND_PORT: cannot listen on port {port}: {e}"))?;
    let admin = match cli.admin_port {
        Some(p) => Some(common::admin::bind(p).await?),
        None => None,
    };
    Ok(Listeners { web, admin })
}

/// Handles shared by the request handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    redis: ConnectionManager,
    key: Arc<str>,
    /// Whether the last Redis command succeeded, so that an outage is logged
    /// once when it starts and once when it ends, not once per request.
    redis_up: Arc<AtomicBool>,
}

impl AppState {
    /// Builds the state without connecting: the first request connects.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let client = common::queue::client(&settings.redis)?;
        Ok(Self {
            redis: common::queue::manager(client)?,
            key: settings.key.as_str().into(),
            redis_up: Arc::new(AtomicBool::new(true)),
        })
    }

    fn redis_ok(&self) {
        if !self.redis_up.swap(true, Ordering::Relaxed) {
            tracing::info!("redis is back");
        }
    }

    fn redis_failed(&self, e: &redis::RedisError) {
        metrics::counter!("hits_redis_errors_total").increment(1);
        if self.redis_up.swap(false, Ordering::Relaxed) {
            tracing::warn!(cause = %e, "redis unavailable; answering 503 until it is back");
        }
    }

    async fn ping(&self) -> Result<(), String> {
        let mut conn = self.redis.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))
    }
}

/// The routes: `/` counts, `/healthz` and `/readyz` probe.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(hit))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn(common::admin::track_http))
        .with_state(state)
}

const TEXT: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];

async fn hit(State(state): State<AppState>) -> Response {
    let mut conn = state.redis.clone();
    // No retry on failure: INCR is not idempotent, and an increment that might
    // have happened must not be counted twice. The visitor reloads instead.
    match conn.incr::<_, _, i64>(&*state.key, 1).await {
        Ok(n) => {
            state.redis_ok();
            (
                StatusCode::OK,
                TEXT,
                format!("Hello World! I have been seen {n} times.\n"),
            )
                .into_response()
        }
        Err(e) => {
            state.redis_failed(&e);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "Redis is unavailable, so this visit was not counted. Try again in a moment.\n",
            )
                .into_response()
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.ping().await {
        Ok(()) => (StatusCode::OK, TEXT, "ready\n").into_response(),
        Err(what) => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            format!("not ready: {what}\n"),
        )
            .into_response(),
    }
}

/// Serves until `token` is cancelled, then finishes the requests in hand.
pub async fn run(
    listeners: Listeners,
    settings: Settings,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let state = AppState::new(&settings)?;
    let web_addr = listeners.web.local_addr()?;
    tracing::info!(
        addr = %web_addr,
        redis = settings.redis.describe(),
        key = settings.key,
        "hits listening"
    );
    let admin = listeners.admin.map(|listener| {
        let s = state.clone();
        let ready: ReadyCheck = Arc::new(move || {
            let s = s.clone();
            Box::pin(async move { s.ping().await })
        });
        tokio::spawn(common::admin::serve(listener, ready, token.clone()))
    });
    let served = axum::serve(listeners.web, router(state))
        .with_graceful_shutdown(token.clone().cancelled_owned())
        .await;
    // Whatever ended the web server ends the admin server too.
    token.cancel();
    if let Some(admin) = admin {
        admin.await??;
    }
    served?;
    Ok(())
}
