//! Routing and the two handlers of the page.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Form, Router};
use serde::Deserialize;

use common::options::VoteOptions;

use crate::assets;
use crate::error::Error;
use crate::queue::VoteQueue;
use crate::security::{self, SameOrigin};
use crate::templates::{PageView, Pages};
use crate::voter::Voter;

/// Largest accepted request body. A vote form is about 6 bytes (`vote=a`);
/// anything much longer is not our form.
pub const BODY_LIMIT: usize = 1024;

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    view: Arc<PageView>,
    pages: Arc<Pages>,
    queue: VoteQueue,
    /// Whether the last queue attempt worked: failures are logged on the
    /// transition only, not once per request while Redis is down.
    redis_up: Arc<AtomicBool>,
}

impl AppState {
    /// Fails only if the page template cannot render.
    pub fn new(
        options: VoteOptions,
        hostname: String,
        queue: VoteQueue,
    ) -> Result<Self, askama::Error> {
        let view = Arc::new(PageView::new(options, hostname));
        Ok(Self {
            pages: Arc::new(Pages::render(&view)?),
            view,
            queue,
            redis_up: Arc::new(AtomicBool::new(true)),
        })
    }
}

/// The public routes: the page, its form, its static files. Every response
/// carries the security headers; requests are counted and timed for
/// `/metrics` by route pattern and status.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/",
            get(show)
                .post(vote)
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .route("/static/{name}", get(assets::serve))
        .fallback(not_found)
        .layer(middleware::from_fn(common::admin::track_http))
        .layer(middleware::map_response(security::add_headers))
        .with_state(state)
}

/// `GET /`: the page, no choice marked. Sets the voter cookie on a first visit.
async fn show(State(state): State<AppState>, voter: Voter) -> impl IntoResponse {
    (voter.cookie(), state.pages.get(None))
}

/// The form: one field, `vote`, the key of an option (`a`, `b`, ...).
#[derive(Deserialize)]
struct VoteForm {
    vote: String,
}

/// `POST /`: queue the vote, then show the page with the choice marked.
async fn vote(
    State(state): State<AppState>,
    _: SameOrigin,
    voter: Voter,
    form: Result<Form<VoteForm>, FormRejection>,
) -> Result<impl IntoResponse, Error> {
    let Form(form) = form?;
    let key = match state.view.options.get(&form.vote) {
        Some(option) => option.key,
        None => {
            return Err(Error::UnknownOption {
                given: form.vote,
                choices: state
                    .view
                    .options
                    .iter()
                    .map(|o| o.key)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    match state.queue.push(&voter.id, key).await {
        Ok(seq) => {
            metrics::counter!("votes_queued_total", "vote" => key).increment(1);
            if !state.redis_up.swap(true, Ordering::Relaxed) {
                tracing::info!("redis is back: votes are queued again");
            }
            tracing::debug!(voter = voter.id.as_str(), vote = key, seq, "vote queued");
        }
        Err(e) => {
            metrics::counter!("redis_errors_total").increment(1);
            if state.redis_up.swap(false, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot queue votes: redis unavailable; answering 503 until it is back");
            } else {
                tracing::debug!(error = %e, "vote refused: redis unavailable");
            }
            return Err(Error::Unavailable(e));
        }
    }
    Ok((voter.cookie(), state.pages.get(Some(key))))
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}
