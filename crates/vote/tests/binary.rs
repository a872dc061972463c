//! End-to-end: the real `vote` binary as a child process, against a real Redis.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use redis::AsyncCommands;

const EXE: &str = env!("CARGO_BIN_EXE_vote");

/// Settings a developer's shell might have set, removed so the test sees only its own.
const APP_VARS: [&str; 12] = [
    "BIND_PORT",
    "ADMIN_PORT",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "VOTES_QUEUE",
    "OPTION_A",
    "OPTION_B",
    "OPTION_C",
    "LOG_FORMAT",
    "RUST_LOG",
    "REDIS_URL_FILE",
];

/// Runs the binary to completion with `envs`; returns (exit code, stderr+stdout).
fn run_to_end(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(EXE);
    cmd.args(args);
    for v in APP_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(envs.iter().copied());
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text)
}

struct Vote {
    svc: testkit::Service,
    port: u16,
    admin: u16,
}

async fn spawn_vote(redis_url: &str, queue: &str) -> Vote {
    let port = testkit::free_port();
    let admin = testkit::free_port();
    let svc = testkit::Service::spawn(
        "vote",
        Path::new(EXE),
        &[],
        &[
            ("BIND_PORT", port.to_string()),
            ("ADMIN_PORT", admin.to_string()),
            ("REDIS_URL", redis_url.to_owned()),
            ("VOTES_QUEUE", queue.to_owned()),
        ],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{admin}/healthz");
    testkit::eventually("vote healthy", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;
    Vote { svc, port, admin }
}

async fn get_text(url: &str) -> (u16, String) {
    let res = reqwest::get(url).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_votes_health_metrics_and_stops_on_sigterm() {
    let r = testkit::redis();
    let mut vote = spawn_vote(&r.url, &r.queue).await;
    let base = format!("http://127.0.0.1:{}", vote.port);
    let admin = format!("http://127.0.0.1:{}", vote.admin);

    let (status, page) = get_text(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Cats vs Dogs!"));
    assert!(page.contains("Processed by container ID"));

    let res = reqwest::Client::new()
        .post(format!("{base}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("vote=b")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut conn = redis::Client::open(r.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let raw: Vec<String> = conn.lrange(&r.queue, 0, -1).await.unwrap();
    assert_eq!(raw.len(), 1);
    assert!(raw[0].contains(r#""vote":"b""#));

    assert_eq!(get_text(&format!("{admin}/healthz")).await.0, 200);
    assert_eq!(get_text(&format!("{admin}/readyz")).await.0, 200);
    let (_, metrics) = get_text(&format!("{admin}/metrics")).await;
    for series in [
        r#"votes_queued_total{vote="b"} 1"#,
        r#"http_requests_total{route="/",method="POST",status="200"} 1"#,
        r#"http_requests_total{route="/",method="GET",status="200"} 1"#,
        "http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }

    let admin_port = vote.admin.to_string();
    let healthcheck = |port: String| {
        tokio::task::spawn_blocking(move || run_to_end(&["healthcheck"], &[("ADMIN_PORT", &port)]))
    };
    assert_eq!(healthcheck(admin_port.clone()).await.unwrap().0, 0);

    let status = vote.svc.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "SIGTERM exit: {status}\n{}",
        vote.svc.output()
    );
    let (code, text) = healthcheck(admin_port).await.unwrap();
    assert_eq!(code, 1, "healthcheck of a stopped service: {text}");
    assert!(text.contains("unhealthy"), "{text}");
    assert!(vote.svc.output().contains("vote stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_finishes_the_request_in_flight() {
    // Redis paused for writes holds our vote in flight, deterministically:
    // the script waits in Redis until the pause ends.
    let server = testkit::RedisServer::start();
    let queue = testkit::unique_name("votes");
    let mut vote = spawn_vote(&server.url(), &queue).await;
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Warm the connection (and load the script) before pausing.
    let base = format!("http://127.0.0.1:{}", vote.port);
    let client = reqwest::Client::new();
    let post = |client: reqwest::Client, base: String| async move {
        client
            .post(format!("{base}/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("vote=a")
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    assert_eq!(post(client.clone(), base.clone()).await.unwrap(), 200);

    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10000)
        .arg("WRITE")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let in_flight = tokio::spawn(post(reqwest::Client::new(), base.clone()));
    testkit::eventually("the vote waiting in Redis", Duration::from_secs(10), || {
        let mut redis = redis.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query_async(&mut redis)
                .await
                .ok()?;
            info.lines()
                .any(|l| l.starts_with("blocked_clients:") && l != "blocked_clients:0")
                .then_some(())
        }
    })
    .await;

    let pid = vote.svc.pid().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let port = vote.port;
    testkit::eventually(
        "new connections refused",
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert!(!in_flight.is_finished());

    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "{}",
        vote.svc.output()
    );
    let len: i64 = redis.llen(&queue).await.unwrap();
    assert_eq!(len, 2);
    let status = testkit::eventually("vote exits", Duration::from_secs(10), || {
        let s = vote.svc.try_status();
        async move { s }
    })
    .await;
    assert!(status.success(), "{status}\n{}", vote.svc.output());
}

#[test]
fn a_malformed_setting_stops_the_binary_with_one_line_naming_it() {
    for (var, value) in [
        ("BIND_PORT", "abc"),
        ("BIND_PORT", "70000"),
        ("ADMIN_PORT", "-1"),
        ("REDIS_PORT", "x"),
        ("REDIS_URL", "http://redis:6379"),
        ("LOG_FORMAT", "xml"),
    ] {
        let (code, text) = run_to_end(&[], &[(var, value)]);
        assert_eq!(code, 2, "{var}={value}: {text}");
        let first = text.lines().next().unwrap_or_default();
        assert!(first.contains(var), "{var}={value}: first line {first:?}");
        assert!(!text.contains("panicked"), "{text}");
    }
}

#[test]
fn unusable_settings_at_start_name_the_variable() {
    // No options left.
    let (code, text) = run_to_end(
        &[],
        &[
            ("OPTION_A", ""),
            ("OPTION_B", " "),
            ("BIND_PORT", "0"),
            ("ADMIN_PORT", "0"),
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("OPTION_A"), "{text}");

    // The port is taken.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, text) = run_to_end(&[], &[("BIND_PORT", &port), ("ADMIN_PORT", "0")]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("BIND_PORT: cannot listen on port"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
