//! The result service in-process against a real Postgres, through a real HTTP
//! client: events, coalescing, the periodic safety net, a Postgres restart,
//! shutdown, and concurrent migrations.

mod support;

use std::time::{Duration, Instant};

use common::options::VoteOptions;
use result::Pacing;
use support::*;

fn pacing() -> Pacing {
    Pacing::default()
}

#[tokio::test]
async fn events_carry_current_tallies_then_each_commit() {
    let pg = testkit::postgres().await;
    let app = Running::start(&pg.url, VoteOptions::default(), pacing()).await;
    let db = writer(&pg.url).await;

    let mut sse = SseClient::connect(&app.base).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    // On connect: the current tallies, every option present, and a retry hint.
    assert_eq!(
        sse.next_within().await,
        Some(tallies(&[("a", 0), ("b", 0)]))
    );
    assert_eq!(sse.retry, Some(1000));

    cast(&db, &voters("x", 2, "a")).await.unwrap();
    cast(&db, &voters("y", 1, "b")).await.unwrap();
    sse.until(&tallies(&[("a", 2), ("b", 1)])).await;

    // A voter who changes their mind moves one vote; the total stays.
    cast(&db, &[("y-0".to_owned(), "a")]).await.unwrap();
    sse.until(&tallies(&[("a", 3), ("b", 0)])).await;

    // A client that connects now starts from the current state.
    let mut late = SseClient::connect(&app.base).await;
    assert_eq!(
        late.next_within().await,
        Some(tallies(&[("a", 3), ("b", 0)]))
    );

    // The page is rendered with the same tallies.
    let (status, headers, html) = get(&format!("{}/", app.base)).await;
    assert_eq!(status, 200);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(html.contains(">100%<") && html.contains(">0%<"), "{html}");
    assert!(html.contains(">3 votes<"), "{html}");

    let (_, _, metrics) = get(&format!("http://127.0.0.1:{}/metrics", app.admin)).await;
    for name in [
        "sse_clients",
        "sse_events_sent_total",
        "notify_to_send_seconds",
        "tally_reads_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn options_beyond_two_and_unknown_votes() {
    let pg = testkit::postgres().await;
    let opts = VoteOptions::new([
        ("a", "Tea".to_owned()),
        ("b", "Coffee".to_owned()),
        ("c", "Water".to_owned()),
    ]);
    let app = Running::start(&pg.url, opts, pacing()).await;
    let db = writer(&pg.url).await;
    let mut sse = SseClient::connect(&app.base).await;
    sse.until(&tallies(&[("a", 0), ("b", 0), ("c", 0)])).await;
    // A vote for an option that is not configured (left in the table from an
    // older configuration) is not shown and not counted in the total.
    cast(&db, &voters("old", 4, "h")).await.unwrap();
    cast(&db, &voters("new", 1, "c")).await.unwrap();
    sse.until(&tallies(&[("a", 0), ("b", 0), ("c", 1)])).await;
    let (_, _, html) = get(&format!("{}/", app.base)).await;
    for name in ["Tea", "Coffee", "Water", "Tea vs Coffee vs Water"] {
        assert!(html.contains(name), "{name}: {html}");
    }
    assert!(html.contains(">1 vote<"), "{html}");
    app.stop().await;
}

/// 10,000 votes in 10,000 transactions, each with its own notification: the
/// service reads at most once per `min_gap`, so the clients see a bounded
/// number of events that ends with the exact counts.
#[tokio::test]
async fn a_burst_of_10000_votes_is_coalesced() {
    let pg = testkit::postgres().await;
    let p = Pacing {
        min_gap: Duration::from_millis(100),
        refresh: Duration::from_secs(5),
    };
    let app = Running::start(&pg.url, VoteOptions::default(), p).await;
    let db = writer(&pg.url).await;
    let mut sse = SseClient::connect(&app.base).await;
    sse.until(&tallies(&[("a", 0), ("b", 0)])).await;
    let before = sse.events;

    let started = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..1250 {
                    let vote = if i % 3 == 0 { "b" } else { "a" };
                    cast(&db, &[(format!("burst-{w}-{i}"), vote)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    // 1250 per writer: i % 3 == 0 for 417 of them.
    let want = tallies(&[("a", 8 * 833), ("b", 8 * 417)]);
    sse.until(&want).await;
    let window = started.elapsed();
    let events = sse.events - before;
    // Reads are at least min_gap apart, so at most one event per gap (plus
    // one for the read that may start right away).
    let bound = (window.as_millis() / p.min_gap.as_millis()) as usize + 2;
    eprintln!("10,000 commits in {window:?}: {events} events (bound {bound})");
    assert!(
        events <= bound,
        "{events} events for 10,000 notifications over {window:?}; expected at most {bound}"
    );
    assert!(events < 10_000 / 10);
    app.stop().await;
}

/// A change committed without a notification (a lost NOTIFY) still reaches
/// the clients through the periodic re-read.
#[tokio::test]
async fn a_lost_notification_is_caught_by_the_refresh() {
    let pg = testkit::postgres().await;
    let p = Pacing {
        min_gap: Duration::from_millis(50),
        refresh: Duration::from_millis(300),
    };
    let app = Running::start(&pg.url, VoteOptions::default(), p).await;
    let db = writer(&pg.url).await;
    let mut sse = SseClient::connect(&app.base).await;
    sse.until(&tallies(&[("a", 0), ("b", 0)])).await;
    sqlx::query("INSERT INTO tallies (vote, count) VALUES ('b', 5)")
        .execute(&db)
        .await
        .unwrap();
    sse.until(&tallies(&[("a", 0), ("b", 5)])).await;
    app.stop().await;
}

/// Postgres restarted (sessions cut, the LISTEN gone): result listens again by
/// itself, and a client that stayed connected gets fresh data.
#[tokio::test]
async fn a_postgres_restart_is_survived() {
    let server = tokio::task::spawn_blocking(testkit::PgServer::start)
        .await
        .unwrap();
    let url = server.url();
    let app = Running::start(&url, VoteOptions::default(), pacing()).await;
    let db = writer(&url).await;
    let mut sse = SseClient::connect(&app.base).await;
    cast(&db, &voters("before", 2, "a")).await.unwrap();
    sse.until(&tallies(&[("a", 2), ("b", 0)])).await;

    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();

    // Not ready while... it may already be back; what matters is after.
    testkit::eventually("the write after the restart", WAIT, || {
        let db = db.clone();
        async move { cast(&db, &voters("after", 3, "b")).await.ok() }
    })
    .await;
    // This commit's NOTIFY reaches the new LISTEN connection, or the read
    // after reconnecting sees it: either way the open stream gets it.
    sse.until(&tallies(&[("a", 2), ("b", 3)])).await;
    // And notifications work again (not only the re-read after reconnecting).
    cast(&db, &voters("later", 1, "a")).await.unwrap();
    sse.until(&tallies(&[("a", 3), ("b", 3)])).await;

    let (status, _, _) = get(&format!("http://127.0.0.1:{}/readyz", app.admin)).await;
    assert_eq!(status, 200);
    // With Postgres stopped, readiness says so; the stream stays open.
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let (status, _, body) = get(&format!("http://127.0.0.1:{}/readyz", app.admin)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("postgres"), "{body}");
    let _server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    testkit::eventually("a write once Postgres is back", WAIT, || {
        let db = db.clone();
        async move { cast(&db, &voters("back", 2, "b")).await.ok() }
    })
    .await;
    sse.until(&tallies(&[("a", 3), ("b", 5)])).await;
    app.stop().await;
}

/// Shutdown ends every open stream, so the server's graceful shutdown ends.
#[tokio::test]
async fn shutdown_ends_open_streams() {
    let pg = testkit::postgres().await;
    let app = Running::start(&pg.url, VoteOptions::default(), pacing()).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = SseClient::connect(&app.base).await;
        assert!(s.next_within().await.is_some());
        streams.push(s);
    }
    app.stop().await;
    for mut s in streams {
        assert_eq!(s.next_within().await, None, "the stream ends at shutdown");
    }
}

/// Worker and result both migrate at start, possibly at the same moment.
#[tokio::test]
async fn concurrent_migrations_on_a_fresh_database_both_succeed() {
    let pg = testkit::postgres().await;
    let args = common::config::PostgresArgs::from_url(&pg.url);
    let (p1, p2) = (common::db::pool(&args, 2), common::db::pool(&args, 2));
    let (r1, r2) = tokio::join!(common::db::migrate(&p1), common::db::migrate(&p2));
    r1.expect("first migrate");
    r2.expect("second migrate");
    assert!(common::db::read_tallies(&p1).await.unwrap().is_empty());
}

/// Before the first read (Postgres unreachable from the start) the page says
/// it is waiting, the process stays up, and it catches up when Postgres comes.
#[tokio::test]
async fn starts_without_postgres_and_catches_up() {
    let port = testkit::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let app = Running::start(&url, VoteOptions::default(), pacing()).await;
    let (status, _, html) = get(&format!("{}/", app.base)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Waiting for the database"), "{html}");
    let (status, _, _) = get(&format!("http://127.0.0.1:{}/readyz", app.admin)).await;
    assert_eq!(status, 503);
    let mut sse = SseClient::connect(&app.base).await;

    let server = tokio::task::spawn_blocking(move || testkit::PgServer::start_with(port, false))
        .await
        .unwrap();
    let db = writer(&server.url()).await;
    cast(&db, &voters("v", 1, "b")).await.unwrap();
    sse.until(&tallies(&[("a", 0), ("b", 1)])).await;
    app.stop().await;
    drop(server);
}

/// A keep-alive connection that asks for `/events` after another request is
/// served by the axum route (the direct path only takes connections that
/// open with it): the same headers and events.
#[tokio::test]
async fn events_on_a_reused_connection_come_from_the_router() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pg = testkit::postgres().await;
    let app = Running::start(&pg.url, VoteOptions::default(), pacing()).await;
    let db = writer(&pg.url).await;
    cast(&db, &voters("r", 1, "b")).await.unwrap();
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /static/result.css HTTP/1.1\r\nHost: x\r\n\r\nGET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let want = r#"data: {"counts":{"a":0,"b":1},"total":1}"#;
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let res = tokio::time::timeout(WAIT, async {
        while !(got.contains("text/event-stream") && got.contains(want)) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(res.is_ok(), "no event on the reused connection: {got}");
    // The second response, the one to /events.
    let at = got.match_indices("HTTP/1.1 200").nth(1).map(|(i, _)| i);
    let events = &got[at.unwrap_or_else(|| panic!("two responses: {got}"))..];
    assert!(
        events.to_lowercase().contains("transfer-encoding: chunked"),
        "{got}"
    );
    let lower = events.to_lowercase();
    assert!(lower.contains("x-accel-buffering: no"), "{got}");
    assert!(lower.contains("cache-control: no-cache"), "{got}");
    assert!(events.contains("retry: 1000"), "{got}");
    drop(s);
    app.stop().await;
}
