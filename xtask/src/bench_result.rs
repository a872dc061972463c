//! `cargo xtask bench result`: SSE fan-out of the result service, and the
//! cost of one update at 1,000 and at 1,000,000 votes.
//!
//! Builds the release `result` binary, starts a throwaway *durable* Postgres
//! (default fsync and synchronous commit, as in production) and the binary,
//! then from this one process:
//!
//! 1. opens `--clients` SSE connections (default 5,000; the fd limit of this
//!    process is raised with `setrlimit` first, and the result process
//!    inherits it) and waits for each one's first event;
//! 2. commits `--updates` changes the way the worker does (a new vote row,
//!    the tallies, `pg_notify` in one transaction), one at a time, and for
//!    each one records, on every client, the delay from just before `COMMIT`
//!    was sent to the moment the event carrying the new total was read off
//!    the socket: p50, p99 and max over all clients and updates;
//! 3. reads the result process's `VmRSS` from `/proc/<pid>/status`;
//! 4. does steps 2-3 with 1,000 and again with 1,000,000 rows in `votes`
//!    (filled with `generate_series`), and times `read_tallies` (what result
//!    runs per update) against the original's `SELECT vote, COUNT(id) ...
//!    GROUP BY vote` at both sizes.

// setrlimit is a libc call.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::procs::{hwm_kib, rss_kib};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// SSE connections held open by this process.
    #[arg(long, default_value_t = 5000)]
    pub clients: usize,
    /// Changes committed per table size.
    #[arg(long, default_value_t = 20)]
    pub updates: usize,
    /// Rows in `votes` for the large run.
    #[arg(long, default_value_t = 1_000_000)]
    pub large: i64,
    /// Use the release binary as it is (no cargo build).
    #[arg(long)]
    pub no_build: bool,
}

/// Rows in `votes` for the small run.
const SMALL: i64 = 1_000;

pub fn run(args: Args) -> anyhow::Result<()> {
    let fds = raise_fd_limit()?;
    anyhow::ensure!(
        fds >= args.clients as u64 + 200,
        "the open-file limit is {fds}: too low for {} clients (raise the hard limit: ulimit -Hn)",
        args.clients
    );
    let dir = if args.no_build {
        crate::procs::target_dir().join("release")
    } else {
        crate::procs::build_release("result", &["--bin", "result"])?
    };
    let exe = dir.join("result");
    anyhow::ensure!(exe.is_file(), "{} not found: build it first", exe.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(args, exe))
}

