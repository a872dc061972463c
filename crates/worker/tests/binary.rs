//! The real `worker` binary: `kill -9` while draining, several workers at
//! once, SIGTERM, Redis and Postgres absent at start, the healthcheck
//! subcommand and bad settings.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::queue::Keys;
use support::*;
use testkit::Service;

const LONG: Duration = Duration::from_secs(300);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

fn spawn(
    redis_url: &str,
    pg_url: &str,
    queue: &str,
    extra: &[(&'static str, String)],
) -> (Service, u16) {
    let admin = testkit::free_port();
    let mut env = vec![
        ("REDIS_URL", redis_url.to_owned()),
        ("DATABASE_URL", pg_url.to_owned()),
        ("VOTES_QUEUE", queue.to_owned()),
        ("ADMIN_PORT", admin.to_string()),
        ("BLOCK_TIMEOUT", "0.2".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    (
        Service::spawn("worker", exe(), &[], &env).expect("spawning the worker"),
        admin,
    )
}

async fn llen(url: &str, key: &str) -> i64 {
    let mut c = support::redis(url).await;
    redis::cmd("LLEN")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn migrated(url: &str) -> sqlx::PgPool {
    let db = pool(url).await;
    common::db::migrate(&db).await.unwrap();
    db
}

/// `kill -9` at several points while a 100,000-vote backlog (with vote
/// changes and late messages) drains; restarts under the same id (which takes
/// its own list back at once) or a new one (which takes the dead worker's list
/// back once its heartbeat expires). The end state is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_draining_loses_nothing_and_counts_nothing_twice() {
    let r = testkit::redis();
    let pg = testkit::postgres().await;
    let db = migrated(&pg.url).await;
    let keys = Keys::new(&r.queue);
    let msgs = backlog(100_000, "k");
    push(&r.url, &r.queue, &to_json(&msgs)).await;

    let mut in_hand_at_kill = 0;
    for (i, left) in [85_000, 60_000, 35_000, 10_000].into_iter().enumerate() {
        // Same id on even rounds, a fresh one on odd rounds.
        let id = if i % 2 == 0 {
            "steady".to_owned()
        } else {
            format!("fresh{i}")
        };
        let (mut w, _) = spawn(
            &r.url,
            &pg.url,
            &r.queue,
            &[
                ("WORKER_ID", id.clone()),
                ("BATCH_SIZE", "1000".into()),
                ("HEARTBEAT_TTL", "1".into()),
            ],
        );
        testkit::eventually(&format!("queue below {left}"), LONG, || async {
            (llen(&r.url, &r.queue).await < left).then_some(())
        })
        .await;
        w.kill9();
        if llen(&r.url, &keys.processing(&id)).await > 0 {
            in_hand_at_kill += 1;
        }
    }
    assert!(
        in_hand_at_kill > 0,
        "no kill hit a worker with a batch in hand"
    );
    let (_w, _) = spawn(
        &r.url,
        &pg.url,
        &r.queue,
        &[("WORKER_ID", "last".into()), ("HEARTBEAT_TTL", "1".into())],
    );
    wait_final(&r.url, &keys, &db, &expected(&msgs), LONG).await;
}

/// Three workers on one queue reach the same state a single one reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_reach_the_same_exact_state() {
    let r = testkit::redis();
    let pg = testkit::postgres().await;
    let db = migrated(&pg.url).await;
    let msgs = backlog(30_000, "t");
    push(&r.url, &r.queue, &to_json(&msgs)).await;
    let workers: Vec<_> = (0..3)
        .map(|i| {
            spawn(
                &r.url,
                &pg.url,
                &r.queue,
                &[("WORKER_ID", format!("w{i}")), ("BATCH_SIZE", "500".into())],
            )
        })
        .collect();
    wait_final(&r.url, &Keys::new(&r.queue), &db, &expected(&msgs), LONG).await;
    for (mut w, _) in workers {
        let status = w.terminate(Duration::from_secs(30)).unwrap();
        assert!(status.success(), "{status}: {}", w.output());
        assert!(
            w.output().contains("consuming"),
            "each worker took part:\n{}",
            w.output()
        );
    }
}

/// SIGTERM mid-backlog: the batch in hand is finished, the rest stays queued,
/// the exit status is 0, and another worker completes the job exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_in_hand_and_exits_0() {
    let r = testkit::redis();
    let pg = testkit::postgres().await;
    let db = migrated(&pg.url).await;
    let keys = Keys::new(&r.queue);
    let msgs = backlog(40_000, "s");
    push(&r.url, &r.queue, &to_json(&msgs)).await;
    let (mut w, _) = spawn(
        &r.url,
        &pg.url,
        &r.queue,
        &[("WORKER_ID", "term".into()), ("BATCH_SIZE", "500".into())],
    );
    testkit::eventually("some votes applied", LONG, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
            .fetch_one(&db)
            .await
            .ok()?;
        (n > 1000).then_some(())
    })
    .await;
    let status = w.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}: {}", w.output());
    assert!(w.output().contains("worker stopped"), "{}", w.output());
    assert_eq!(llen(&r.url, &keys.processing("term")).await, 0);
    assert_invariant(&db).await;
    let (_w2, _) = spawn(&r.url, &pg.url, &r.queue, &[]);
    wait_final(&r.url, &keys, &db, &expected(&msgs), LONG).await;
}

