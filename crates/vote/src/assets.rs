//! The stylesheet and icon, compiled into the binary and served from memory.
//!
//! Each file is reachable under a fingerprinted name (`vote.<hash>.css`,
//! the hash computed from its bytes at compile time), which the page links
//! and browsers may cache for a year without asking again: a new build with a
//! changed file gets a new name. The plain name (`vote.css`) is also served,
//! for anyone who links it by hand, with `no-cache` so it is revalidated with
//! its `ETag`.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    /// Plain name, e.g. `vote.css`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// FNV-1a of the bytes, computed at compile time.
    pub hash: u64,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

macro_rules! asset {
    ($name:literal, $ty:literal) => {{
        const BYTES: &[u8] = include_bytes!(concat!("../static/", $name));
        Asset {
            name: $name,
            content_type: $ty,
            bytes: BYTES,
            hash: fnv1a(BYTES),
        }
    }};
}

pub static CSS: Asset = asset!("vote.css", "text/css; charset=utf-8");
pub static ICON: Asset = asset!("favicon.svg", "image/svg+xml");
static ALL: [&Asset; 2] = [&CSS, &ICON];

/// Names and headers computed once.
struct Served {
    asset: &'static Asset,
    fingerprinted: String,
    href: String,
    etag: HeaderValue,
}

fn served() -> &'static [Served] {
    static SERVED: OnceLock<Vec<Served>> = OnceLock::new();
    SERVED.get_or_init(|| {
        ALL.iter()
            .map(|a| {
                let tag = format!("{:016x}", a.hash);
                let fingerprinted = match a.name.rsplit_once('.') {
                    Some((stem, ext)) => format!("{stem}.{}.{ext}", &tag[..12]),
                    None => format!("{}.{}", a.name, &tag[..12]),
                };
                Served {
                    asset: a,
                    href: format!("/static/{fingerprinted}"),
                    fingerprinted,
                    etag: HeaderValue::try_from(format!("\"{tag}\"")).expect("hex is valid"),
                }
            })
            .collect()
    })
}

/// The URL the page links for `asset`.
pub fn href(asset: &Asset) -> &'static str {
    served()
        .iter()
        .find(|s| std::ptr::eq(s.asset, asset))
        .map(|s| s.href.as_str())
        .expect("every asset is in ALL")
}

/// `GET /static/{name}`.
pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let found = served().iter().find_map(|s| {
        if s.fingerprinted == name {
            Some((s, "public, max-age=31536000, immutable"))
        } else if s.asset.name == name {
            Some((s, "no-cache"))
        } else {
            None
        }
    });
    let Some((s, cache)) = found else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let common = [
        (CACHE_CONTROL, HeaderValue::from_static(cache)),
        (ETAG, s.etag.clone()),
    ];
    let unchanged = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == s.etag || t.trim() == "*"));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(CONTENT_TYPE, HeaderValue::from_static(s.asset.content_type))],
        s.asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprinted_names_carry_the_hash() {
        let h = href(&CSS);
        assert!(h.starts_with("/static/vote.") && h.ends_with(".css"), "{h}");
        assert_eq!(h.len(), "/static/vote..css".len() + 12);
        assert_ne!(href(&CSS), href(&ICON));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
