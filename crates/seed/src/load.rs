//! Sending the votes: `concurrency` tasks sharing one pooled HTTP/1.1 client.
//!
//! Each task takes the next vote from a shared [`Chooser`] (smooth weighted
//! round robin, so the split holds at every moment and the counts come out
//! exact), waits for the rate limiter if there is one, POSTs `vote=<key>` and
//! records the latency in its own histogram; the histograms are merged at the
//! end. Nothing is shared per request but a few atomics and a short mutex.
//!
//! Returning voters are dealt out to the tasks (voter `v` belongs to task
//! `v % tasks`), so a voter never has two votes in flight: the order of their
//! votes is the order the vote service saw, and their last vote, the one that
//! counts, is known.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, COOKIE};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::plan::{Plan, Stop};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1.1 client with room for `connections` idle connections
/// per host, so every task keeps its connection between requests.
pub fn http_client(connections: usize, connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The connection could not be made (refused, unreachable, DNS).
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// An answer with this (4xx or 5xx) status.
    Status(u16),
    /// The connection broke mid-request.
    Other,
}

impl Failure {
    /// The name used in the summary and the JSON report.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect => "connect".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Status(s) => format!("status {s}"),
            Failure::Other => "other".into(),
        }
    }
}

/// Smooth weighted round robin: over any `sum(weights)` consecutive picks each
/// option comes up exactly `weight` times, evenly spread.
#[derive(Debug)]
pub struct Chooser {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl Chooser {
    pub fn new(weights: &[u64]) -> Self {
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let weights: Vec<i64> = weights.iter().map(|w| (w / g) as i64).collect();
        Self {
            current: vec![0; weights.len()],
            total: weights.iter().sum(),
            weights,
        }
    }

    /// The index of the next option.
    pub fn pick(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Live counters, read by the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

/// What a load run did.
#[derive(Debug)]
pub struct Outcome {
    pub sent: u64,
    pub succeeded: u64,
    /// Failures by kind.
    pub failures: BTreeMap<Failure, u64>,
    /// One example cause per kind, to tell the user why.
    pub causes: BTreeMap<Failure, String>,
    /// Latencies of the requests that got an answer, in microseconds.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    /// When the last answer arrived.
    pub finished: Instant,
    /// The votes that count once everything is processed, per option: one per
    /// new voter, plus each returning voter's last successful vote.
    pub counted: BTreeMap<String, i64>,
    /// Sending stopped early (Ctrl-C).
    pub interrupted: bool,
}

impl Outcome {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.sent as f64 / s
        } else {
            0.0
        }
    }
}

struct Ctx {
    client: HttpClient,
    url: Uri,
    timeout: Duration,
    bodies: Vec<Bytes>,
    chooser: Mutex<Chooser>,
    /// Votes still to hand out ([`Stop::Count`]); `u64::MAX` with a duration.
    remaining: AtomicU64,
    deadline: Option<Instant>,
    limiter: Option<DefaultDirectRateLimiter>,
    counters: Arc<Counters>,
    token: CancellationToken,
}

impl Ctx {
    /// The option of the next vote, or `None` when it is time to stop.
    fn next_vote(&self) -> Option<usize> {
        if self.should_stop() {
            return None;
        }
        if self.deadline.is_none() {
            self.remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .ok()?;
        }
        Some(
            self.chooser
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pick(),
        )
    }

