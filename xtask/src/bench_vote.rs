//! `cargo xtask bench vote`: POST / throughput and latency of the vote service.
//!
//! Builds the release `vote` binary, starts a throwaway Redis and the binary
//! (as in production: default log level `info`, which logs nothing per
//! request), reads its idle RSS from `/proc/<pid>/status`, then runs
//! `wrk -t2 -c50 -d10s --latency` with a Lua script that POSTs `vote=a`. The
//! RSS is read again at the end of the load, and once more after vote has sat
//! idle through the baseline's run (below).
//!
//! By default the requests carry **no cookie**: every request is a new voter,
//! so each one also generates a voter id and answers with `Set-Cookie`, as the
//! original seed tool's requests do. That is the more expensive case;
//! `--cookie` sends one fixed, valid `voter_id` instead (a returning voter).
//!
//! Afterwards it checks that the Redis list holds one message per 2xx answer
//! wrk counted, so the figure is of votes really queued.
//!
//! Then, on the same machine and the same Redis, the same wrk run against the
//! baseline DESIGN.md quotes: a bare axum handler doing one `RPUSH` (no
//! cookie, no form, no middleware, a two-byte answer; the release build of
//! `crates/vote/examples/baseline.rs`). The ratio of the two is what to compare
//! between machines: shared machines vary by a factor of two from day to day.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::{rss_kib, wait_healthy};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u32,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Send a fixed, valid voter_id cookie (a returning voter) instead of none.
    #[arg(long)]
    pub cookie: bool,
}

const QUEUE: &str = "votes";

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk not found: install it (Debian: apt-get install wrk)"
    );
    let (exe, baseline) = build_vote()?;
    let redis = testkit::RedisServer::start();
    let port = testkit::free_port();
    let admin = testkit::free_port();
    let svc = testkit::Service::spawn(
        "vote",
        &exe,
        &[],
        &[
            ("BIND_PORT", port.to_string()),
            ("ADMIN_PORT", admin.to_string()),
            ("REDIS_URL", redis.url()),
            ("VOTES_QUEUE", QUEUE.to_owned()),
        ],
    )?;
    wait_healthy(admin, &svc)?;
    let pid = svc.pid().expect("just started");
    let idle_rss = rss_kib(pid)?;

    let script = std::env::temp_dir().join(format!("vote-bench-{}.lua", std::process::id()));
    let cookie = if args.cookie {
        "wrk.headers[\"Cookie\"] = \"voter_id=0123456789abcdef0123456789abcdef\"\n"
    } else {
        ""
    };
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\n\
             wrk.body = \"vote=a\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n{cookie}"
        ),
    )?;
    // The same wrk run for the service and for the baseline, but for the port.
    let wrk_args = |port: u16| {
        [
            format!("-t{}", args.threads),
            format!("-c{}", args.connections),
            format!("-d{}s", args.duration),
            "--latency".to_owned(),
            "-s".to_owned(),
            script.display().to_string(),
            format!("http://127.0.0.1:{port}/"),
        ]
    };
    println!(
        "vote {} against redis {} ({}); wrk {}",
        exe.display(),
        redis.url(),
        if args.cookie {
            "fixed voter_id cookie"
        } else {
            "no cookie: a new voter per request"
        },
        wrk_args(port)[..4].join(" ")
    );
    let out = Command::new("wrk").args(wrk_args(port)).output()?;
    let report = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    let loaded_rss = rss_kib(pid)?;
    let loaded_at = Instant::now();

    let rps = field(&report, "Requests/sec:")?;
    let p50 = percentile(&report, "50%")?;
    let p99 = percentile(&report, "99%")?;
    let total: u64 = report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no request count in wrk's report"))?;
    let non_2xx = non_2xx_of(&report);
    let mut conn = redis::Client::open(redis.url())?.get_connection()?;
    let queued: u64 = redis::cmd("LLEN").arg(QUEUE).query(&mut conn)?;

    // The baseline, with the service idle.
    let bare_port = testkit::free_port();
    let bare = testkit::Service::spawn(
        "baseline",
        &baseline,
        &[],
        &[
            ("BIND_PORT", bare_port.to_string()),
            ("REDIS_URL", redis.url()),
        ],
    )?;
    wait_listening(bare_port, &bare)?;
    let out = Command::new("wrk").args(wrk_args(bare_port)).output()?;
    let _ = std::fs::remove_file(&script);
    drop(bare);
    let bare_report = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && non_2xx_of(&bare_report) == 0,
        "wrk against the baseline failed: {}{bare_report}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bare_rps = field(&bare_report, "Requests/sec:")?;
    // vote sat idle through the baseline's run.
    let idle_again = Instant::now() - loaded_at;
    let after_rss = rss_kib(pid)?;

    println!("vote POST /: {rps} requests/s, p50 {p50}, p99 {p99}");
    if let (Ok(v), Ok(b)) = (rps.parse::<f64>(), bare_rps.parse::<f64>()) {
        println!(
            "baseline (bare axum handler, one RPUSH, same wrk, same Redis): {b:.0} requests/s, p99 {}; vote = {:.0}% of it",
            percentile(&bare_report, "99%")?,
            v / b * 100.0
        );
    }
    println!(
        "vote RSS: idle {:.1} MB before the load, {:.1} MB at its end, {:.1} MB idle {} s later",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0,
        after_rss as f64 / 1024.0,
        idle_again.as_secs()
    );
    println!("checked: {queued} votes queued in Redis for {total} requests ({non_2xx} not 2xx)");
    // wrk stops mid-request at the deadline, so a few requests it did not
    // count may still have reached Redis.
    anyhow::ensure!(non_2xx == 0, "{non_2xx} requests were not answered 2xx");
    anyhow::ensure!(
        queued >= total && queued <= total + u64::from(args.connections),
        "Redis holds {queued} votes for {total} requests"
    );
    Ok(())
}

/// The release builds of the service and of the baseline.
fn build_vote() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = crate::procs::build_release("vote", &["--bin", "vote", "--example", "baseline"])?;
    Ok((dir.join("vote"), dir.join("examples").join("baseline")))
}

/// Waits until something accepts connections on `port`.
fn wait_listening(port: u16, svc: &testkit::Service) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !testkit::port_open(port) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing listens on {port} within 30 s:\n{}",
            svc.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// wrk's count of answers that were not 2xx or 3xx (0 when it reports none).
fn non_2xx_of(report: &str) -> u64 {
    report
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The value after `label` in wrk's report.
fn field(report: &str, label: &str) -> anyhow::Result<String> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| anyhow::anyhow!("no {label:?} in wrk's report"))
}

/// A line of wrk's "Latency Distribution", e.g. `99%    2.10ms`.
fn percentile(report: &str, p: &str) -> anyhow::Result<String> {
    report
        .lines()
        .map(str::trim)
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(p)).then(|| it.next().unwrap_or_default().to_owned())
        })
        .ok_or_else(|| anyhow::anyhow!("no {p} percentile in wrk's report (needs --latency)"))
}
