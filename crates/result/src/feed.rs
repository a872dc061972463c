//! Change detection: from Postgres notifications to one shared snapshot.
//!
//! Two tasks, one [`watch`] channel:
//!
//! - The **listener** holds a `LISTEN tallies_changed` connection
//!   ([`common::db::TALLIES_CHANNEL`]) and turns every notification into a
//!   *poke* ([`Pokes`]). When the connection is lost (Postgres restarted) it
//!   reconnects with backoff and pokes once more, because notifications sent
//!   while it was away are gone for good.
//! - The **reader** waits for a poke (or the slow periodic refresh, the safety
//!   net for a lost notification), reads [`common::db::read_tallies`] (one row
//!   per option, cost independent of the number of votes) and publishes the
//!   result in the watch channel when it changed. All SSE streams and the page
//!   handler read that one value, so a change costs one query whatever the
//!   number of clients.
//!
//! Coalescing: reads are at least [`Pacing::min_gap`] apart. Pokes that arrive
//! while the reader waits out the gap or reads collapse into the next read, so
//! a burst of 10,000 notifications costs at most one read (and one event) per
//! gap, plus one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::options::VoteOptions;
use common::tally::Tallies;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the tallies are read.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Minimum time between two reads after notifications.
    pub min_gap: Duration,
    /// Read this often even without notifications.
    pub refresh: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            min_gap: Duration::from_millis(50),
            refresh: Duration::from_secs(5),
        }
    }
}

/// One published state of the tallies.
#[derive(Debug)]
pub struct Snapshot {
    pub tallies: Tallies,
    /// The SSE `data:` payload: the JSON of [`Tallies`], serialised once for
    /// every client.
    pub json: String,
    /// The same as a whole SSE event (`data: ...` and a blank line), for the
    /// direct `/events` path that writes it to every socket as it is.
    pub frame: String,
    /// When the first notification that led to this read arrived (`None` for
    /// reads of the periodic refresh or after a reconnection). The SSE streams
    /// measure `notify_to_send_seconds` from it.
    pub notified_at: Option<Instant>,
}

impl Snapshot {
    fn new(tallies: Tallies, notified_at: Option<Instant>) -> Self {
        let json = serde_json::to_string(&tallies).expect("tallies serialise");
        Self {
            tallies,
            frame: format!("data: {json}\n\n"),
            json,
            notified_at,
        }
    }
}

/// The latest snapshot; `None` until the first successful read.
pub type Latest = watch::Receiver<Option<Arc<Snapshot>>>;

/// Pokes from the listener to the reader: a wake-up plus the time of the
/// oldest poke not yet served.
#[derive(Debug, Default)]
pub(crate) struct Pokes {
    notify: Notify,
    since: Mutex<Option<(Instant, bool)>>,
}

impl Pokes {
    /// A notification arrived (`notified` = true) or a read is needed for
    /// another reason (startup, reconnection).
    pub(crate) fn poke(&self, notified: bool) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        match since.as_mut() {
            None => *since = Some((Instant::now(), notified)),
            Some((_, n)) => *n |= notified,
        }
        drop(since);
        // Stores one permit when the reader is busy: pokes during a read
        // cause exactly one more read.
        self.notify.notify_one();
    }

    /// Takes the pending poke: `Some(Some(t))` when a notification is
    /// pending since `t`, `Some(None)` for another reason, `None` for nothing.
    fn take(&self) -> Option<Option<Instant>> {
        let taken = self.since.lock().unwrap_or_else(|e| e.into_inner()).take();
        taken.map(|(t, notified)| notified.then_some(t))
    }
}

/// Starts the listener and the reader; they stop when `token` is cancelled.
/// Returns the receiver of the snapshots and the two tasks.
pub fn spawn(
    pool: PgPool,
    options: VoteOptions,
    pacing: Pacing,
    token: CancellationToken,
) -> (Latest, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = watch::channel(None);
    let pokes = Arc::new(Pokes::default());
    let listener = tokio::spawn(listen(pool.clone(), pokes.clone(), token.clone()));
    let reader = tokio::spawn(read_loop(pool, options, pacing, pokes, tx, token));
    (rx, vec![listener, reader])
}

/// Keeps a `LISTEN` connection and pokes the reader on each notification.
async fn listen(pool: PgPool, pokes: Arc<Pokes>, token: CancellationToken) {
    // The schema must exist before the first read; both worker and result
    // run the migrations (advisory lock, idempotent), whichever starts first.
    if common::retry::wait_for("postgres (migrations)", &token, || {
        common::db::migrate(&pool)
    })
    .await
    .is_none()
    {
        return;
    }
    loop {
        let connect = || async {
            let mut l = PgListener::connect_with(&pool).await?;
            // Reconnection is ours (with backoff and a log line), not sqlx's
            // silent one, so that we know to re-read after it.
            l.eager_reconnect(false);
            l.listen(common::db::TALLIES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let Some(mut listener) =
            common::retry::wait_for("postgres (listen)", &token, connect).await
        else {
            return;
        };
        tracing::info!(channel = common::db::TALLIES_CHANNEL, "listening");
        // Whatever changed while nobody listened is only seen by reading.
        pokes.poke(false);
        loop {
            let received = tokio::select! {
                _ = token.cancelled() => return,
                r = listener.try_recv() => r,
            };
            match received {
                Ok(Some(_)) => pokes.poke(true),
                Ok(None) => {
                    tracing::warn!("lost the postgres listen connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "postgres listen connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Reads the tallies when poked (at most once per `min_gap`) and every
/// `refresh`, and publishes changes.
async fn read_loop(
    pool: PgPool,
    options: VoteOptions,
    pacing: Pacing,
    pokes: Arc<Pokes>,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    token: CancellationToken,
) {
    let mut next_refresh = Instant::now() + pacing.refresh;
    let mut last_read: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = pokes.notify.notified() => {}
            _ = tokio::time::sleep_until(next_refresh) => {}
        }
        // Coalescing: wait out the gap since the last read; pokes meanwhile
        // join this read.
        if let Some(last) = last_read {
            let at = last + pacing.min_gap;
            if at > Instant::now() {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
        }
        let notified_at = pokes.take().flatten();
        let started = Instant::now();
        last_read = Some(started);
        next_refresh = started + pacing.refresh;
        metrics::counter!("tally_reads_total").increment(1);
        match common::db::read_tallies(&pool).await {
            Ok(counts) => {
                let tallies = Tallies::new(&options, &counts);
                tx.send_if_modified(|cur| {
                    if cur.as_ref().is_some_and(|s| s.tallies == tallies) {
                        return false;
                    }
                    *cur = Some(Arc::new(Snapshot::new(tallies, notified_at)));
                    true
                });
            }
            Err(e) => {
                // The listener reconnects and pokes again; the refresh retries
                // too. Pages keep showing the last known tallies meanwhile.
                tracing::warn!(cause = %e, "reading tallies failed");
                metrics::counter!("tally_read_errors_total").increment(1);
                next_refresh = started + pacing.min_gap.max(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pokes_collapse_until_taken() {
        let p = Pokes::default();
        assert_eq!(p.take(), None);
        p.poke(false);
        let t0 = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        p.poke(true);
        p.poke(true);
        // Pending since the first poke, and a notification is among them.
        assert_eq!(p.take(), Some(Some(t0)));
        assert_eq!(p.take(), None);
        p.poke(false);
        assert_eq!(p.take(), Some(None));
    }
}
