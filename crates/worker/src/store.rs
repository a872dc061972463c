//! The Postgres side: one transaction per batch, votes and tallies together.
//!
//! The whole batch is one statement (plus `BEGIN`/`COMMIT`): the collapsed
//! votes travel as three arrays, `unnest` turns them into rows, and an
//! `INSERT .. ON CONFLICT (id) DO UPDATE .. WHERE <newer>` writes the rows that
//! are new or newer. Its `RETURNING` gives each changed row's old vote
//! (`prev_vote`, set by the same update from the version it locked) and new
//! vote; the difference is added to `tallies` in the same statement, and
//! `pg_notify` queues the `tallies_changed` notification, which Postgres
//! delivers at commit, and only if the tallies changed.
//!
//! The rule for a stored row and an incoming vote of the same voter:
//! - both carry an order key: the larger wins (an equal one is a replay and
//!   changes nothing);
//! - the incoming vote has none (the original vote app): it wins, queue order
//!   being the only order there is; the row keeps its order key, so a late
//!   message older than that key still cannot overwrite it;
//! - the row has none: the incoming vote wins.
//!
//! Replaying a batch therefore changes no vote with an order key, and writes
//! the same value again for those without; deltas are counted only where the
//! old vote differs from the new one, so the tallies never move on a replay.
//! Rows are inserted in voter-id order, so concurrent workers take row locks
//! in the same order and cannot deadlock; the tally rows likewise.

use common::message::VoteMessage;
use sqlx::postgres::PgPool;

/// The statement applying one batch. `$1` ids (sorted, unique), `$2` votes,
/// `$3` order keys (NULL for none), `$4` the notification channel.
const APPLY: &str = r#"
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) AS t(id, vote, seq)
),
up AS (
    INSERT INTO votes AS v (id, vote, seq, updated_at, prev_vote)
    SELECT id, vote, seq, now(), NULL FROM input ORDER BY id
    ON CONFLICT (id) DO UPDATE
       SET prev_vote = v.vote,
           vote = EXCLUDED.vote,
           seq = GREATEST(v.seq, EXCLUDED.seq),
           updated_at = EXCLUDED.updated_at
     WHERE EXCLUDED.seq IS NULL OR v.seq IS NULL OR EXCLUDED.seq > v.seq
    RETURNING v.prev_vote AS old_vote, v.vote AS new_vote
),
delta AS (
    SELECT vote, sum(d)::bigint AS d FROM (
        SELECT new_vote AS vote, 1 AS d FROM up WHERE old_vote IS DISTINCT FROM new_vote
        UNION ALL
        SELECT old_vote, -1 FROM up WHERE old_vote <> new_vote
    ) changes
    GROUP BY vote HAVING sum(d) <> 0
),
tally AS (
    -- The proposed row carries GREATEST(d, 0) because CHECK (count >= 0) is
    -- evaluated before the conflict is found; the update adds the real delta.
    INSERT INTO tallies AS t (vote, count)
    SELECT vote, GREATEST(d, 0) FROM delta ORDER BY vote
    ON CONFLICT (vote) DO UPDATE
       SET count = t.count + (SELECT d FROM delta WHERE delta.vote = EXCLUDED.vote)
    RETURNING t.vote, t.count
),
notified AS (
    SELECT pg_notify($4, '') FROM (SELECT 1 FROM delta LIMIT 1) any_change
)
SELECT (SELECT count(*) FROM up) AS changed,
       ARRAY(SELECT vote FROM tally WHERE count = 0)::text[] AS emptied,
       (SELECT count(*) FROM notified) AS notified
"#;

/// What a committed batch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Rows inserted or updated.
    pub changed: u64,
    /// Whether the tallies moved (and a notification went out).
    pub tallies_changed: bool,
}

/// Applies `votes` (one per voter, sorted by voter id, as
/// [`crate::batch::prepare`] makes them) in one transaction.
pub async fn apply(pool: &PgPool, votes: &[VoteMessage]) -> sqlx::Result<Applied> {
    if votes.is_empty() {
        return Ok(Applied::default());
    }
    let ids: Vec<&str> = votes.iter().map(|v| v.voter_id.as_str()).collect();
    let choices: Vec<&str> = votes.iter().map(|v| v.vote.as_str()).collect();
    let seqs: Vec<Option<i64>> = votes.iter().map(|v| v.seq).collect();
    let mut tx = pool.begin().await?;
    let (changed, emptied, notified): (i64, Vec<String>, i64) = sqlx::query_as(APPLY)
        .bind(&ids)
        .bind(&choices)
        .bind(&seqs)
        .bind(common::db::TALLIES_CHANNEL)
        .fetch_one(&mut *tx)
        .await?;
    if !emptied.is_empty() {
        // The tallies hold no row for an option nobody chose, as the
        // `GROUP BY` they mirror.
        sqlx::query("DELETE FROM tallies WHERE vote = ANY($1) AND count = 0")
            .bind(&emptied)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Applied {
        changed: changed as u64,
        tallies_changed: notified > 0,
    })
}

/// Checks that Postgres answers, for `/readyz`.
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
