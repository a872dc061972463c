//! `--verify`: proving, on the result service, that every vote was counted.
//!
//! Before sending, the first event of `RESULT_URL/events` gives the tallies as
//! they are (`{"counts":{"a":2000,"b":1000},"total":3000}`, see
//! [`common::tally::Tallies`]). After sending, the expected tallies are that
//! baseline plus the votes that count (one per new voter, the last one of each
//! returning voter); the stream is followed, reconnecting if it drops, until
//! the tallies equal the expected ones or the deadline passes. This assumes
//! nobody else votes meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::tally::Tallies;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::ACCEPT;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::load::error_chain;

/// `<result>/events`.
pub fn events_url(result: &Uri) -> Uri {
    let base = result.to_string();
    let base = base.trim_end_matches('/');
    format!("{base}/events")
        .parse()
        .expect("a valid URL plus a path")
}

/// An SSE stream: yields the `data` of each event.
pub struct Events {
    body: Incoming,
    buf: BytesMut,
}

type SseClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> SseClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

impl Events {
    /// Opens `url` (a `/events` URL); an error says why.
    pub async fn open(url: &Uri) -> Result<Events, String> {
        let req = Request::get(url.clone())
            .header(ACCEPT, "text/event-stream")
            .body(Empty::new())
            .expect("a valid request");
        let res: Response<Incoming> = client().request(req).await.map_err(|e| error_chain(&e))?;
        if !res.status().is_success() {
            return Err(format!("{url} answered {}", res.status()));
        }
        Ok(Events {
            body: res.into_body(),
            buf: BytesMut::new(),
        })
    }

    /// The data of the next event; `Err` when the stream ends or breaks.
    pub async fn next(&mut self) -> Result<String, String> {
        loop {
            match take_event(&mut self.buf) {
                Some(Some(data)) => return Ok(data),
                Some(None) => continue,
                None => {}
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(error_chain(&e)),
                None => return Err("the result service closed the stream".into()),
            }
        }
    }

    /// The next event that holds tallies.
    pub async fn next_tallies(&mut self) -> Result<Tallies, String> {
        loop {
            let data = self.next().await?;
            if let Ok(t) = serde_json::from_str::<Tallies>(&data) {
                return Ok(t);
            }
        }
    }
}

/// Takes one complete event (up to a blank line) off the front of `buf`:
/// `None` if there is none yet, `Some(None)` for an event without data (a
/// keep-alive comment), `Some(Some(data))` otherwise.
fn take_event(buf: &mut BytesMut) -> Option<Option<String>> {
    let (end, sep) = (0..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\n\n") {
            Some((i, 2))
        } else if rest.starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })?;
    let raw = buf.split_to(end + sep);
    let event = String::from_utf8_lossy(&raw[..end]);
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    Some((!data.is_empty()).then(|| data.join("\n")))
}

/// The tallies now: the first event of `<result>/events`, waiting up to `wait`
/// for the result service to answer.
pub async fn baseline(result: &Uri, wait: Duration) -> anyhow::Result<Tallies> {
    let url = events_url(result);
    let deadline = Instant::now() + wait;
    let mut announced = false;
    loop {
        let attempt = async {
            let mut ev = Events::open(&url).await?;
            ev.next_tallies().await
        };
        let last = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(t)) => return Ok(t),
            Ok(Err(e)) => e,
            Err(_) => "no tallies event within 5 s".to_owned(),
        };
        if Instant::now() >= deadline {
            anyhow::bail!(
                "--verify: cannot read the current tallies from {url} within {wait:?}: {last}. \
                 Is the result service running? Set RESULT_URL (or --result-url) to its address"
            );
        }
        if !announced {
            eprintln!("seed: waiting for the result service at {url}: {last}");
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The tallies `baseline` becomes once `counted` is added.
pub fn expected(baseline: &Tallies, counted: &BTreeMap<String, i64>) -> Tallies {
    let mut counts = baseline.counts.clone();
    for (k, n) in counted {
        *counts.entry(k.clone()).or_insert(0) += n;
    }
    let total = counts.values().sum();
    Tallies { counts, total }
}

/// Whether `seen` shows exactly `expected` (an option absent from one counts 0).
pub fn matches(expected: &Tallies, seen: &Tallies) -> bool {
    expected
        .counts
        .keys()
        .chain(seen.counts.keys())
        .all(|k| expected.count(k) == seen.count(k))
}

/// What differs, per option: `a: expected 2000, seen 1500 (500 missing)`.
pub fn differences(expected: &Tallies, seen: &Tallies) -> Vec<String> {
    let mut keys: Vec<&String> = expected.counts.keys().chain(seen.counts.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (e, s) = (expected.count(k), seen.count(k));
            (e != s).then(|| {
                let what = if s < e {
                    format!("{} missing", e - s)
                } else {
                    format!("{} more than sent", s - e)
                };
                format!("{k}: expected {e}, seen {s} ({what})")
            })
        })
        .collect()
}

