//! Postgres: the pool, the embedded migrations, the tallies.
//!
//! Schema (see `migrations/`): the original `votes (id, vote)` table plus an
//! order key, and a `tallies (vote, count)` table that the worker keeps
//! consistent with `votes` in the same transaction. After each commit that
//! changed the tallies the worker sends `NOTIFY` on [`TALLIES_CHANNEL`]; the
//! result service `LISTEN`s and reads [`read_tallies`], one row per option.
//!
//! Migrations are compiled into every binary and run at start by both worker
//! and result: sqlx takes a Postgres advisory lock, so the two may start at the
//! same moment, and the statements are idempotent besides.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::config::PostgresArgs;

/// The schema, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The channel the worker notifies after a commit that changed the tallies.
pub const TALLIES_CHANNEL: &str = "tallies_changed";

/// A pool that connects on first use, so a service starts while Postgres is
/// down and reports it on `/readyz` instead of crash-looping.
pub fn pool(args: &PostgresArgs, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(args.connect_options())
}

/// Runs the embedded migrations (idempotent, safe concurrently).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"))
}

/// Count per option key, from the tallies table: cost independent of the
/// number of votes. Options nobody voted for are absent.
pub async fn read_tallies(pool: &PgPool) -> sqlx::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT vote, count FROM tallies")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Count per option key by counting `votes` (the original's query). For tests
/// and checks of the invariant, never for the live path.
pub async fn count_votes(pool: &PgPool) -> sqlx::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT vote, COUNT(id) AS count FROM votes GROUP BY vote")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
