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
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
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

struct Client {
    latest: Latest,
    shutdown: CancellationToken,
    first: bool,
    _guard: ClientGuard,
}

/// The stream of one client. Each change is read once by the feed and only
/// formatted here; a client that is slow to take events skips intermediate
/// ones (the watch keeps only the newest), which is right for tallies.
pub(crate) fn tally_events(
    latest: Latest,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let client = Client {
        latest,
        shutdown,
        first: true,
        _guard: ClientGuard::new(),
    };
    futures::stream::unfold(client, |mut c| async move {
        // The first event goes out as soon as there are tallies; after that
        // only changes.
        let wait_for_change = !(c.first && c.latest.borrow().is_some());
        if wait_for_change {
            loop {
                tokio::select! {
                    // Shutdown ends the stream, so graceful shutdown can finish.
                    _ = c.shutdown.cancelled() => return None,
                    changed = c.latest.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                }
                if c.latest.borrow().is_some() {
                    break;
                }
            }
        }
        let snap: Arc<Snapshot> = c.latest.borrow_and_update().clone()?;
        let mut event = Event::default().data(&snap.json);
        if c.first {
            event = event.retry(RETRY);
        } else if let Some(at) = snap.notified_at {
            metrics::histogram!("notify_to_send_seconds").record(at.elapsed().as_secs_f64());
        }
        c.first = false;
        metrics::counter!("sse_events_sent_total").increment(1);
        Some((Ok(event), c))
    })
}
