//! The seed binary against the real native stack (Redis, Postgres, worker,
//! vote, result, from `target/<profile>`; `cargo test --workspace` builds them):
//! the default run ends at 2,000/1,000 and verifies; with the worker stopped
//! verification fails clearly; with Redis stopped vote answers 503 and the
//! exit status says so.

use std::time::Duration;

use testkit::{Stack, StackOptions};

/// One stack at a time: three at once overload the machine, and ports taken
/// with `free_port` could collide between them.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start_stack() -> Stack {
    tokio::task::spawn_blocking(|| {
        Stack::start(StackOptions::new(&["worker", "vote", "result"]))
            .unwrap_or_else(|e| panic!("starting the native stack: {e:#}"))
    })
    .await
    .unwrap()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn seed(stack: &Stack, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_seed"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SEED_") || k == "VOTE_URL" || k == "RESULT_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env(
        "VOTE_URL",
        format!("http://127.0.0.1:{}/", stack.ports.vote),
    )
    .env(
        "RESULT_URL",
        format!("http://127.0.0.1:{}/", stack.ports.result),
    )
    .args(args);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("seed finished within 3 minutes")
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn tallies_in_postgres(stack: &Stack) -> std::collections::BTreeMap<String, i64> {
    let pool = common::db::pool(&common::config::PostgresArgs::from_url(&stack.pg.url()), 1);
    common::db::read_tallies(&pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_run_leaves_2000_and_1000_and_verifies() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = start_stack().await;
    let run = seed(&stack, &["--verify"]).await;
    println!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("sent 3000 votes"), "{}", run.stdout);
    assert!(
        run.stdout.contains("verified    every vote counted"),
        "{}",
        run.stdout
    );
    let t = tallies_in_postgres(&stack).await;
    assert_eq!(t.get("a"), Some(&2000), "{t:?}");
    assert_eq!(t.get("b"), Some(&1000), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_worker_stopped_verify_fails_and_says_what_is_missing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut stack = start_stack().await;
    stack.stop_service("worker").expect("worker was running");
    let run = seed(
        &stack,
        &["--count", "30", "--verify", "--verify-timeout", "2s"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("30 succeeded, 0 failed"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("NOT VERIFIED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("a: expected 20, seen 0 (20 missing)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("b: expected 10, seen 0 (10 missing)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("is the worker running?"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_vote_service_makes_the_exit_status_non_zero() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = start_stack().await;
    // vote answers 503 while Redis is down (its page itself needs no Redis,
    // so the seed's wait for it passes).
    stack.redis.stop();
    let run = seed(&stack, &["--count", "20", "--json"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["failed"], 20, "{report}");
    assert_eq!(report["failures"]["status 503"], 20, "{report}");
}
