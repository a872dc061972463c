//! The `worker` service: drains the Redis vote queue into Postgres.
//!
//! ```text
//! Redis list `votes` ──TAKE (Lua)──► votes:processing:<id> ──► parse, validate, collapse ──► one transaction:
//!                                          │                   (batch)                       upsert votes + tally deltas + NOTIFY
//!                                          └─── ACK (Lua) after COMMIT ◄────────────────────────┘
//! ```
//!
//! - [`queue`] moves batches atomically from the queue to this worker's
//!   processing list, acknowledges them after the commit, keeps a heartbeat,
//!   and puts back the batches of workers that died.
//! - [`batch`] parses and validates each message (dead letters for the rest)
//!   and collapses a batch to the newest vote per voter.
//! - [`store`] applies a batch in one statement: votes that are new or newer
//!   than the stored ones, the tally deltas, and the `tallies_changed`
//!   notification, all in one transaction.
//! - [`consume`] is the loop, overlapping the next Redis round trip with the
//!   current commit, retrying faults with backoff.
//!
//! **Delivery.** At least once, with idempotent writes: a message leaves Redis
//! only after the transaction that applied it committed, so a crash at any
//! point loses nothing; a batch that is replayed after a crash changes
//! nothing, so nothing is counted twice. Votes carrying the order key `seq`
//! are applied newest-wins whatever the order they arrive in; votes without it
//! (the original vote app's) apply in queue order, which with several workers
//! running at once is only approximate for a voter who votes twice in the
//! same instant.
//!
//! The admin port serves `/healthz`, `/readyz` (Redis and Postgres answer) and
//! `/metrics`: `votes_applied_total`, `batch_size` and
//! `batch_duration_seconds` histograms, `queue_depth`, `dead_letters_total`,
//! `retries_total{what}`.

pub mod batch;
mod consume;
pub mod queue;
pub mod settings;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use common::admin::ReadyCheck;
use common::queue::Keys;
use sqlx::postgres::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

/// Runs the worker until `shutdown` is cancelled: serves the admin routes on
/// `admin`, waits for Postgres (then migrates) and Redis, and consumes the
/// queue. Returns once the batch in hand is committed and acknowledged.
pub async fn run(
    admin: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let options = Arc::new(settings.options.options()?);
    let client = common::queue::client(&settings.redis)?;
    let conn = common::queue::manager(client.clone())?;
    let pool = common::db::pool(&settings.postgres, 4);
    describe_metrics();

    let admin_token = CancellationToken::new();
    let ready = ready_check(conn.clone(), pool.clone());
    let admin_task = tokio::spawn(common::admin::serve(admin, ready, admin_token.clone()));

    let id = settings.worker_id();
    tracing::info!(
        worker = %id,
        queue = %settings.queue.votes_queue,
        redis = %settings.redis.describe(),
        postgres = %settings.postgres.describe(),
        batch_size = settings.batch_size,
        "worker starting"
    );
    let started = async {
        common::retry::wait_for("postgres", &shutdown, || common::db::migrate(&pool)).await?;
        common::retry::wait_for("redis", &shutdown, || {
            let mut c = conn.clone();
            async move { redis::cmd("PING").query_async::<()>(&mut c).await }
        })
        .await
    }
    .await;

    if started.is_some() {
        let consumer = consume::Consumer {
            queue: queue::Queue::new(
                Keys::from(&settings.queue),
                id,
                conn.clone(),
                settings.heartbeat_ttl,
            ),
            blocking: Some(queue::Blocking::new(client, settings.block_timeout)),
            pool: pool.clone(),
            options,
            batch_size: settings.batch_size as usize,
            ttl: settings.heartbeat_ttl,
            token: shutdown.clone(),
        };
        consumer.run().await;
    }
    tracing::info!("worker stopped");
    admin_token.cancel();
    admin_task.await??;
    pool.close().await;
    Ok(())
}

/// `/readyz`: Redis answers `PING` and Postgres `SELECT 1`, each within a second.
fn ready_check(conn: redis::aio::ConnectionManager, pool: PgPool) -> ReadyCheck {
    Arc::new(move || {
        let mut conn = conn.clone();
        let pool = pool.clone();
        Box::pin(async move {
            let t = Duration::from_secs(1);
            match tokio::time::timeout(t, redis::cmd("PING").query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("redis: {e}")),
                Err(_) => return Err("redis: no answer within 1 s".into()),
            }
            match tokio::time::timeout(t, store::ping(&pool)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("postgres: {e}")),
                Err(_) => Err("postgres: no answer within 1 s".into()),
            }
        })
    })
}

fn describe_metrics() {
    // Installs the recorder first: what is recorded before it is lost.
    common::admin::metrics_handle();
    metrics::describe_counter!(
        "votes_applied_total",
        "Valid vote messages in committed batches (replays included)."
    );
    metrics::describe_histogram!("batch_size", "Messages per batch taken from the queue.");
    metrics::describe_histogram!(
        "batch_duration_seconds",
        "Time from taking a batch in hand to its acknowledgement in Redis."
    );
    metrics::describe_gauge!(
        "queue_depth",
        "Messages left in the queue after the last take."
    );
    metrics::describe_counter!(
        "dead_letters_total",
        "Messages set aside in the dead-letter list."
    );
    metrics::describe_counter!(
        "retries_total",
        "Operations retried after a Redis or Postgres fault, by dependency."
    );
    // Present from the start, so a dashboard sees zeros rather than nothing.
    metrics::counter!("votes_applied_total").increment(0);
    metrics::counter!("dead_letters_total").increment(0);
    metrics::counter!("retries_total", "what" => "redis").increment(0);
    metrics::counter!("retries_total", "what" => "postgres").increment(0);
}