/// How following the tallies ended.
#[derive(Debug)]
pub enum Verdict {
    /// The expected tallies appeared this long after `since`.
    Counted(Duration),
    /// The deadline passed; the last tallies seen (if any) and the last error.
    Missing {
        seen: Option<Tallies>,
        error: Option<String>,
    },
}

/// Follows `<result>/events` until the tallies equal `expected` or `timeout`
/// has passed since `since` (the last answer of the load).
pub async fn follow(
    result: &Uri,
    expected: &Tallies,
    since: Instant,
    timeout: Duration,
) -> Verdict {
    let url = events_url(result);
    let deadline = tokio::time::Instant::from_std(since + timeout);
    let mut seen: Option<Tallies> = None;
    let mut error: Option<String> = None;
    let watch = async {
        loop {
            match Events::open(&url).await {
                Ok(mut ev) => loop {
                    match ev.next_tallies().await {
                        Ok(t) => {
                            let done = matches(expected, &t);
                            seen = Some(t);
                            if done {
                                return since.elapsed();
                            }
                        }
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                },
                Err(e) => error = Some(e),
            }
            // The result service restarting: reconnect shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    match tokio::time::timeout_at(deadline, watch).await {
        Ok(delay) => Verdict::Counted(delay),
        Err(_) => Verdict::Missing { seen, error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(a: i64, b: i64) -> Tallies {
        Tallies {
            counts: [("a".to_owned(), a), ("b".to_owned(), b)].into(),
            total: a + b,
        }
    }

    #[test]
    fn events_are_cut_at_blank_lines() {
        let mut buf = BytesMut::from(&b": keep-alive\n\ndata: {\"x\":1}\n\ndata: par"[..]);
        assert_eq!(take_event(&mut buf), Some(None));
        assert_eq!(take_event(&mut buf), Some(Some("{\"x\":1}".into())));
        assert_eq!(take_event(&mut buf), None);
        buf.extend_from_slice(b"tial\r\n\r\nevent: x\r\ndata:a\r\ndata:b\r\n\r\n");
        assert_eq!(take_event(&mut buf), Some(Some("partial".into())));
        assert_eq!(take_event(&mut buf), Some(Some("a\nb".into())));
        assert!(buf.is_empty());
    }

    #[test]
    fn expected_adds_what_counts_to_the_baseline() {
        let counted = [("a".to_owned(), 2000), ("b".to_owned(), 1000)].into();
        let e = expected(&t(5, 1), &counted);
        assert_eq!(e, t(2005, 1001));
        assert!(matches(&e, &t(2005, 1001)));
        assert!(!matches(&e, &t(2005, 1000)));
        assert_eq!(
            differences(&e, &t(2000, 1002)),
            vec![
                "a: expected 2005, seen 2000 (5 missing)".to_owned(),
                "b: expected 1001, seen 1002 (1 more than sent)".to_owned()
            ]
        );
    }

    #[test]
    fn events_url_appends_to_the_base() {
        assert_eq!(
            events_url(&"http://result/".parse().unwrap()),
            "http://result/events"
        );
        assert_eq!(
            events_url(&"http://h:1".parse().unwrap()),
            "http://h:1/events"
        );
    }
}
