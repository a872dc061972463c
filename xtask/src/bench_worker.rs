//! `cargo xtask bench worker`: how fast the worker drains a backlog.
//!
//! Builds the release binaries, starts a throwaway Redis and a *durable*
//! Postgres (default fsync and synchronous commit, as in production), fills
//! the queue with 1,000,000 votes (about 10% of them vote changes by earlier
//! voters, every message with its order key, pushed with pipelined `RPUSH`),
//! then starts the release worker and measures, from its start, the time
//! until the queue is empty, no batch is in hand and the tallies are final.
//! It checks the result: the tallies equal the last vote of each voter and
//! `SELECT vote, count(*) FROM votes GROUP BY vote`. Then, with the worker
//! idle, it times the original seed's backlog: 3,000 new voters (2,000 for
//! `a`, 1,000 for `b`) pushed at once, until the tallies show them all.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::message::VoteMessage;
use common::queue::Keys;
use testkit::{PgServer, RedisServer, Service};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Votes in the pre-filled backlog.
    #[arg(long, default_value_t = 1_000_000)]
    pub votes: usize,
    /// The worker's BATCH_SIZE (default: the worker's own default).
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Do not build: run the binaries beside this tool.
    #[arg(long)]
    pub no_build: bool,
}

/// A voter id like the vote service's: 16 hex digits, spread over the key space.
fn voter_id(n: u64) -> String {
    let mut x = n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    format!("{x:016x}")
}

