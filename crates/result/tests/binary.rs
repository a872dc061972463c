//! The `result` binary as a process: SIGTERM with open streams, the
//! `healthcheck` subcommand, and settings mistakes named clearly.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const EXE: &str = env!("CARGO_BIN_EXE_result");

fn spawn(db_url: &str, bind: u16, admin: u16) -> testkit::Service {
    let env = [
        ("DATABASE_URL", db_url.to_owned()),
        ("BIND_PORT", bind.to_string()),
        ("ADMIN_PORT", admin.to_string()),
    ];
    testkit::Service::spawn("result", EXE.as_ref(), &[], &env).expect("spawning result")
}

async fn healthy(admin: u16) {
    testkit::eventually("result's /healthz", WAIT, || async move {
        tokio::task::spawn_blocking(move || {
            common::admin::probe(admin, "/healthz", Duration::from_secs(1)).ok()
        })
        .await
        .unwrap()
        .filter(|c| *c == 200)
    })
    .await;
}

fn healthcheck(admin: u16) -> std::process::Output {
    Command::new(EXE)
        .arg("healthcheck")
        .env("ADMIN_PORT", admin.to_string())
        .output()
        .unwrap()
}

#[tokio::test]
async fn sigterm_with_open_streams_exits_promptly_with_status_0() {
    let pg = testkit::postgres().await;
    let (bind, admin) = (testkit::free_port(), testkit::free_port());
    let mut svc = spawn(&pg.url, bind, admin);
    healthy(admin).await;
    let base = format!("http://127.0.0.1:{bind}");
    let mut a = SseClient::connect(&base).await;
    let mut b = SseClient::connect(&base).await;
    assert!(a.next_within().await.is_some());
    assert!(b.next_within().await.is_some());

    // `healthcheck` probes the running service.
    let out = tokio::task::spawn_blocking(move || healthcheck(admin))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // SIGTERM, then up to 10 s before the SIGKILL that would fail this test:
    // open streams must not hold the shutdown.
    let status = tokio::task::spawn_blocking(move || {
        let status = svc.terminate(Duration::from_secs(10));
        (status, svc.output())
    })
    .await
    .unwrap();
    assert_eq!(
        status.0.and_then(|s| s.code()),
        Some(0),
        "exit status {:?}; output:\n{}",
        status.0,
        status.1
    );
    assert_eq!(a.next_within().await, None);
    assert_eq!(b.next_within().await, None);

    let out = tokio::task::spawn_blocking(move || healthcheck(admin))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy"),
        "{out:?}"
    );
}

/// A bad setting stops the process at start with one line naming it.
#[test]
fn settings_mistakes_name_the_variable() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(EXE);
        for (k, _) in std::env::vars() {
            if k.starts_with("OPTION_") || k == "DATABASE_URL" || k.ends_with("_PORT") {
                cmd.env_remove(k);
            }
        }
        cmd.env("ADMIN_PORT", testkit::free_port().to_string());
        cmd.env("BIND_PORT", testkit::free_port().to_string());
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        // Clap writes to stderr; errors after logging is set up are log lines.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        (out.status.code(), text)
    };
    let (code, err) = run(&[("BIND_PORT", "eighty")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("BIND_PORT"), "{err}");
    let (code, err) = run(&[("DATABASE_URL", "mysql://x/y")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("DATABASE_URL"), "{err}");
    let (code, err) = run(&[("ADMIN_PORT", "99999")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("ADMIN_PORT"), "{err}");
    let (code, err) = run(&[("OPTION_A", ""), ("OPTION_B", " ")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("OPTION_A"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A port already taken.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) = run(&[("BIND_PORT", &port)]);
    assert_eq!(code, Some(1));
    assert!(err.contains("BIND_PORT") && err.contains(&port), "{err}");
    let (code, err) = run(&[("ADMIN_PORT", &port)]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ADMIN_PORT"), "{err}");
}
