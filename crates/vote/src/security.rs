//! Browser-facing protections: refusing cross-site POSTs, and the security
//! headers every response carries.
//!
//! **Cross-site POSTs.** A page on another site could otherwise make a visitor's
//! browser vote (with the visitor's `voter_id` cookie) through a hidden form.
//! The check follows the approach of Go's `http.CrossOriginProtection`, which
//! needs no token and so keeps the plain HTML form working without JavaScript:
//! - a browser that sends `Sec-Fetch-Site` (all current ones) is trusted when
//!   it says `same-origin` or `none` (typed URL, bookmark); `same-site` and
//!   `cross-site` are refused, since a sibling subdomain is not this app;
//! - otherwise an `Origin` header must name this host (`Host`, port included);
//! - a request with neither (curl, the seed tool, any non-browser client)
//!   cannot be a browser tricked by another page, and is accepted.

use axum::extract::FromRequestParts;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, HOST, ORIGIN, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

use crate::error::Error;

/// Only this origin, for everything; no framing, forms post only here. The
/// page has no inline script or style, so nothing needs `unsafe-inline`.
pub const CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Extractor that refuses a cross-site request with 403 ([`Error::CrossSite`]).
/// Put it first among a handler's arguments so the body is never read.
pub struct SameOrigin;

impl<S: Send + Sync> FromRequestParts<S> for SameOrigin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if is_same_origin(parts) {
            Ok(SameOrigin)
        } else {
            Err(Error::CrossSite)
        }
    }
}

fn is_same_origin(parts: &Parts) -> bool {
    if let Some(site) = parts.headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = parts.headers.get(ORIGIN) else {
        return true;
    };
    // HTTP/1.1 carries the host in `Host`, HTTP/2 in the URI's authority.
    let host = parts
        .headers
        .get(HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()));
    let origin_host = origin
        .as_bytes()
        .strip_prefix(b"http://")
        .or_else(|| origin.as_bytes().strip_prefix(b"https://"));
    match (origin_host, host) {
        (Some(o), Some(h)) => o.eq_ignore_ascii_case(h),
        // `Origin: null` (sandboxed frames, privacy redirects) or no host at all.
        _ => false,
    }
}

/// The headers every response carries (set unless the handler set them).
pub fn headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

/// Response mapper adding [`headers`]; cheap (static values, no allocation).
pub async fn add_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (name, value) in headers() {
        h.entry(name).or_insert(value);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::post("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn sec_fetch_site_decides_when_present() {
        assert!(is_same_origin(&parts(&[("sec-fetch-site", "same-origin")])));
        assert!(is_same_origin(&parts(&[("sec-fetch-site", "none")])));
        assert!(!is_same_origin(&parts(&[("sec-fetch-site", "cross-site")])));
        assert!(!is_same_origin(&parts(&[("sec-fetch-site", "same-site")])));
        // Even with a matching Origin: the browser's word wins.
        assert!(!is_same_origin(&parts(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://vote.test"),
            ("host", "vote.test"),
        ])));
    }

    #[test]
    fn origin_must_match_host() {
        let ok = |o: &str, h: &str| is_same_origin(&parts(&[("origin", o), ("host", h)]));
        assert!(ok("http://localhost:5000", "localhost:5000"));
        assert!(ok("https://Vote.Example", "vote.example"));
        assert!(!ok("http://evil.example", "localhost:5000"));
        assert!(!ok("http://localhost:5001", "localhost:5000"));
        assert!(!ok("null", "localhost:5000"));
        assert!(!is_same_origin(&parts(&[("origin", "http://x")])));
    }

    #[test]
    fn no_origin_is_not_a_browser_and_passes() {
        assert!(is_same_origin(&parts(&[("host", "localhost")])));
        assert!(is_same_origin(&parts(&[])));
    }
}
