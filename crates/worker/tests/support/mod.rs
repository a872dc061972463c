//! Helpers shared by the worker's integration tests: filling a queue, reading
//! the final state, checking the tallies invariant.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::message::VoteMessage;
use common::queue::Keys;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub fn vote(voter: &str, choice: &str, seq: Option<i64>) -> String {
    VoteMessage {
        voter_id: voter.into(),
        vote: choice.into(),
        seq,
    }
    .to_json()
}

pub async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to the test Redis")
}

/// RPUSHes `msgs` in pipelined slices of 1000.
pub async fn push(url: &str, queue: &str, msgs: &[String]) {
    let mut c = redis(url).await;
    for chunk in msgs.chunks(50_000) {
        let mut p = redis::pipe();
        for slice in chunk.chunks(1000) {
            p.cmd("RPUSH").arg(queue).arg(slice).ignore();
        }
        p.query_async::<()>(&mut c).await.expect("RPUSH");
    }
}

pub async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("connecting to the test database")
}

/// voter id -> vote, from the votes table.
pub async fn votes(pool: &PgPool) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, vote FROM votes")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.into_iter().collect()
}

/// The invariant: the tallies table equals the count of the votes table.
pub async fn assert_invariant(pool: &PgPool) {
    let tallies = common::db::read_tallies(pool).await.unwrap();
    let counted = common::db::count_votes(pool).await.unwrap();
    assert_eq!(
        tallies, counted,
        "tallies differ from SELECT vote, count(*) FROM votes GROUP BY vote"
    );
}

/// What the final votes table must hold: per voter the message with the
/// largest seq (all messages carry one).
pub fn expected(msgs: &[(String, String, i64)]) -> BTreeMap<String, String> {
    let mut best: HashMap<&str, (i64, &str)> = HashMap::new();
    for (voter, choice, seq) in msgs {
        let e = best.entry(voter).or_insert((*seq, choice));
        if *seq > e.0 {
            *e = (*seq, choice);
        }
    }
    best.into_iter()
        .map(|(v, (_, c))| (v.to_owned(), c.to_owned()))
        .collect()
}

/// `n` messages from `n * 9 / 10` voters: about 10% are vote changes by
/// earlier voters, and one in twenty changes carries an *older* seq than the
/// voter's previous message (a late message that must not win).
pub fn backlog(n: usize, prefix: &str) -> Vec<(String, String, i64)> {
    let voters = (n * 9 / 10).max(1);
    let mut out = Vec::with_capacity(n);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let voter = if i < voters {
            i
        } else {
            (x % voters as u64) as usize
        };
        let choice = if x % 3 == 0 { "b" } else { "a" };
        let mut seq = 2 * i as i64;
        if i >= voters && x % 20 == 0 {
            // Late: older than this voter's first message.
            seq = 2 * voter as i64 - 1;
        }
        out.push((format!("{prefix}{voter:08x}"), choice.to_owned(), seq));
    }
    out
}

pub fn to_json(msgs: &[(String, String, i64)]) -> Vec<String> {
    msgs.iter().map(|(v, c, s)| vote(v, c, Some(*s))).collect()
}

/// True when the queue and every processing list of it are empty.
pub async fn drained(url: &str, keys: &Keys) -> bool {
    let mut c = redis(url).await;
    let len: i64 = redis::cmd("LLEN")
        .arg(&keys.queue)
        .query_async(&mut c)
        .await
        .unwrap_or(-1);
    let lists: Vec<String> = redis::cmd("KEYS")
        .arg(keys.processing_pattern())
        .query_async(&mut c)
        .await
        .unwrap_or_else(|_| vec!["?".into()]);
    len == 0 && lists.is_empty()
}

/// Waits until the queue is drained and the database holds `want`.
pub async fn wait_final(
    redis_url: &str,
    keys: &Keys,
    pool: &PgPool,
    want: &BTreeMap<String, String>,
    timeout: Duration,
) {
    testkit::eventually(
        "the queue drained into the expected votes",
        timeout,
        || async {
            if !drained(redis_url, keys).await {
                return None;
            }
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
                .fetch_one(pool)
                .await
                .ok()?;
            (n as usize == want.len()).then_some(())
        },
    )
    .await;
    let got = votes(pool).await;
    assert!(
        got == *want,
        "final votes differ from the last vote of each voter ({} vs {} rows)",
        got.len(),
        want.len()
    );
    assert_invariant(pool).await;
}

/// GET on 127.0.0.1:`port`, returning status and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
