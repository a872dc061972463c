//! HTTP: the page, the event stream, the two static files.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use common::options::VoteOptions;
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::feed::{Latest, Snapshot};
use crate::page::ResultPage;

/// What the handlers share; every field is cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub options: Arc<VoteOptions>,
    /// The latest tallies, published by [`crate::feed`].
    pub latest: Latest,
    /// Cancelled at shutdown: every SSE stream ends with it.
    pub shutdown: CancellationToken,
}

/// How long a browser waits before reconnecting a dropped stream (`retry:`).
pub const RETRY: Duration = Duration::from_millis(1000);
/// Keep-alive comment interval: below the usual 30-60 s proxy idle timeouts.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Everything the page loads comes from this origin, and nothing inline.
pub(crate) const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/static/result.js", get(script))
        .route("/static/result.css", get(style))
        .layer(axum::middleware::from_fn(common::admin::track_http))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

async fn page(State(s): State<AppState>) -> ResultPage {
    let latest = s.latest.borrow().clone();
    ResultPage::new(&s.options, latest.as_deref().map(|l| &l.tallies))
}

async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../assets/result.js"),
    )
}

async fn style() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../assets/result.css"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Short: a new release's script must not be shadowed for long.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// `GET /events`: the current tallies at once, then each change, until the
/// client leaves or the service shuts down.
async fn events(State(s): State<AppState>) -> Response {
    let sse = Sse::new(tally_events(s.latest, s.shutdown))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    (
        // Nginx and friends buffer responses unless told not to.
        [("x-accel-buffering", "no")],
        sse,
    )
        .into_response()
}

/// Counts a connected client for as long as its stream lives.
struct ClientGuard;

impl ClientGuard {
    fn new() -> Self {
        metrics::gauge!("sse_clients").increment(1.0);
        ClientGuard
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        metrics::gauge!("sse_clients").decrement(1.0);
    }
}

/// One connected SSE client: which snapshots it still has to get. Both ways
/// of serving `/events` (the axum route and [`crate::server`]'s direct path)
/// use it, so they send the same events.
pub(crate) struct Client {
    latest: Latest,
    shutdown: CancellationToken,
    first: bool,
    _guard: ClientGuard,
}

impl Client {
    pub(crate) fn new(latest: Latest, shutdown: CancellationToken) -> Self {
        Self {
            latest,
            shutdown,
            first: true,
            _guard: ClientGuard::new(),
        }
    }

    /// The next snapshot to send (the current one first, as soon as there
    /// is one; then each change) and whether it is the first; `None` at
    /// shutdown. A client slow to take events skips intermediate ones (the
    /// watch keeps only the newest), which is right for tallies.
    pub(crate) async fn next(&mut self) -> Option<(Arc<Snapshot>, bool)> {
        let wait_for_change = !(self.first && self.latest.borrow().is_some());
        if wait_for_change {
            loop {
                tokio::select! {
                    // Shutdown ends the stream, so graceful shutdown can finish.
                    _ = self.shutdown.cancelled() => return None,
                    changed = self.latest.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                }
                if self.latest.borrow().is_some() {
                    break;
                }
            }
        }
        let snap: Arc<Snapshot> = self.latest.borrow_and_update().clone()?;
        let first = std::mem::replace(&mut self.first, false);
        if !first {
            if let Some(at) = snap.notified_at {
                metrics::histogram!("notify_to_send_seconds").record(at.elapsed().as_secs_f64());
            }
        }
        metrics::counter!("sse_events_sent_total").increment(1);
        Some((snap, first))
    }
}

/// The event stream of one client, for axum's [`Sse`].
pub(crate) fn tally_events(
    latest: Latest,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures::stream::unfold(Client::new(latest, shutdown), |mut c| async move {
        let (snap, first) = c.next().await?;
        let mut event = Event::default().data(&snap.json);
        if first {
            event = event.retry(RETRY);
        }
        Some((Ok(event), c))
    })
}
