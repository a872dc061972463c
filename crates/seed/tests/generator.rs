//! The seed binary against a small axum server of the test's own, standing in
//! for vote (records every POST) and result (`/events` pushes the tallies of
//! what it recorded): what is sent, how failures end the run, and how
//! `--verify` judges the tallies.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use common::tally::Tallies;
use futures::Stream;
use tokio::net::TcpListener;

/// One POST as the fake vote service saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    content_type: String,
    voter: Option<String>,
}

#[derive(Clone, Default)]
struct Fake {
    posts: Arc<Mutex<Vec<Seen>>>,
    /// Answer POSTs with 503, as vote does while Redis is down.
    fail: Arc<AtomicBool>,
    /// Stop counting, as when the worker is stopped.
    frozen: Arc<AtomicBool>,
    frozen_at: Arc<Mutex<Option<Tallies>>>,
}

/// Votes already counted before the test, so --verify must add to them.
const BASELINE: [(&str, i64); 2] = [("a", 5), ("b", 1)];

impl Fake {
    fn tallies(&self) -> Tallies {
        if self.frozen.load(Ordering::SeqCst) {
            let mut f = self.frozen_at.lock().unwrap();
            return f.get_or_insert_with(|| self.count()).clone();
        }
        self.count()
    }

    /// One vote per new voter, the last one of each returning voter.
    fn count(&self) -> Tallies {
        let mut counts: BTreeMap<String, i64> =
            BASELINE.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        let mut last: HashMap<String, String> = HashMap::new();
        for p in self.posts.lock().unwrap().iter() {
            let vote = p.body.trim_start_matches("vote=").to_owned();
            match &p.voter {
                Some(id) => {
                    last.insert(id.clone(), vote);
                }
                None => *counts.entry(vote).or_insert(0) += 1,
            }
        }
        for vote in last.into_values() {
            *counts.entry(vote).or_insert(0) += 1;
        }
        let total = counts.values().sum();
        Tallies { counts, total }
    }
}

