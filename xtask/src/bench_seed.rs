//! `cargo xtask bench seed`: how fast the load generator itself is.
//!
//! The seed must never be what limits a measurement of the vote service
//! (target: 30,000 POSTs/s at 50 connections). So it is run, in this process,
//! against the most trivial server there is: an axum route answering `ok` to
//! `POST /`, on 127.0.0.1, on a thread (and a single-threaded runtime) of its
//! own. The figure printed is requests per second over the whole run.
//!
//! Figures from an unoptimised build mean nothing, so a debug build of this
//! tool runs itself again from a release build.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// POSTs per round.
    #[arg(long, default_value_t = 200_000)]
    pub count: u64,
    /// Connections (requests in flight at once).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Rounds; each prints its figure, then the best and the median.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
            .args(["bench", "seed"])
            .args(["--count", &args.count.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--rounds", &args.rounds.to_string()])
            .status()?;
        anyhow::ensure!(
            status.success(),
            "the release build of the benchmark failed"
        );
        return Ok(());
    }
    let addr = trivial_server()?;
    let url: hyper::Uri = format!("http://{addr}/").parse()?;
    // The seed binary's own runtime: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "seed against a trivial axum server on {addr}: {} POSTs per round, {} connections",
        args.count, args.concurrency
    );
    let mut figures = Vec::new();
    rt.block_on(async {
        let client = seed::load::http_client(args.concurrency, Duration::from_secs(5));
        // Warm-up: open the connections.
        let warm = seed::Plan::new(url.clone(), 5_000, args.concurrency);
        one_round(&warm, client.clone()).await?;
        for round in 1..=args.rounds {
            let plan = seed::Plan::new(url.clone(), args.count, args.concurrency);
            let o = one_round(&plan, client.clone()).await?;
            println!(
                "round {round}: {:.0} requests/s (p50 {:.2} ms, p99 {:.2} ms)",
                o.throughput(),
                o.latency.value_at_quantile(0.5) as f64 / 1000.0,
                o.latency.value_at_quantile(0.99) as f64 / 1000.0,
            );
            figures.push(o.throughput());
        }
        anyhow::Ok(())
    })?;
    figures.sort_by(|a, b| a.total_cmp(b));
    println!(
        "best {:.0} requests/s, median {:.0} requests/s",
        figures.last().copied().unwrap_or_default(),
        figures[figures.len() / 2]
    );
    Ok(())
}

async fn one_round(
    plan: &seed::Plan,
    client: seed::load::HttpClient,
) -> anyhow::Result<seed::load::Outcome> {
    let o = seed::load::run(
        plan,
        client,
        Arc::new(seed::load::Counters::default()),
        CancellationToken::new(),
    )
    .await;
    anyhow::ensure!(
        o.failed() == 0,
        "{} requests failed: {:?}",
        o.failed(),
        o.causes
    );
    Ok(o)
}

/// `POST /` answering `ok`, on a thread of its own; returns its address.
fn trivial_server() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("trivial-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the server");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = axum::Router::new().route("/", axum::routing::post(|| async { "ok" }));
                axum::serve(listener, app).await.expect("serving");
            });
        })?;
    Ok(addr)
}