    fn should_stop(&self) -> bool {
        self.token.is_cancelled() || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    async fn post(&self, option: usize, voter: Option<&str>) -> Result<(), (Failure, String)> {
        let mut req = Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(id) = voter {
            req = req.header(COOKIE, format!("voter_id={id}"));
        }
        let req = req
            .body(Full::new(self.bodies[option].clone()))
            .expect("a valid request");
        let exchange = async {
            let res = self.client.request(req).await.map_err(|e| {
                let kind = if e.is_connect() {
                    Failure::Connect
                } else {
                    Failure::Other
                };
                (kind, error_chain(&e))
            })?;
            let status = res.status();
            // Read the page to the end so the connection can be reused.
            res.into_body()
                .collect()
                .await
                .map_err(|e| (Failure::Other, error_chain(&e)))?;
            if status.is_client_error() || status.is_server_error() {
                return Err((Failure::Status(status.as_u16()), status.to_string()));
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err((
                Failure::Timeout,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

/// The error and its causes on one line: `client error (Connect): tcp connect
/// error: Connection refused (os error 111)`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

struct TaskResult {
    latency: Histogram<u64>,
    failures: BTreeMap<Failure, u64>,
    causes: BTreeMap<Failure, String>,
    new_votes: Vec<i64>,
    /// Each of this task's returning voters: the last option they got counted.
    last_votes: Vec<Option<usize>>,
    finished: Option<Instant>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

/// Sends the plan's votes with `client`, updating `counters` as it goes.
/// Cancelling `token` stops sending (the requests in flight finish).
pub async fn run(
    plan: &Plan,
    client: HttpClient,
    counters: Arc<Counters>,
    token: CancellationToken,
) -> Outcome {
    let weights: Vec<u64> = plan.votes.iter().map(|(_, n)| *n).collect();
    let start = Instant::now();
    let (remaining, deadline) = match plan.stop {
        Stop::Count(n) => (n, None),
        Stop::Duration(d) => (u64::MAX, Some(start + d)),
    };
    let ctx = Arc::new(Ctx {
        client,
        url: plan.url.clone(),
        timeout: plan.timeout,
        bodies: plan
            .votes
            .iter()
            .map(|(k, _)| Bytes::from(format!("vote={k}")))
            .collect(),
        chooser: Mutex::new(Chooser::new(&weights)),
        remaining: AtomicU64::new(remaining),
        deadline,
        // A burst of one: requests are spread evenly over each second.
        limiter: plan
            .rate
            .map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(1.try_into().unwrap()))),
        counters: counters.clone(),
        token,
    });
    let tasks = plan.effective_concurrency();
    // Voter v belongs to task v % tasks.
    let mut pools: Vec<Vec<String>> = vec![Vec::new(); tasks];
    for v in 0..plan.returning_voters {
        pools[v % tasks].push(format!("{:032x}", rand::random::<u128>()));
    }
    let handles: Vec<_> = pools
        .into_iter()
        .map(|voters| tokio::spawn(task(ctx.clone(), voters)))
        .collect();

    let mut latency = histogram();
    let mut failures = BTreeMap::new();
    let mut causes = BTreeMap::new();
    let mut counted_idx = vec![0i64; plan.votes.len()];
    let mut finished = start;
    for h in handles {
        let r = h.await.expect("a load task panicked");
        latency.add(&r.latency).expect("same bounds");
        for (k, n) in r.failures {
            *failures.entry(k).or_insert(0) += n;
        }
        for (k, c) in r.causes {
            causes.entry(k).or_insert(c);
        }
        for (i, n) in r.new_votes.iter().enumerate() {
            counted_idx[i] += n;
        }
        for i in r.last_votes.into_iter().flatten() {
            counted_idx[i] += 1;
        }
        if let Some(f) = r.finished {
            finished = finished.max(f);
        }
    }
    let elapsed = finished - start;
    Outcome {
        sent: counters.sent.load(Ordering::Relaxed),
        succeeded: counters.succeeded.load(Ordering::Relaxed),
        failures,
        causes,
        latency,
        elapsed,
        finished,
        counted: plan
            .votes
            .iter()
            .zip(counted_idx)
            .map(|((k, _), n)| (k.clone(), n))
            .collect(),
        interrupted: ctx.token.is_cancelled(),
    }
}

async fn task(ctx: Arc<Ctx>, voters: Vec<String>) -> TaskResult {
    let mut r = TaskResult {
        latency: histogram(),
        failures: BTreeMap::new(),
        causes: BTreeMap::new(),
        new_votes: vec![0; ctx.bodies.len()],
        last_votes: vec![None; voters.len()],
        finished: None,
    };
    let mut turn = 0usize;
    while let Some(option) = ctx.next_vote() {
        if let Some(limiter) = &ctx.limiter {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = ctx.token.cancelled() => break,
            }
            // The wait may have outlasted the duration.
            if ctx.should_stop() {
                break;
            }
        }
        let voter = (!voters.is_empty()).then(|| turn % voters.len());
        turn = turn.wrapping_add(1);
        let sent_at = Instant::now();
        ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
        let res = ctx.post(option, voter.map(|v| voters[v].as_str())).await;
        let now = Instant::now();
        r.finished = Some(now);
        match res {
            Ok(()) => {
                let _ = r.latency.record((now - sent_at).as_micros().max(1) as u64);
                ctx.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                match voter {
                    Some(v) => r.last_votes[v] = Some(option),
                    None => r.new_votes[option] += 1,
                }
            }
            Err((kind, cause)) => {
                if matches!(kind, Failure::Status(_)) {
                    let _ = r.latency.record((now - sent_at).as_micros().max(1) as u64);
                }
                ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
                *r.failures.entry(kind.clone()).or_insert(0) += 1;
                r.causes.entry(kind).or_insert(cause);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chooser_is_exact_and_even() {
        let mut c = Chooser::new(&[2000, 1000]);
        let picks: Vec<usize> = (0..3000).map(|_| c.pick()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 2000);
        assert_eq!(&picks[..6], &[0, 1, 0, 0, 1, 0]);
        let mut c = Chooser::new(&[1999, 1001, 7]);
        let picks: Vec<usize> = (0..3007).map(|_| c.pick()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 7);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 1001);
        let mut c = Chooser::new(&[0, 5]);
        assert!((0..10).all(|_| c.pick() == 1));
    }

    #[test]
    fn failures_have_short_names() {
        assert_eq!(Failure::Status(503).kind(), "status 503");
        assert_eq!(Failure::Connect.kind(), "connect");
    }
}