async fn vote(State(f): State<Fake>, headers: HeaderMap, body: String) -> StatusCode {
    if f.fail.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let voter = headers
        .get("cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.strip_prefix("voter_id="))
        .map(str::to_owned);
    let content_type = headers
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .unwrap_or("")
        .to_owned();
    f.posts.lock().unwrap().push(Seen {
        body,
        content_type,
        voter,
    });
    StatusCode::OK
}

async fn events(State(f): State<Fake>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((f, true), |(f, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let data = serde_json::to_string(&f.tallies()).unwrap();
        Some((Ok(Event::default().data(data)), (f, false)))
    });
    Sse::new(stream)
}

async fn start_fake() -> (String, Fake) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/", get(|| async { "the vote page" }).post(vote))
        .route("/events", get(events))
        .with_state(fake.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs the seed binary with `args`, in an environment without any of its
/// settings but those given.
async fn seed(args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_seed"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SEED_") || k == "VOTE_URL" || k == "RESULT_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env(
        "SEED_DATA_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../seed-data"),
    );
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.args(args).output())
        .await
        .expect("seed finished within 2 minutes")
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn by_default_it_sends_the_original_three_thousand_new_voters() {
    let (url, fake) = start_fake().await;
    let run = seed(&["--url", &url, "--json"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let posts = fake.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 3000);
    assert_eq!(posts.iter().filter(|p| p.body == "vote=a").count(), 2000);
    assert_eq!(posts.iter().filter(|p| p.body == "vote=b").count(), 1000);
    assert!(posts
        .iter()
        .all(|p| p.content_type == "application/x-www-form-urlencoded"));
    assert!(
        posts.iter().all(|p| p.voter.is_none()),
        "new voters send no cookie"
    );
    let report = run.json();
    assert_eq!(report["sent"], 3000);
    assert_eq!(report["succeeded"], 3000);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["counted"]["a"], 2000);
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(report["requests_per_second"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn the_text_summary_names_every_figure() {
    let (url, _fake) = start_fake().await;
    let run = seed(&["--url", &url, "--count", "30", "--split", "a=1,b=1,c=1"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for needle in [
        "sent 30 votes",
        "30 succeeded, 0 failed",
        "throughput",
        "p50",
        "p90",
        "p99",
        "max",
        "connect 0, timeout 0",
        "a 10, b 10, c 10",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle:?} in:\n{}",
            run.stdout
        );
    }
    // Not a terminal: plain lines, never a redrawn bar.
    assert!(!run.stderr.contains('\r'), "{:?}", run.stderr);
}

#[tokio::test]
async fn returning_voters_keep_their_cookie_and_change_their_vote() {
    let (url, fake) = start_fake().await;
    let run = seed(&[
        "--url",
        &url,
        "--count",
        "200",
        "--returning-voters",
        "10",
        "--json",
    ])
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let posts = fake.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 200);
    let mut per_voter: HashMap<String, usize> = HashMap::new();
    for p in &posts {
        let id = p.voter.clone().expect("every vote carries a cookie");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        *per_voter.entry(id).or_default() += 1;
    }
    // Ten voters, each voting many times (how many depends on how fast each
    // one's answers come back).
    assert_eq!(per_voter.len(), 10, "{per_voter:?}");
    assert_eq!(per_voter.values().sum::<usize>(), 200);
    // What counts: one vote per voter.
    let counted = &run.json()["counted"];
    assert_eq!(
        counted["a"].as_i64().unwrap() + counted["b"].as_i64().unwrap(),
        10
    );
}

#[tokio::test]
async fn the_changes_scenario_verifies_against_the_last_votes() {
    let (url, _fake) = start_fake().await;
    let run = seed(&[
        "--url",
        &url,
        "--result-url",
        &url,
        "--scenario",
        "changes",
        "--verify",
        "--json",
    ])
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let v = &run.json()["verify"];
    assert_eq!(v["ok"], true);
    assert_eq!(v["baseline"]["total"], 6);
    assert_eq!(v["expected"]["total"], 306, "baseline + 300 voters");
}

#[tokio::test]
async fn verify_adds_the_run_to_the_baseline_and_reports_the_delay() {
    let (url, fake) = start_fake().await;
    let run = seed(&[
        "--url",
        &url,
        "--result-url",
        &url,
        "--count",
        "90",
        "--verify",
    ])
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("verified    every vote counted"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("a 65, b 31 (total 96)"),
        "{}",
        run.stdout
    );
    assert_eq!(fake.posts.lock().unwrap().len(), 90);
}

#[tokio::test]
async fn verify_fails_clearly_when_votes_are_not_counted() {
    let (url, fake) = start_fake().await;
    fake.frozen.store(true, Ordering::SeqCst);
    let run = seed(&[
        "--url",
        &url,
        "--result-url",
        &url,
        "--count",
        "30",
        "--verify",
        "--verify-timeout",
        "1s",
    ])
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("NOT VERIFIED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("a: expected 25, seen 5 (20 missing)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("b: expected 11, seen 1 (10 missing)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("is the worker running?"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn failed_requests_make_the_exit_status_non_zero() {
    let (url, fake) = start_fake().await;
    fake.fail.store(true, Ordering::SeqCst);
    let run = seed(&["--url", &url, "--count", "40", "--json"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["failed"], 40);
    assert_eq!(report["failures"]["status 503"], 40);

    let run = seed(&["--url", &url, "--count", "40"]).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.contains("status 503: 40"), "{}", run.stdout);
}

#[tokio::test]
async fn nothing_listening_is_a_clear_error_after_a_bounded_wait() {
    let port = testkit::free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let run = seed(&["--url", &url, "--wait", "500ms"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the vote service at {url} did not answer within 500ms"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("VOTE_URL"), "{}", run.stderr);
}

#[tokio::test]
async fn verify_without_a_result_service_says_so() {
    let (url, fake) = start_fake().await;
    let nowhere = format!("http://127.0.0.1:{}/", testkit::free_port());
    let run = seed(&[
        "--url",
        &url,
        "--result-url",
        &nowhere,
        "--verify",
        "--wait",
        "300ms",
    ])
    .await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("RESULT_URL"), "{}", run.stderr);
    assert!(
        fake.posts.lock().unwrap().is_empty(),
        "nothing is sent when verification cannot work"
    );
}

#[tokio::test]
async fn a_malformed_scenario_is_refused_naming_the_line() {
    let dir = std::env::temp_dir().join(testkit::unique_name("seed-scenario"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.scenario");
    std::fs::write(&file, "# fine\na 10\nb ten\n").unwrap();
    let (url, fake) = start_fake().await;
    let run = seed(&["--url", &url, "--scenario", file.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("bad.scenario: line 3: `b` takes a whole number of votes"),
        "{}",
        run.stderr
    );
    assert!(fake.posts.lock().unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bad_flags_exit_2_naming_the_setting() {
    let run = seed(&["--concurrency", "0"]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("SEED_CONCURRENCY"), "{}", run.stderr);
    let run = seed(&["--url", "https://vote/"]).await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("https is not supported"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_duration_and_a_rate_bound_the_run() {
    let (url, fake) = start_fake().await;
    let run = seed(&["--url", &url, "--duration", "1s", "--rate", "20", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let sent = run.json()["sent"].as_u64().unwrap();
    // 20 per second for one second, give or take the first token.
    assert!((1..=25).contains(&sent), "{sent}");
    assert_eq!(fake.posts.lock().unwrap().len() as u64, sent);
}