async fn bench(args: Args, exe: PathBuf) -> anyhow::Result<()> {
    let pg =
        tokio::task::spawn_blocking(|| testkit::PgServer::start_with(testkit::free_port(), true))
            .await?;
    let url = pg.url();
    let pool = common::db::pool(&common::config::PostgresArgs::from_url(&url), 4);
    common::db::migrate(&pool).await?;
    fill(&pool, SMALL).await?;

    let port = testkit::free_port();
    let admin = testkit::free_port();
    let svc = testkit::Service::spawn(
        "result",
        &exe,
        &[],
        &[
            ("BIND_PORT", port.to_string()),
            ("ADMIN_PORT", admin.to_string()),
            ("DATABASE_URL", url.clone()),
            ("RUST_LOG", "warn".to_owned()),
        ],
    )?;
    let svc =
        tokio::task::spawn_blocking(move || crate::procs::wait_healthy(admin, &svc).map(|()| svc))
            .await??;
    let pid = svc.pid().expect("just started");
    let idle = rss_kib(pid)?;
    println!(
        "result (release), durable Postgres, {} SSE clients in this process",
        args.clients
    );
    println!("result RSS idle: {:.1} MB", idle as f64 / 1024.0);

    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let connect_limit = Arc::new(tokio::sync::Semaphore::new(200));
    for _ in 0..args.clients {
        let permit = connect_limit.clone().acquire_owned().await?;
        let tx = tx.clone();
        tokio::spawn(async move { client(port, tx, permit).await });
    }
    drop(tx);
    // Every client's first event.
    let mut first = 0;
    while first < args.clients {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(_)) => first += 1,
            _ => anyhow::bail!(
                "only {first} of {} clients got their first event",
                args.clients
            ),
        }
    }
    println!(
        "{} clients connected and got their first event in {:.2} s",
        args.clients,
        started.elapsed().as_secs_f64()
    );

    let mut total = SMALL;
    let large = format_count(args.large);
    for (label, size) in [("1,000", SMALL), (large.as_str(), args.large)] {
        if size != total {
            let t = Instant::now();
            fill(&pool, size).await?;
            println!(
                "filled votes to {label} rows in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            // Let the fill's own notification pass through before measuring.
            total = size;
            drain_until(&mut rx, args.clients, total).await?;
        }
        let mut delays_ms = Vec::with_capacity(args.clients * args.updates);
        let mut missing = 0;
        for i in 0..args.updates {
            total += 1;
            let t0 = commit_one(&pool, &format!("bench-update-{size}-{i}")).await?;
            let (got, late) = collect(&mut rx, args.clients, total, t0).await?;
            delays_ms.extend(got);
            missing += late;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        delays_ms.sort_by(|a, b| a.total_cmp(b));
        let rss = rss_kib(pid)?;
        println!(
            "votes table {label} rows: {} updates x {} clients: commit->receipt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}; result RSS {:.1} MB",
            args.updates,
            args.clients,
            pct(&delays_ms, 0.50),
            pct(&delays_ms, 0.99),
            delays_ms.last().copied().unwrap_or(f64::NAN),
            if missing > 0 { format!(" ({missing} receipts missing)") } else { String::new() },
            rss as f64 / 1024.0
        );
        let (ours, original) = time_reads(&pool).await?;
        println!(
            "votes table {label} rows: read_tallies p50 {:.3} ms, p99 {:.3} ms | original COUNT(id) GROUP BY p50 {:.3} ms",
            pct(&ours, 0.50),
            pct(&ours, 0.99),
            pct(&original, 0.50),
        );
    }
    let hwm = hwm_kib(pid)?;
    println!("result peak RSS (VmHWM): {:.1} MB", hwm as f64 / 1024.0);
    drop(svc);
    drop(pg);
    Ok(())
}

/// One SSE client on a plain socket: reports `(total, when read)` for every
/// event it reads.
async fn client(
    port: u16,
    tx: mpsc::UnboundedSender<(i64, Instant)>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        eprintln!("connect failed");
        return;
    };
    let req = format!(
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    let mut permit = Some(permit);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        // Whole events only: each ends with a blank line.
        while let Some(end) = find(&buf, b"\n\n") {
            if let Some(total) = total_of(&buf[..end]) {
                // Connected: let the next client connect.
                permit.take();
                if tx.send((total, now)).is_err() {
                    return;
                }
            }
            buf.drain(..end + 2);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `"total":N` of an event's JSON.
fn total_of(event: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"total\":";
    let at = find(event, KEY)? + KEY.len();
    let digits: Vec<u8> = event[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Waits until every client has read `total`; returns each delay from `t0`
/// in ms, and how many clients did not get it within 10 s.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(i64, Instant)>,
    clients: usize,
    total: i64,
    t0: Instant,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut got = Vec::with_capacity(clients);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < clients {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((t, at))) if t == total => {
                got.push(at.duration_since(t0).as_secs_f64() * 1000.0)
            }
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("all clients disconnected"),
            Err(_) => break,
        }
    }
    let missing = clients - got.len();
    Ok((got, missing))
}

async fn drain_until(
    rx: &mut mpsc::UnboundedReceiver<(i64, Instant)>,
    clients: usize,
    total: i64,
) -> anyhow::Result<()> {
    let (_, missing) = collect(rx, clients, total, Instant::now()).await?;
    anyhow::ensure!(missing == 0, "{missing} clients never saw total {total}");
    Ok(())
}

/// A new vote committed as the worker commits: row, tallies, notification,
/// one transaction. Returns the instant just before `COMMIT` was sent.
async fn commit_one(pool: &PgPool, voter: &str) -> anyhow::Result<Instant> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO votes (id, vote) VALUES ($1, 'a')")
        .bind(voter)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE tallies SET count = count + 1 WHERE vote = 'a'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(common::db::TALLIES_CHANNEL)
        .execute(&mut *tx)
        .await?;
    let t0 = Instant::now();
    tx.commit().await?;
    Ok(t0)
}

/// Makes `votes` hold `n` rows (2/3 a, 1/3 b) with consistent tallies, in
/// one transaction with one notification.
async fn fill(pool: &PgPool, n: i64) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO votes (id, vote) \
         SELECT 'seed-' || g, CASE WHEN g % 3 = 0 THEN 'b' ELSE 'a' END \
         FROM generate_series($1::bigint + 1, $2::bigint) g",
    )
    .bind(have)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO tallies (vote, count) SELECT vote, count(*) FROM votes GROUP BY vote \
         ON CONFLICT (vote) DO UPDATE SET count = EXCLUDED.count",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(common::db::TALLIES_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE votes").execute(pool).await?;
    Ok(())
}

/// 200 timings each (ms) of `read_tallies` and of the original's count.
async fn time_reads(pool: &PgPool) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut ours = Vec::new();
    let mut original = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        common::db::read_tallies(pool).await?;
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for _ in 0..20 {
        let t = Instant::now();
        common::db::count_votes(pool).await?;
        original.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ours.sort_by(|a, b| a.total_cmp(b));
    original.sort_by(|a, b| a.total_cmp(b));
    Ok((ours, original))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn format_count(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Raises this process's soft open-file limit to its hard limit; children
/// (the result process) inherit it. Returns the new limit.
fn raise_fd_limit() -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        anyhow::ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0,
            "getrlimit: {}",
            std::io::Error::last_os_error()
        );
        lim.rlim_cur = lim.rlim_max;
        anyhow::ensure!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0,
            "setrlimit: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(lim.rlim_cur)
}
