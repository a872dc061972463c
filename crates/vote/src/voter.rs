//! The voter's identity: a random id in the `voter_id` cookie.
//!
//! One browser, one voter: the id is set on the first visit and kept, so a
//! second vote from the same browser replaces the first (the worker keeps one
//! row per voter id). The id is 128 random bits in lower-case hex; an id the
//! original Python app set (64 bits, possibly shorter in hex) is kept too. A
//! cookie that is not such an id (too short, too long, not hex) is treated as
//! absent and replaced, so nothing a client sends reaches the queue unchecked.

use std::convert::Infallible;
use std::fmt::Write;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponseParts, ResponseParts};

/// Name of the cookie, as in the original app.
pub const COOKIE_NAME: &str = "voter_id";
/// Cookie lifetime: 400 days, the most browsers keep a cookie.
pub const MAX_AGE_SECS: u32 = 400 * 24 * 3600;
/// Shortest id accepted (the original's 64 bits can lose leading zeros in hex).
const MIN_LEN: usize = 8;
/// Longest id accepted; ours are 32.
const MAX_LEN: usize = 64;

/// A well-formed voter id: `MIN_LEN..=MAX_LEN` lower-case hex digits. Being
/// hex, it needs no escaping in JSON or in a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterId(String);

impl VoterId {
    /// A fresh id: 128 bits from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let bits: u128 = rand::random();
        let mut s = String::with_capacity(32);
        // Writing to a String cannot fail.
        let _ = write!(s, "{bits:032x}");
        Self(s)
    }

    /// `Some` when `s` is a well-formed id.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (MIN_LEN..=MAX_LEN).contains(&s.len())
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `Set-Cookie` value that stores this id. HttpOnly (no script needs
    /// it), SameSite=Lax (sent on the top-level form POST, not on cross-site
    /// subrequests), long-lived.
    pub fn set_cookie(&self) -> HeaderValue {
        let v = format!(
            "{COOKIE_NAME}={}; Max-Age={MAX_AGE_SECS}; Path=/; HttpOnly; SameSite=Lax",
            self.0
        );
        HeaderValue::try_from(v).expect("hex ids make a valid header value")
    }
}

/// The voter of a request: the id from the cookie, or a new one that the
/// response must set.
#[derive(Debug, Clone)]
pub struct Voter {
    pub id: VoterId,
    pub is_new: bool,
}

impl Voter {
    /// Reads the first well-formed `voter_id` from the `Cookie` headers.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        let found = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE_NAME)
            .find_map(|(_, value)| VoterId::parse(value.trim_matches('"')));
        match found {
            Some(id) => Voter { id, is_new: false },
            None => Voter {
                id: VoterId::generate(),
                is_new: true,
            },
        }
    }

    /// What the response must carry for this voter: the cookie, if new.
    pub fn cookie(&self) -> SetVoterCookie {
        SetVoterCookie(self.is_new.then(|| self.id.set_cookie()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Voter {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Voter::from_headers(&parts.headers))
    }
}

/// Response part setting the `voter_id` cookie when there is one to set.
pub struct SetVoterCookie(Option<HeaderValue>);

impl IntoResponseParts for SetVoterCookie {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if let Some(v) = self.0 {
            res.headers_mut().append(SET_COOKIE, v);
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn generated_ids_are_128_bit_hex_and_differ() {
        let a = VoterId::generate();
        let b = VoterId::generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(VoterId::parse(a.as_str()).is_some());
        assert_ne!(a, b);
    }

    #[test]
    fn keeps_a_well_formed_cookie() {
        let v = Voter::from_headers(&headers(&["theme=dark; voter_id=0123456789abcdef; x=1"]));
        assert!(!v.is_new);
        assert_eq!(v.id.as_str(), "0123456789abcdef");
        assert!(v.cookie().0.is_none());
    }

    #[test]
    fn finds_the_cookie_in_any_cookie_header() {
        let v = Voter::from_headers(&headers(&["a=b", "voter_id=deadbeefdeadbeef"]));
        assert_eq!(v.id.as_str(), "deadbeefdeadbeef");
    }

    #[test]
    fn malformed_cookies_are_treated_as_absent() {
        for bad in [
            "voter_id=",
            "voter_id=xyz",
            "voter_id=DEADBEEFDEADBEEF",
            "voter_id=abc",
            "voter_id=0123456789abcdef\"\\,",
            "voter_id=1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef0",
            "other_voter_id=0123456789abcdef",
        ] {
            let v = Voter::from_headers(&headers(&[bad]));
            assert!(v.is_new, "{bad} was accepted");
            assert_eq!(v.id.as_str().len(), 32);
        }
        assert!(Voter::from_headers(&HeaderMap::new()).is_new);
    }

    #[test]
    fn set_cookie_has_the_safe_attributes() {
        let v = Voter::from_headers(&HeaderMap::new());
        let c = v.cookie().0.unwrap();
        let c = c.to_str().unwrap();
        assert!(
            c.starts_with(&format!("voter_id={};", v.id.as_str())),
            "{c}"
        );
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=34560000"] {
            assert!(c.contains(attr), "{attr} missing in {c}");
        }
    }
}