/// The backlog: `(voter, vote, seq)` in queue order; about 10% of the
/// messages are changes by voters seen earlier.
fn backlog(n: usize) -> Vec<(String, &'static str, i64)> {
    let mut out = Vec::with_capacity(n);
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut voters = 0u64;
    for i in 0..n {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let voter = if voters > 0 && rng % 10 == 0 {
            (rng >> 8) % voters
        } else {
            voters += 1;
            voters - 1
        };
        let choice = if (rng >> 4) % 5 < 3 { "a" } else { "b" };
        out.push((voter_id(voter), choice, i as i64 + 1));
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bin_dir = if args.no_build {
        testkit::stack::bin_dir()
    } else {
        crate::build(true)?
    };
    let exe = bin_dir.join("worker");
    anyhow::ensure!(exe.is_file(), "{} not found", exe.display());
    println!("starting Redis and a durable Postgres (fsync on, synchronous_commit on)");
    let redis = RedisServer::start();
    let pg = PgServer::start_with(testkit::free_port(), true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(&args, &exe, &redis, &pg))
}

async fn bench(
    args: &Args,
    exe: &std::path::Path,
    redis: &RedisServer,
    pg: &PgServer,
) -> anyhow::Result<()> {
    let keys = Keys::new("votes");
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg.url())
        .await?;
    common::db::migrate(&db).await?;

    let msgs = backlog(args.votes);
    let mut want: HashMap<&str, &str> = HashMap::with_capacity(msgs.len());
    for (voter, choice, _) in &msgs {
        want.insert(voter, choice);
    }
    let mut want_tallies: BTreeMap<String, i64> = BTreeMap::new();
    for choice in want.values() {
        *want_tallies.entry(choice.to_string()).or_default() += 1;
    }
    let changes = msgs.len() - want.len();
    let filling = Instant::now();
    let json: Vec<String> = msgs
        .iter()
        .map(|(voter, choice, seq)| {
            VoteMessage {
                voter_id: voter.clone(),
                vote: choice.to_string(),
                seq: Some(*seq),
            }
            .to_json()
        })
        .collect();
    for chunk in json.chunks(100_000) {
        let mut p = redis::pipe();
        for slice in chunk.chunks(1000) {
            p.cmd("RPUSH").arg(&keys.queue).arg(slice).ignore();
        }
        p.query_async::<()>(&mut conn).await?;
    }
    drop(json);
    println!(
        "queue filled: {} votes from {} voters ({} vote changes) in {:.1} s",
        msgs.len(),
        want.len(),
        changes,
        filling.elapsed().as_secs_f64()
    );

    let admin = testkit::free_port();
    let mut env = vec![
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", pg.url()),
        ("VOTES_QUEUE", keys.queue.clone()),
        ("ADMIN_PORT", admin.to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    if let Some(b) = args.batch_size {
        env.push(("BATCH_SIZE", b.to_string()));
    }
    let machine_before = machine_cpu();
    let started = Instant::now();
    let mut worker = Service::spawn("worker", exe, &[], &env)?;
    let want_total = want.len() as i64;
    let mut last_report = Instant::now();
    loop {
        if let Some(status) = worker.try_status() {
            anyhow::bail!("the worker exited ({status}):\n{}", worker.output());
        }
        let left: i64 = redis::cmd("LLEN")
            .arg(&keys.queue)
            .query_async(&mut conn)
            .await?;
        let in_hand: Vec<String> = redis::cmd("KEYS")
            .arg(keys.processing_pattern())
            .query_async(&mut conn)
            .await?;
        let total: Option<i64> = sqlx::query_scalar("SELECT sum(count)::bigint FROM tallies")
            .fetch_one(&db)
            .await?;
        if left == 0 && in_hand.is_empty() && total == Some(want_total) {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            println!(
                "  {:5.1} s: {left} queued, {} voters counted",
                started.elapsed().as_secs_f64(),
                total.unwrap_or(0)
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not drained within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let worker_cpu = worker.pid().and_then(process_cpu).unwrap_or(0.0);
    let machine = machine_cpu()
        .zip(machine_before)
        .map(|((b1, t1), (b0, t0))| (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * 100.0);

    let tallies = common::db::read_tallies(&db).await?;
    let counted = common::db::count_votes(&db).await?;
    anyhow::ensure!(
        tallies == counted,
        "invariant broken: tallies {tallies:?} != counted {counted:?}"
    );
    anyhow::ensure!(
        tallies == want_tallies,
        "tallies {tallies:?} != the last vote of each voter {want_tallies:?}"
    );
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, vote FROM votes")
        .fetch_all(&db)
        .await?;
    let exact = rows.len() == want.len()
        && rows
            .iter()
            .all(|(id, vote)| want.get(id.as_str()) == Some(&vote.as_str()));
    anyhow::ensure!(exact, "the votes table is not the last vote of each voter");
    println!(
        "drained {} votes in {secs:.2} s: {:.0} votes/s (worker start to final tallies); tallies {:?} = last vote of each voter = count(*) of votes",
        msgs.len(),
        msgs.len() as f64 / secs,
        tallies
    );
    println!(
        "CPU during the drain: worker {worker_cpu:.1} s of {secs:.1} s; whole machine {}% busy ({} cores, shared by Redis, Postgres and the worker)",
        machine.map(|m| format!("{m:.0}")).unwrap_or_else(|| "?".into()),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // The original seed's backlog, the worker idle and waiting.
    let before = want_total;
    let seed: Vec<String> = (0..3000u64)
        .map(|i| {
            VoteMessage {
                voter_id: voter_id(10_000_000_000 + i),
                vote: if i % 3 == 2 { "b" } else { "a" }.into(),
                seq: Some(10_000_000 + i as i64),
            }
            .to_json()
        })
        .collect();
    let t = Instant::now();
    let mut p = redis::pipe();
    for slice in seed.chunks(1000) {
        p.cmd("RPUSH").arg(&keys.queue).arg(slice).ignore();
    }
    p.query_async::<()>(&mut conn).await?;
    loop {
        let total: Option<i64> = sqlx::query_scalar("SELECT sum(count)::bigint FROM tallies")
            .fetch_one(&db)
            .await?;
        if total == Some(before + 3000) {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "seed backlog not applied in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "seed backlog (3,000 votes pushed at once): counted in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let status = worker.terminate(Duration::from_secs(30));
    anyhow::ensure!(
        status.is_some_and(|s| s.success()),
        "the worker did not exit 0 on SIGTERM: {status:?}"
    );
    db.close().await;
    Ok(())
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// (busy, total) jiffies of the whole machine, from `/proc/stat`.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}
