//! Real Redis and Postgres for tests, benchmarks and the native launcher.
//!
//! A test never mocks Redis or Postgres and never silently skips:
//!
//! - [`redis`] / [`postgres`] give the server named by `REDIS_URL` /
//!   `DATABASE_URL` when set; otherwise a throwaway `redis-server` / `postgres`
//!   started from the binaries on `PATH` (for Postgres also Debian's
//!   `/usr/lib/postgresql/<version>/bin`) on a free port, shared by the tests of
//!   one test binary and gone when it exits; otherwise they panic with a
//!   message saying what to install.
//! - Each test owns its data: [`TestRedis::queue`] is a fresh queue name (every
//!   Redis key of the app derives from it) and [`TestPg::database`] a fresh
//!   database.
//! - Tests that stop and restart a server get their own: [`RedisServer::start`],
//!   [`PgServer::start`].
//!
//! Servers are spawned from one long-lived thread with `PR_SET_PDEATHSIG`, so
//! the kernel stops them when the test process ends, however it ends (the
//! death signal fires when the spawning *thread* exits, which is why it must
//! be a thread that lives as long as the process). Data folders live under
//! `$TMPDIR/voting-testkit/<pid>-*`; those of dead processes are removed at the
//! next start.

// Spawning with a parent-death signal and sending signals need libc calls.
#![allow(unsafe_code)]

mod pg;
mod process;
mod redis_server;
pub mod stack;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use pg::{postgres, PgServer, TestPg};
pub use process::{free_port, port_open, Service};
pub use redis_server::{redis, RedisServer, TestRedis};
pub use stack::{Stack, StackOptions};

/// A name unique in this process and across processes (pid, counter, time).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{t:x}", std::process::id())
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
/// The way tests wait for a condition; never a bare sleep.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
