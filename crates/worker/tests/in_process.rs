//! The worker run in-process against real Redis and Postgres: batch logic,
//! ordering, idempotence, dead letters, the admin port, and the faults of a
//! Redis or Postgres that goes away mid-stream.

mod support;

use std::time::Duration;

use common::message::{DeadLetter, VoteMessage};
use common::queue::Keys;
use sqlx::postgres::PgListener;
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use worker::Settings;

const LONG: Duration = Duration::from_secs(120);

struct Running {
    token: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    admin: u16,
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the worker stops within 30 s of the cancellation")
            .unwrap()
            .unwrap();
    }
}

async fn start(settings: Settings) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap().port();
    let token = CancellationToken::new();
    let task = tokio::spawn(worker::run(listener, settings, token.clone()));
    Running { token, task, admin }
}

fn msg(voter: &str, choice: &str, seq: Option<i64>) -> VoteMessage {
    VoteMessage {
        voter_id: voter.into(),
        vote: choice.into(),
        seq,
    }
}

/// A migrated database and its pool.
async fn database() -> (testkit::TestPg, sqlx::PgPool) {
    let pg = testkit::postgres().await;
    let pool = pool(&pg.url).await;
    common::db::migrate(&pool).await.unwrap();
    (pg, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_vote_per_voter_wins_across_batches_and_tallies_follow() {
    let r = testkit::redis();
    let (pg, db) = database().await;
    let mut listener = PgListener::connect(&pg.url).await.unwrap();
    listener.listen(common::db::TALLIES_CHANNEL).await.unwrap();

    // Small batches, so one voter's votes are spread over several of them,
    // and seqs that arrive out of order.
    let msgs = [
        vote("v1", "a", Some(10)),
        vote("v2", "b", Some(11)),
        vote("v1", "b", Some(14)),
        vote("v3", "a", Some(12)),
        vote("v1", "a", Some(13)), // late: older than 14
        vote("v2", "a", Some(15)),
        vote("v3", "b", Some(9)), // late
        vote("v4", "b", Some(16)),
    ];
    push(&r.url, &r.queue, &msgs).await;
    let mut s = Settings::new(&r.url, &pg.url, &r.queue);
    s.batch_size = 3;
    let w = start(s).await;
    let want = [("v1", "b"), ("v2", "a"), ("v3", "a"), ("v4", "b")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into_iter()
        .collect();
    wait_final(&r.url, &Keys::new(&r.queue), &db, &want, LONG).await;
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a tallies_changed notification after the commits")
        .unwrap();
    assert_eq!(n.channel(), common::db::TALLIES_CHANNEL);
    let tallies = common::db::read_tallies(&db).await.unwrap();
    assert_eq!((tallies["a"], tallies["b"]), (2, 2));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_one_work_too() {
    let r = testkit::redis();
    let (pg, db) = database().await;
    let msgs = backlog(50, "one");
    push(&r.url, &r.queue, &to_json(&msgs)).await;
    let mut s = Settings::new(&r.url, &pg.url, &r.queue);
    s.batch_size = 1;
    let w = start(s).await;
    wait_final(&r.url, &Keys::new(&r.queue), &db, &expected(&msgs), LONG).await;
    // And a vote arriving while the worker waits on the empty queue.
    push(&r.url, &r.queue, &[vote("one-late", "b", None)]).await;
    let mut want = expected(&msgs);
    want.insert("one-late".into(), "b".into());
    wait_final(&r.url, &Keys::new(&r.queue), &db, &want, LONG).await;
    w.stop().await;
}

/// A batch left in the processing list of a worker whose heartbeat is gone
/// is taken back and applied, ahead of the newer messages in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_back_the_batch_of_a_dead_worker() {
    let r = testkit::redis();
    let (pg, db) = database().await;
    let keys = Keys::new(&r.queue);
    // The dead worker held the older votes (seq-less: queue order decides).
    push(
        &r.url,
        &keys.processing("ghost"),
        &[vote("g1", "a", None), vote("g2", "a", None)],
    )
    .await;
    push(&r.url, &r.queue, &[vote("g1", "b", None)]).await;
    let w = start(Settings::new(&r.url, &pg.url, &r.queue)).await;
    let want = [("g1", "b"), ("g2", "a")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into_iter()
        .collect();
    wait_final(&r.url, &keys, &db, &want, LONG).await;
    w.stop().await;
}

/// A worker whose heartbeat key vanished (Redis away longer than the TTL)
/// stops touching its old list, goes on under a new id, and its old batch is
/// replayed: the end state is still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_heartbeat_vanished_goes_on_under_a_new_id() {
    let r = testkit::redis();
    let (pg, db) = database().await;
    let keys = Keys::new(&r.queue);
    let msgs = backlog(20_000, "h");
    push(&r.url, &r.queue, &to_json(&msgs)).await;
    let mut s = Settings::new(&r.url, &pg.url, &r.queue);
    s.batch_size = 200;
    s.worker_id = Some("hb".into());
    let w = start(s).await;
    testkit::eventually("some votes applied", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
            .fetch_one(&db)
            .await
            .ok()?;
        (n > 500).then_some(())
    })
    .await;
    let mut c = support::redis(&r.url).await;
    let _: () = redis::cmd("DEL")
        .arg(keys.alive("hb"))
        .query_async(&mut c)
        .await
        .unwrap();
    wait_final(&r.url, &keys, &db, &expected(&msgs), LONG).await;
    let renamed: i64 = redis::cmd("EXISTS")
        .arg(keys.alive("hb-1"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(renamed, 1, "the worker did not take a new id");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_batch_changes_nothing() {
    let (_pg, db) = database().await;
    let opts = common::options::VoteOptions::default();
    let raw = [
        vote("r1", "a", Some(1)),
        vote("r2", "b", None),
        vote("r1", "b", Some(2)),
        vote("r3", "a", Some(3)),
    ];
    let batch = worker::batch::prepare(&raw, &opts);
    let first = worker::store::apply(&db, &batch.votes).await.unwrap();
    assert!(first.tallies_changed);
    let votes_before = votes(&db).await;
    let tallies_before = common::db::read_tallies(&db).await.unwrap();
    let seqs_before: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT id, seq FROM votes ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    for _ in 0..3 {
        let again = worker::store::apply(&db, &batch.votes).await.unwrap();
        assert!(!again.tallies_changed, "a replay moved the tallies");
        assert_eq!(votes(&db).await, votes_before);
        assert_eq!(common::db::read_tallies(&db).await.unwrap(), tallies_before);
        let seqs: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT id, seq FROM votes ORDER BY id")
                .fetch_all(&db)
                .await
                .unwrap();
        assert_eq!(seqs, seqs_before);
        assert_invariant(&db).await;
    }
    // A replay of an *older* batch after a newer one: still nothing changes.
    let older = worker::batch::prepare(&[vote("r1", "a", Some(1))], &opts);
    worker::store::apply(&db, &older.votes).await.unwrap();
    assert_eq!(votes(&db).await, votes_before);
    assert_invariant(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_without_seq_apply_in_queue_order_and_keep_the_stored_seq() {
    let (_pg, db) = database().await;
    let apply = |m: Vec<VoteMessage>| {
        let db = db.clone();
        async move {
            worker::store::apply(&db, &m).await.unwrap();
            assert_invariant(&db).await;
        }
    };
    // Without seq: the later message wins, batch after batch.
    apply(vec![msg("p", "a", None)]).await;
    apply(vec![msg("p", "b", None)]).await;
    apply(vec![msg("p", "a", None)]).await;
    assert_eq!(votes(&db).await["p"], "a");
    // A stored seq, then a message without one: it applies (queue order is
    // all it has), and the row keeps seq 10 ...
    apply(vec![msg("q", "a", Some(10))]).await;
    apply(vec![msg("q", "b", None)]).await;
    let (v, seq): (String, Option<i64>) =
        sqlx::query_as("SELECT vote, seq FROM votes WHERE id = 'q'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((v.as_str(), seq), ("b", Some(10)));
    // ... so a late message older than 10 still cannot overwrite it,
    apply(vec![msg("q", "a", Some(7))]).await;
    assert_eq!(votes(&db).await["q"], "b");
    // while a newer one does.
    apply(vec![msg("q", "a", Some(11))]).await;
    assert_eq!(votes(&db).await["q"], "a");
    // A row without seq (an original vote) takes a message with one.
    apply(vec![msg("o", "a", None)]).await;
    apply(vec![msg("o", "b", Some(1))]).await;
    assert_eq!(votes(&db).await["o"], "b");
    // Inside one batch, seq-less messages collapse in queue order.
    let raw = [vote("z", "a", None), vote("z", "b", None)];
    let b = worker::batch::prepare(&raw, &common::options::VoteOptions::default());
    apply(b.votes).await;
    assert_eq!(votes(&db).await["z"], "b");
    // Every option can drop to zero and come back: no row stays at 0.
    apply(vec![msg("p", "b", None), msg("q", "b", Some(12))]).await;
    let t = common::db::read_tallies(&db).await.unwrap();
    assert!(!t.contains_key("a"), "{t:?}");
    apply(vec![msg("p", "a", None)]).await;
    assert_eq!(common::db::read_tallies(&db).await.unwrap()["a"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_go_to_the_dead_letter_list_with_the_reason() {
    let r = testkit::redis();
    let (pg, db) = database().await;
    let long = format!(r#"{{"voter_id":"{}","vote":"a"}}"#, "x".repeat(256));
    let bad = [
        ("not json", "not valid JSON"),
        (r#"{"vote":"a"}"#, "not a vote message"),
        (r#"{"voter_id":"x"}"#, "not a vote message"),
        (
            r#"{"voter_id":"x","vote":"z"}"#,
            "not one of the configured options",
        ),
        (r#"{"voter_id":"","vote":"a"}"#, "empty voter_id"),
        (long.as_str(), "longer than 255"),
    ];
    let mut msgs: Vec<String> = bad.iter().map(|(m, _)| m.to_string()).collect();
    msgs.insert(2, vote("good1", "a", Some(1)));
    msgs.push(vote("good2", "b", None));
    push(&r.url, &r.queue, &msgs).await;
    let w = start(Settings::new(&r.url, &pg.url, &r.queue)).await;
    let keys = Keys::new(&r.queue);
    let want = [("good1", "a"), ("good2", "b")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into_iter()
        .collect();
    wait_final(&r.url, &keys, &db, &want, LONG).await;
    let mut c = support::redis(&r.url).await;
    let dead: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.dead())
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    for ((raw, reason), letter) in bad.iter().zip(&dead) {
        let d: DeadLetter = serde_json::from_str(letter).unwrap();
        assert_eq!(d.raw, *raw);
        assert!(d.reason.contains(reason), "{} lacks {reason}", d.reason);
    }
    let (_, metrics) = http_get(w.admin, "/metrics");
    assert!(metrics.contains("dead_letters_total"), "{metrics}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_serves_health_readiness_and_metrics() {
    let r = testkit::redis();
    let (pg, db) = database().await;
    let w = start(Settings::new(&r.url, &pg.url, &r.queue)).await;
    push(&r.url, &r.queue, &[vote("m1", "a", Some(1))]).await;
    let want = [("m1".to_owned(), "a".to_owned())].into_iter().collect();
    wait_final(&r.url, &Keys::new(&r.queue), &db, &want, LONG).await;
    let port = w.admin;
    let (h, ready, (m, body)) = tokio::task::spawn_blocking(move || {
        (
            http_get(port, "/healthz").0,
            http_get(port, "/readyz").0,
            http_get(port, "/metrics"),
        )
    })
    .await
    .unwrap();
    assert_eq!((h, ready, m), (200, 200, 200));
    for name in [
        "votes_applied_total",
        "batch_size_bucket",
        "batch_duration_seconds_bucket",
        "queue_depth",
        "dead_letters_total",
        "retries_total{what=\"redis\"}",
        "retries_total{what=\"postgres\"}",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    w.stop().await;
    // Not ready when Postgres is unreachable.
    let dead_pg = format!("postgres://postgres@127.0.0.1:{}/x", testkit::free_port());
    let w = start(Settings::new(&r.url, &dead_pg, &r.queue)).await;
    let port = w.admin;
    let (h, ready) = tokio::task::spawn_blocking(move || {
        (http_get(port, "/healthz"), http_get(port, "/readyz"))
    })
    .await
    .unwrap();
    assert_eq!(h.0, 200);
    assert_eq!(ready.0, 503);
    assert!(ready.1.contains("postgres"), "{}", ready.1);
    w.stop().await;
}

/// Redis stopped and started again while a backlog drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_restart_mid_stream() {
    let server = tokio::task::spawn_blocking(testkit::RedisServer::start)
        .await
        .unwrap();
    let url = server.url();
    let queue = testkit::unique_name("votes");
    let (pg, db) = database().await;
    let msgs = backlog(30_000, "r");
    push(&url, &queue, &to_json(&msgs)).await;
    let mut s = Settings::new(&url, &pg.url, &queue);
    s.batch_size = 300;
    s.block_timeout = Duration::from_millis(200);
    let w = start(s).await;
    testkit::eventually("some votes applied", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
            .fetch_one(&db)
            .await
            .ok()?;
        (n > 1000).then_some(())
    })
    .await;
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    // The worker notices (readiness fails) and keeps running.
    let port = w.admin;
    testkit::eventually("readyz to report redis", LONG, || async move {
        let (code, body) = tokio::task::spawn_blocking(move || http_get(port, "/readyz"))
            .await
            .ok()?;
        (code == 503 && body.contains("redis")).then_some(())
    })
    .await;
    assert!(!w.task.is_finished());
    let server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    wait_final(&url, &Keys::new(&queue), &db, &expected(&msgs), LONG).await;
    w.stop().await;
    drop(server);
}

/// Postgres stopped and started again while a backlog drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_postgres_restart_mid_stream() {
    let r = testkit::redis();
    let server = tokio::task::spawn_blocking(testkit::PgServer::start)
        .await
        .unwrap();
    // The server is this test's own: its default database will do.
    let pg_url = server.url();
    let db = pool(&pg_url).await;
    common::db::migrate(&db).await.unwrap();
    let msgs = backlog(30_000, "p");
    push(&r.url, &r.queue, &to_json(&msgs)).await;
    let mut s = Settings::new(&r.url, &pg_url, &r.queue);
    s.batch_size = 300;
    let w = start(s).await;
    testkit::eventually("some votes applied", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
            .fetch_one(&db)
            .await
            .ok()?;
        (n > 1000).then_some(())
    })
    .await;
    db.close().await;
    // The metrics are the test binary's, shared with the other tests: count
    // from here.
    let retries_before = postgres_retries(&http_get(w.admin, "/metrics").1);
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let port = w.admin;
    testkit::eventually("readyz to report postgres", LONG, || async move {
        let (code, body) = tokio::task::spawn_blocking(move || http_get(port, "/readyz"))
            .await
            .ok()?;
        (code == 503 && body.contains("postgres")).then_some(())
    })
    .await;
    assert!(!w.task.is_finished());
    // The first backlog may be drained already: votes queued while Postgres
    // is down make the worker take a batch it cannot commit, and retry.
    let later = backlog(2_000, "q");
    push(&r.url, &r.queue, &to_json(&later)).await;
    testkit::eventually("a postgres retry to be counted", LONG, || async move {
        let (_, metrics) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
            .await
            .ok()?;
        (postgres_retries(&metrics) > retries_before).then_some(())
    })
    .await;
    assert!(!w.task.is_finished());
    let server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    let db = pool(&pg_url).await;
    let all: Vec<_> = msgs.iter().chain(&later).cloned().collect();
    wait_final(&r.url, &Keys::new(&r.queue), &db, &expected(&all), LONG).await;
    w.stop().await;
    db.close().await;
    drop(server);
}

/// The value of `retries_total{what="postgres"}` in a metrics page (0 when absent).
fn postgres_retries(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("retries_total{what=\"postgres\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