/// Neither Redis nor Postgres is there at start: the worker waits, saying
/// why, and starts consuming when they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_postgres_and_redis_absent_at_start() {
    let (redis_port, pg_port) = (testkit::free_port(), testkit::free_port());
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
    let pg_url = format!("postgres://postgres@127.0.0.1:{pg_port}/postgres");
    let queue = testkit::unique_name("votes");
    let (mut w, admin) = spawn(&redis_url, &pg_url, &queue, &[]);
    testkit::eventually("the worker to say it waits for postgres", LONG, || async {
        w.output().contains("waiting for postgres").then_some(())
    })
    .await;
    assert!(w.try_status().is_none(), "exited: {}", w.output());
    let (status, _) = tokio::task::spawn_blocking(move || http_get(admin, "/healthz"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let pg = tokio::task::spawn_blocking(move || testkit::PgServer::start_with(pg_port, false))
        .await
        .unwrap();
    testkit::eventually("the worker to say it waits for redis", LONG, || async {
        w.output().contains("waiting for redis").then_some(())
    })
    .await;
    let redis = tokio::task::spawn_blocking(move || testkit::RedisServer::start_on(redis_port))
        .await
        .unwrap();
    push(&redis_url, &queue, &[vote("late", "b", None)]).await;
    let db = pool(&pg_url).await;
    let want = [("late".to_owned(), "b".to_owned())].into_iter().collect();
    wait_final(&redis_url, &Keys::new(&queue), &db, &want, LONG).await;
    let status = w.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}: {}", w.output());
    db.close().await;
    drop((pg, redis));
}

fn command(env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(exe());
    for (k, _) in std::env::vars() {
        if k.starts_with("REDIS_")
            || k.starts_with("POSTGRES_")
            || k.starts_with("OPTION_")
            || matches!(
                k.as_str(),
                "DATABASE_URL" | "ADMIN_PORT" | "BATCH_SIZE" | "WORKER_ID" | "BLOCK_TIMEOUT"
            )
        {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_probes_the_admin_port() {
    let r = testkit::redis();
    let pg = testkit::postgres().await;
    let (_w, admin) = spawn(&r.url, &pg.url, &r.queue, &[]);
    let port = admin.to_string();
    testkit::eventually("healthcheck to pass", LONG, || {
        let port = port.clone();
        async move {
            let out = command(&[("ADMIN_PORT", &port)])
                .arg("healthcheck")
                .output()
                .ok()?;
            out.status.success().then_some(())
        }
    })
    .await;
    let closed = testkit::free_port().to_string();
    let out = command(&[("ADMIN_PORT", &closed)])
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}

#[test]
fn bad_settings_stop_the_worker_with_a_line_naming_the_variable() {
    for (var, value) in [
        ("BATCH_SIZE", "0"),
        ("BATCH_SIZE", "many"),
        ("BLOCK_TIMEOUT", "-1"),
        ("HEARTBEAT_TTL", "forever"),
        ("WORKER_ID", "two words"),
        ("REDIS_URL", "http://x"),
    ] {
        let out = command(&[(var, value)]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{var}={value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
