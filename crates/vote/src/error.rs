//! Every way a request can fail, and the answer each one gets.
//!
//! Client faults are 4xx with a message that says what to change; Redis being
//! unreachable is 503 (the client may retry). Answers are plain text: they are
//! read by people using curl or a load tool as often as by browsers.

use axum::extract::rejection::FormRejection;
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::routes::BODY_LIMIT;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The POST came from another site's page (CSRF).
    #[error("cross-site request refused: votes are accepted only from this site's own page")]
    CrossSite,
    /// The body is longer than [`BODY_LIMIT`].
    #[error("request body too large: a vote form is at most {BODY_LIMIT} bytes")]
    TooLarge,
    /// Not `application/x-www-form-urlencoded`.
    #[error("expected an HTML form: Content-Type must be application/x-www-form-urlencoded")]
    NotAForm,
    /// A form, but without a usable `vote` field.
    #[error("malformed form: {0}; send vote=<option key>, e.g. vote=a")]
    BadForm(String),
    /// `vote` is not one of the configured options.
    #[error("unknown option {given:?}: vote must be one of {choices}")]
    UnknownOption { given: String, choices: String },
    /// The vote could not be queued.
    #[error(
        "the vote could not be recorded because Redis is unavailable; please try again shortly"
    )]
    Unavailable(#[source] redis::RedisError),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::CrossSite => StatusCode::FORBIDDEN,
            Error::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::BadForm(_) | Error::UnknownOption { .. } => StatusCode::BAD_REQUEST,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<FormRejection> for Error {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => Error::NotAForm,
            // Buffering the body failed: over the limit, or the body itself
            // was broken (a truncated chunked body, say).
            FormRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Error::TooLarge
            }
            FormRejection::BytesRejection(r) => Error::BadForm(r.body_text()),
            FormRejection::FailedToDeserializeForm(e) => {
                Error::BadForm(deser_detail(&e.body_text()))
            }
            FormRejection::FailedToDeserializeFormBody(e) => {
                Error::BadForm(deser_detail(&e.body_text()))
            }
            other => Error::BadForm(other.body_text()),
        }
    }
}

/// axum says "Failed to deserialize form body: missing field `vote`"; keep the
/// part after the colon.
fn deser_detail(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, d)| d)
        .unwrap_or(text)
        .to_owned()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut res = (status, format!("{self}\n")).into_response();
        // Errors are about one request; never cache them.
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Error::Unavailable(_) = self {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}
