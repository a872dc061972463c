//! The hit counter against a real Redis: it counts, it loses no increment
//! under concurrency, it answers 503 while Redis is down and recovers, and the
//! binary starts, probes itself and reports bad settings clearly.

use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use hits::{Listeners, Settings};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// An in-process `hits` on a free port counting in `key`; stops when the token
/// is cancelled.
async fn serve(url: &str, key: &str) -> (u16, CancellationToken) {
    let web = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = web.local_addr().unwrap().port();
    let token = CancellationToken::new();
    let settings = Settings {
        redis: common::config::RedisArgs::from_url(url),
        key: key.to_owned(),
    };
    tokio::spawn(hits::run(
        Listeners { web, admin: None },
        settings,
        token.clone(),
    ));
    (port, token)
}

/// One HTTP/1.1 connection to 127.0.0.1:`port`.
async fn connect(port: u16) -> hyper::client::conn::http1::SendRequest<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// GET `path` on `sender`: status and body.
async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<String>,
    path: &str,
) -> (u16, String) {
    sender.ready().await.unwrap();
    let req = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(String::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(port: u16, path: &str) -> (u16, String) {
    get_on(&mut connect(port).await, path).await
}

/// N from `Hello World! I have been seen N times.`
fn count_of(body: &str) -> u64 {
    body.strip_prefix("Hello World! I have been seen ")
        .and_then(|s| s.strip_suffix(" times.\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {body:?}"))
}

#[tokio::test]
async fn each_visit_counts_once_as_plain_text() {
    let r = testkit::redis();
    let settings = Settings {
        redis: common::config::RedisArgs::from_url(&r.url),
        key: format!("{}:hits", r.queue),
    };
    let app = hits::router(hits::AppState::new(&settings).unwrap());
    for n in 1..=2 {
        let res = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            format!("Hello World! I have been seen {n} times.\n").as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_visits_over_a_hundred_connections_lose_nothing() {
    let r = testkit::redis();
    let key = format!("{}:hits", r.queue);
    let (port, token) = serve(&r.url, &key).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                let mut sender = connect(port).await;
                let mut seen = Vec::with_capacity(100);
                for _ in 0..100 {
                    let (status, body) = get_on(&mut sender, "/").await;
                    assert_eq!(status, 200, "{body}");
                    seen.push(count_of(&body));
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::with_capacity(10_000);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    // Every visitor saw a different N, and together they saw 1..=10000.
    assert!(
        all.iter().copied().eq(1..=10_000),
        "counts seen are not exactly 1..=10000"
    );
    let client = redis::Client::open(r.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored: u64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 10_000);
    token.cancel();
}

#[tokio::test]
async fn redis_down_gives_503_naming_redis_and_recovers_by_itself() {
    let server = testkit::RedisServer::start();
    let (port, _token) = serve(&server.url(), "hits").await;
    assert_eq!(get(port, "/").await, (200, ok(1)));
    assert_eq!(get(port, "/readyz").await.0, 200);

    server.stop();
    let (status, body) = get(port, "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("Redis is unavailable"), "{body}");
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("redis"), "{body}");
    // Alive all the same: the process did not crash.
    assert_eq!(get(port, "/healthz").await.0, 200);

    server.start_again();
    let body = testkit::eventually(
        "hits to answer 200 again",
        Duration::from_secs(20),
        || async {
            let (status, body) = get(port, "/").await;
            (status == 200).then_some(body)
        },
    )
    .await;
    // The server kept its data (append-only file), so the count goes on.
    assert_eq!(count_of(&body), 2);
}

fn ok(n: u64) -> String {
    format!("Hello World! I have been seen {n} times.\n")
}

/// The binary with a clean environment plus `envs`.
fn hits_cmd(envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hits"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REDIS_") || k == "BIND_PORT" || k == "ADMIN_PORT" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().copied());
    cmd
}

#[tokio::test]
async fn the_binary_counts_in_hits_and_probes_itself() {
    let server = testkit::RedisServer::start();
    let port = testkit::free_port();
    let admin = testkit::free_port();
    let mut svc = testkit::Service::spawn(
        "hits",
        env!("CARGO_BIN_EXE_hits").as_ref(),
        &[],
        &[
            ("REDIS_URL", server.url()),
            ("BIND_PORT", port.to_string()),
            ("ADMIN_PORT", admin.to_string()),
        ],
    )
    .unwrap();
    testkit::eventually("hits to listen", Duration::from_secs(20), || async {
        TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;
    assert_eq!(get(port, "/").await, (200, ok(1)));
    assert_eq!(get(port, "/").await, (200, ok(2)));
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored: u64 = redis::cmd("GET")
        .arg("hits")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 2, "the binary counts in the course's key `hits`");

    let p = port.to_string();
    let status = hits_cmd(&[("BIND_PORT", &p)])
        .arg("healthcheck")
        .status()
        .unwrap();
    assert!(status.success(), "healthcheck of a running hits: {status}");
    let (status, metrics) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("http_requests_total"), "{metrics}");

    let status = svc.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "SIGTERM ends hits cleanly: {status}\n{}",
        svc.output()
    );
    let out = hits_cmd(&[("BIND_PORT", &p)])
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}

#[tokio::test]
async fn starts_while_redis_is_down_and_says_so() {
    let port = testkit::free_port();
    let dead = testkit::free_port();
    let _svc = testkit::Service::spawn(
        "hits",
        env!("CARGO_BIN_EXE_hits").as_ref(),
        &[],
        &[
            ("REDIS_HOST", "127.0.0.1".to_owned()),
            ("REDIS_PORT", dead.to_string()),
            ("BIND_PORT", port.to_string()),
        ],
    )
    .unwrap();
    testkit::eventually("hits to listen", Duration::from_secs(20), || async {
        TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;
    let (status, body) = get(port, "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("Redis"), "{body}");
    assert_eq!(get(port, "/healthz").await.0, 200);
}

#[test]
fn bad_settings_stop_it_with_a_line_naming_the_variable() {
    let out = hits_cmd(&[("REDIS_PORT", "seventy")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("REDIS_PORT"), "{err}");

    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = hits_cmd(&[("BIND_PORT", &port), ("REDIS_HOST", "127.0.0.1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("BIND_PORT"), "{all}");
    assert!(!all.contains("panicked"), "{all}");
}
