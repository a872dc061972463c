//! `seed`: the load generator of the voting app.
//!
//! The original seed ran ApacheBench three times (3 × 1,000 POSTs, 50 at a
//! time, no cookie: 3,000 new voters, 2,000 for `a` and 1,000 for `b`) and told
//! nobody whether the votes arrived. With no arguments this one does the same,
//! then says what happened, and with `--verify` proves the votes were counted:
//!
//! ```text
//! Cli + scenario file ─► Plan ─► wait for VOTE_URL to answer
//!        (plan)                     │ --verify: baseline = first event of RESULT_URL/events
//!                                   ▼
//!        load: N tasks ─POST vote=a─► vote ─► Redis ─► worker ─► Postgres ─► result
//!                                   │                                          │
//!                                   ▼                                          ▼
//!        report: sent, failures by kind,       verify: follow /events until the tallies are
//!        throughput, latency percentiles       baseline + the votes that count
//! ```
//!
//! - [`plan`]: the command line (every flag also an environment variable) and
//!   the [`Plan`] it resolves to, with a scenario file from [`scenario`].
//! - [`load`]: the sending itself, on a pooled keep-alive hyper client.
//! - [`progress`]: a bar on a terminal, plain lines otherwise.
//! - [`verify`]: the result service's Server-Sent Events, read back.
//! - [`report`]: the summary, as text or JSON.
//!
//! The exit status is 0 only when every request succeeded and, with
//! `--verify`, every vote was counted.

pub mod load;
pub mod plan;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

pub use plan::{Cli, Plan, Stop};
pub use report::Report;

/// The whole program after parsing: run, print the report, choose the exit status.
pub async fn main(cli: Cli) -> ExitCode {
    if let Err(e) = common::telemetry::init("seed", cli.log.log_format) {
        eprintln!("seed: error: {e:#}");
        return ExitCode::from(2);
    }
    let token = common::shutdown::on_signal();
    match run(&cli, token).await {
        Ok(report) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("the report serializes")
                );
            } else {
                print!("{report}");
            }
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("seed: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for the vote service, sends, and verifies if asked. An `Err` is a
/// run that could not start (bad scenario, nothing answering); failed
/// requests and a failed verification are in the [`Report`].
pub async fn run(cli: &Cli, token: CancellationToken) -> anyhow::Result<Report> {
    let plan = Plan::from_cli(cli)?;
    wait_ready(&plan.url, cli.wait, &token).await?;
    let baseline = if cli.verify {
        Some(verify::baseline(&cli.result_url, cli.wait).await?)
    } else {
        None
    };
    eprintln!("seed: {}", describe(&plan));
    let counters = Arc::new(load::Counters::default());
    let progress = progress::Progress::start(&plan, counters.clone());
    let client = load::http_client(plan.effective_concurrency(), plan.timeout);
    let outcome = load::run(&plan, client, counters, token.clone()).await;
    progress.finish().await;
    let mut report = Report::new(plan.url.to_string(), &outcome);
    if let Some(baseline) = baseline {
        let expected = verify::expected(&baseline, &outcome.counted);
        eprintln!(
            "seed: waiting up to {:?} for the result service to count every vote",
            cli.verify_timeout
        );
        let verdict = tokio::select! {
            v = verify::follow(&cli.result_url, &expected, outcome.finished, cli.verify_timeout) => v,
            _ = token.cancelled() => verify::Verdict::Missing { seen: None, error: Some("interrupted".into()) },
        };
        report.verify = Some(match verdict {
            verify::Verdict::Counted(delay) => report::VerifyReport {
                ok: true,
                baseline,
                seen: Some(expected.clone()),
                expected,
                delay_seconds: Some(delay.as_secs_f64()),
                differences: Vec::new(),
                error: None,
            },
            verify::Verdict::Missing { seen, error } => report::VerifyReport {
                ok: false,
                differences: match &seen {
                    Some(s) => verify::differences(&expected, s),
                    None => vec!["no tallies could be read from the result service".into()],
                },
                baseline,
                seen,
                expected,
                delay_seconds: None,
                error,
            },
        });
    }
    Ok(report)
}

/// One line saying what is about to happen.
fn describe(plan: &Plan) -> String {
    let split: Vec<String> = plan.votes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let what = match plan.stop {
        Stop::Count(n) => format!("sending {n} votes ({})", split.join(", ")),
        Stop::Duration(d) => format!("sending votes for {d:?} (weights {})", split.join(", ")),
    };
    let mut s = format!(
        "{what} to {}, {} at a time",
        plan.url,
        plan.effective_concurrency()
    );
    if let Some(r) = plan.rate {
        s.push_str(&format!(", at most {r}/s"));
    }
    if plan.returning_voters > 0 {
        s.push_str(&format!(
            ", from {} returning voters",
            plan.returning_voters
        ));
    } else {
        s.push_str(", each from a new voter");
    }
    s
}

/// Waits until `url` answers a GET with a status below 500, up to `wait`.
pub async fn wait_ready(
    url: &Uri,
    wait: Duration,
    token: &CancellationToken,
) -> anyhow::Result<()> {
    let client: Client<HttpConnector, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let deadline = Instant::now() + wait;
    let mut announced = false;
    loop {
        let req = Request::get(url.clone())
            .body(Empty::new())
            .expect("a valid request");
        let attempt = async {
            let res = client
                .request(req)
                .await
                .map_err(|e| load::error_chain(&e))?;
            let status = res.status();
            let _ = res.into_body().collect().await;
            if status.is_server_error() {
                Err(format!("it answers {status}"))
            } else {
                Ok(())
            }
        };
        let cause = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "no answer within 5 s".to_owned(),
        };
        if Instant::now() >= deadline || token.is_cancelled() {
            anyhow::bail!(
                "the vote service at {url} did not answer within {wait:?} ({cause}). \
                 Is it running? Set VOTE_URL (or --url) to its address"
            );
        }
        if !announced {
            eprintln!("seed: waiting up to {wait:?} for the vote service at {url}: {cause}");
            announced = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = token.cancelled() => {}
        }
    }
}
