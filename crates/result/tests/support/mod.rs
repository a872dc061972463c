//! Helpers shared by the result tests: the service in-process, an SSE client
//! on a real HTTP connection, and votes committed the way the worker commits
//! them (rows + tallies + `pg_notify` in one transaction).
#![allow(dead_code)]

use std::pin::Pin;
use std::time::Duration;

use common::config::PostgresArgs;
use common::options::VoteOptions;
use common::tally::Tallies;
use futures::{Stream, StreamExt};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Generous: the machine is shared; these bound waits, they do not time.
pub const WAIT: Duration = Duration::from_secs(30);

/// The result service running in this process.
pub struct Running {
    pub base: String,
    pub admin: u16,
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn start(db_url: &str, options: VoteOptions, pacing: result::Pacing) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let admin_port = admin.local_addr().unwrap().port();
        let pool = common::db::pool(&PostgresArgs::from_url(db_url), 4);
        let token = CancellationToken::new();
        let settings = result::Settings { options, pacing };
        let handle = tokio::spawn(result::run(listener, admin, pool, settings, token.clone()));
        Running {
            base,
            admin: admin_port,
            token,
            handle,
        }
    }

    /// Cancels and waits for a clean return.
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("result stops after cancellation")
            .unwrap()
            .expect("result returns Ok");
    }
}

/// A pool for the test's own writes.
pub async fn writer(db_url: &str) -> PgPool {
    let pool = common::db::pool(&PostgresArgs::from_url(db_url), 8);
    common::db::migrate(&pool).await.expect("migrations");
    pool
}

/// Commits `votes` (voter id, option) in one transaction as the worker does:
/// each voter's row, the tallies, and the notification, all or nothing.
pub async fn cast(pool: &PgPool, votes: &[(String, &str)]) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for (id, vote) in votes {
        let prev: Option<String> =
            sqlx::query_scalar("SELECT vote FROM votes WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if prev.as_deref() == Some(*vote) {
            continue;
        }
        sqlx::query(
            "INSERT INTO votes (id, vote) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET vote = EXCLUDED.vote, updated_at = now()",
        )
        .bind(id)
        .bind(*vote)
        .execute(&mut *tx)
        .await?;
        if let Some(prev) = prev {
            sqlx::query("UPDATE tallies SET count = count - 1 WHERE vote = $1")
                .bind(prev)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO tallies (vote, count) VALUES ($1, 1) \
             ON CONFLICT (vote) DO UPDATE SET count = tallies.count + 1",
        )
        .bind(*vote)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(common::db::TALLIES_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// `n` new voters for `vote`, named `<prefix>-<i>`.
pub fn voters(prefix: &str, n: usize, vote: &'static str) -> Vec<(String, &'static str)> {
    (0..n).map(|i| (format!("{prefix}-{i}"), vote)).collect()
}

pub fn tallies(counts: &[(&str, i64)]) -> Tallies {
    let total = counts.iter().map(|(_, c)| c).sum();
    Tallies {
        counts: counts.iter().map(|(k, c)| (k.to_string(), *c)).collect(),
        total,
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// One `GET /events` on its own connection, parsed event by event.
pub struct SseClient {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    stream: ByteStream,
    buf: String,
    /// The `retry:` value the server sent, in ms.
    pub retry: Option<u64>,
    /// Data events received so far.
    pub events: usize,
}

impl SseClient {
    pub async fn connect(base: &str) -> SseClient {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let res = client
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("GET /events");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let stream: ByteStream = Box::pin(res.bytes_stream().map(|r| r.map(|b| b.to_vec())));
        SseClient {
            status,
            headers,
            stream,
            buf: String::new(),
            retry: None,
            events: 0,
        }
    }

    /// The next data event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Tallies> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("retry:") {
                        self.retry = Some(v.trim().parse().expect("retry is a number"));
                    }
                }
                if let Some(d) = data {
                    self.events += 1;
                    return Some(
                        serde_json::from_str(&d)
                            .unwrap_or_else(|e| panic!("event data {d:?} is not Tallies: {e}")),
                    );
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
                Some(Err(e)) => panic!("reading /events: {e}"),
                None => return None,
            }
        }
    }

    /// The next event, failing the test after [`WAIT`].
    pub async fn next_within(&mut self) -> Option<Tallies> {
        tokio::time::timeout(WAIT, self.next())
            .await
            .expect("an event (or the end of the stream) within the wait")
    }

    /// Reads events until one equals `want`; returns how many were read.
    pub async fn until(&mut self, want: &Tallies) -> usize {
        let mut n = 0;
        let mut last = None;
        let res = tokio::time::timeout(WAIT, async {
            loop {
                match self.next().await {
                    Some(t) => {
                        n += 1;
                        if &t == want {
                            return;
                        }
                        last = Some(t);
                    }
                    None => panic!("stream ended before {want:?}; last {last:?}"),
                }
            }
        })
        .await;
        if res.is_err() {
            panic!("no event {want:?} within {WAIT:?}; last {last:?}");
        }
        n
    }
}

/// GET a URL, returning status, headers and body.
pub async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let res = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap())
}
