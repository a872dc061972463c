//! The service in-process on real sockets (port 0), against a Redis this test
//! owns, so it can stop and start it: 503 while Redis is down, recovery
//! without a restart, readiness, graceful stop.

use std::time::Duration;

use redis::AsyncCommands;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use common::queue::Keys;

struct Running {
    base: String,
    admin: String,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(redis_url: &str, queue: &str) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let admin_base = format!("http://{}", admin.local_addr().unwrap());
    let token = CancellationToken::new();
    let settings = vote::Settings::for_tests(redis_url, queue);
    let task = tokio::spawn(vote::run(listener, admin, settings, token.clone()));
    Running {
        base,
        admin: admin_base,
        token,
        task,
    }
}

async fn post_vote(client: &reqwest::Client, base: &str, vote: &str) -> (u16, String) {
    let res = client
        .post(format!("{base}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", "voter_id=00000000000000000000000000000abc")
        .body(format!("vote={vote}"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").cloned();
    let text = res.text().await.unwrap();
    if status == 503 {
        assert_eq!(retry_after.unwrap(), "1");
    }
    (status, text)
}

async fn status_of(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_and_the_service_recovers_by_itself() {
    let server = testkit::RedisServer::start();
    let queue = testkit::unique_name("votes");
    let app = start(&server.url(), &queue).await;
    let client = reqwest::Client::new();

    assert_eq!(post_vote(&client, &app.base, "a").await.0, 200);
    assert_eq!(
        status_of(&client, &format!("{}/readyz", app.admin)).await,
        200
    );

    server.stop();
    let (status, text) = post_vote(&client, &app.base, "b").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Redis is unavailable"), "{text}");
    assert!(text.contains("not") || text.contains("could not"), "{text}");
    // The page itself needs no Redis.
    assert_eq!(status_of(&client, &format!("{}/", app.base)).await, 200);
    assert_eq!(
        status_of(&client, &format!("{}/readyz", app.admin)).await,
        503
    );
    assert_eq!(
        status_of(&client, &format!("{}/healthz", app.admin)).await,
        200
    );
    assert!(!app.task.is_finished(), "the process stays up");

    server.start_again();
    testkit::eventually("votes accepted again", Duration::from_secs(20), || async {
        (post_vote(&client, &app.base, "b").await.0 == 200).then_some(())
    })
    .await;
    testkit::eventually("ready again", Duration::from_secs(10), || async {
        (status_of(&client, &format!("{}/readyz", app.admin)).await == 200).then_some(())
    })
    .await;

    // The vote made before the outage survived it (append-only file); the
    // refused one is not there; the one after recovery is.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let raw: Vec<String> = conn.lrange(&queue, 0, -1).await.unwrap();
    assert_eq!(raw.first().map(|m| m.contains(r#""vote":"a""#)), Some(true));
    assert!(raw[1..].iter().all(|m| m.contains(r#""vote":"b""#)));
    assert!(raw.len() >= 2);

    let metrics = client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("redis_errors_total"), "{metrics}");
    assert!(
        metrics.contains(r#"votes_queued_total{vote="a"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"http_requests_total{route="/",method="POST",status="503"}"#),
        "{metrics}"
    );

    app.token.cancel();
    app.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_lost_in_a_redis_restart_is_loaded_again() {
    // After a restart Redis has forgotten the Lua script: the first EVALSHA
    // meets NOSCRIPT, and the vote must still go through.
    let server = testkit::RedisServer::start();
    let queue = testkit::unique_name("votes");
    let app = start(&server.url(), &queue).await;
    let client = reqwest::Client::new();
    assert_eq!(post_vote(&client, &app.base, "a").await.0, 200);
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    assert_eq!(post_vote(&client, &app.base, "b").await.0, 200);
    let len: i64 = admin.llen(&queue).await.unwrap();
    let seq: i64 = admin.get(Keys::new(queue.clone()).seq()).await.unwrap();
    assert_eq!((len, seq), (2, 2));
    app.token.cancel();
    app.task.await.unwrap().unwrap();
}
