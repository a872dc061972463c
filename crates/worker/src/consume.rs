//! The consuming loop: take a batch, commit it, acknowledge it, repeat.
//!
//! While one batch commits in Postgres, the next one is already being taken
//! from Redis and parsed (a spawned task), so the two round trips overlap.
//!
//! What the loop knows about the processing list must always match Redis:
//! acknowledging drops a *count* of messages from its head. Any Redis error
//! in the middle of taking or acknowledging leaves that unknown (the script
//! may have run and only its reply been lost), so the loop then *resyncs*:
//! with no batch left in hand, it puts the whole processing list back at the
//! head of the queue and starts again from there. Whatever had already
//! committed is replayed, which changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::options::VoteOptions;
use common::retry::Backoff;
use sqlx::postgres::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batch::{self, Batch};
use crate::queue::{Blocking, Lost, Queue};
use crate::store;

/// What taking a batch gave.
enum Fetched {
    Batch(Batch),
    /// The queue stayed empty for the block timeout.
    Empty,
    /// Our heartbeat key is gone.
    Lost,
    /// Shutting down; nothing was taken.
    Stopped,
    /// Redis failed; the processing list may hold messages we do not know of.
    Failed(redis::RedisError),
}

/// Takes batches; moved into a task for each prefetch and handed back.
struct Fetcher {
    queue: Queue,
    blocking: Blocking,
    options: Arc<VoteOptions>,
    batch_size: usize,
    token: CancellationToken,
}

impl Fetcher {
    async fn fetch(&mut self) -> Fetched {
        if self.token.is_cancelled() {
            return Fetched::Stopped;
        }
        match self.try_fetch().await {
            Ok(f) => f,
            Err(e) => Fetched::Failed(e),
        }
    }

    async fn try_fetch(&mut self) -> redis::RedisResult<Fetched> {
        let (depth, mut items) = match self.queue.take(self.batch_size).await? {
            Ok(r) => r,
            Err(Lost) => return Ok(Fetched::Lost),
        };
        metrics::gauge!("queue_depth").set(depth as f64);
        if items.is_empty() {
            // Not cancelled on shutdown: the block is short, and a message it
            // moves is then a batch in hand that gets applied, never stranded.
            let processing = self.queue.keys.processing(&self.queue.id);
            let Some(first) = self
                .blocking
                .wait_one(&self.queue.keys, &processing)
                .await?
            else {
                return Ok(Fetched::Empty);
            };
            let (depth, rest) = match self.queue.take(self.batch_size - 1).await? {
                Ok(r) => r,
                Err(Lost) => return Ok(Fetched::Lost),
            };
            metrics::gauge!("queue_depth").set(depth as f64);
            items = Vec::with_capacity(rest.len() + 1);
            items.push(first);
            items.extend(rest);
        }
        Ok(Fetched::Batch(batch::prepare(&items, &self.options)))
    }
}

/// How a session (a run under one worker id) ended.
enum End {
    Stop,
    Lost,
}

pub(crate) struct Consumer {
    pub queue: Queue,
    pub blocking: Option<Blocking>,
    pub pool: PgPool,
    pub options: Arc<VoteOptions>,
    pub batch_size: usize,
    pub ttl: Duration,
    pub token: CancellationToken,
}

impl Consumer {
    /// Runs until the token is cancelled and the batch in hand is done.
    pub async fn run(mut self) {
        let base_id = self.queue.id.clone();
        let mut epoch = 0u32;
        loop {
            if !self.start_session().await {
                break;
            }
            let hb_token = self.token.child_token();
            let hb = tokio::spawn(heartbeat(self.queue.clone(), self.ttl, hb_token.clone()));
            let end = self.session().await;
            hb_token.cancel();
            let _ = hb.await;
            match end {
                End::Stop => break,
                End::Lost => {
                    epoch += 1;
                    let new_id = format!("{base_id}-{epoch}");
                    tracing::warn!(
                        worker = %self.queue.id,
                        new_id = %new_id,
                        "heartbeat expired (Redis was away too long?): going on under a new id; the old batch is replayed"
                    );
                    self.queue.id = new_id;
                }
            }
        }
        // Clean stop: nothing is in hand; put back what might be left in the
        // processing list (a message a last block moved) and say goodbye.
        match self.queue.release().await {
            Ok(n) if n > 0 => tracing::info!(messages = n, "put back on the queue"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(cause = %e, "redis: could not put the processing list back; another worker takes it after the heartbeat expires")
            }
        }
        let _ = self.queue.unregister().await;
    }

    /// Registers the heartbeat, puts back this id's own leftovers and those of
    /// dead workers. False when cancelled meanwhile.
    async fn start_session(&mut self) -> bool {
        let mut backoff = Backoff::default();
        loop {
            let r = async {
                self.queue.register().await?;
                let own = self.queue.release().await?;
                let others = self.queue.reclaim_dead().await?;
                redis::RedisResult::Ok((own, others))
            }
            .await;
            match r {
                Ok((own, others)) => {
                    tracing::info!(
                        worker = %self.queue.id,
                        own_leftovers = own,
                        reclaimed = others,
                        "consuming"
                    );
                    return true;
                }
                Err(e) => {
                    redis_retry(&e, "registering the worker");
                    if !backoff.sleep(&self.token).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn session(&mut self) -> End {
        let mut fetcher = Some(Fetcher {
            queue: self.queue.clone(),
            blocking: self
                .blocking
                .take()
                .expect("the blocking connection is home"),
            options: self.options.clone(),
            batch_size: self.batch_size,
            token: self.token.clone(),
        });
        let mut pending: Option<JoinHandle<(Fetcher, Fetched)>> = None;
        let mut backoff = Backoff::default();
        let end = loop {
            let fetched = match pending.take() {
                Some(h) => {
                    let (f, r) = h.await.expect("the fetch task does not panic");
                    fetcher = Some(f);
                    r
                }
                None => fetcher.as_mut().expect("fetcher is home").fetch().await,
            };
            let batch = match fetched {
                Fetched::Batch(b) => b,
                Fetched::Empty => continue,
                Fetched::Stopped => break End::Stop,
                Fetched::Lost => break End::Lost,
                Fetched::Failed(e) => {
                    redis_retry(&e, "taking a batch");
                    if !backoff.sleep(&self.token).await || !self.resync().await {
                        break End::Stop;
                    }
                    continue;
                }
            };
            // Take the next batch while this one commits.
            if !self.token.is_cancelled() {
                let mut f = fetcher.take().expect("fetcher is home");
                pending = Some(tokio::spawn(async move {
                    let r = f.fetch().await;
                    (f, r)
                }));
            }
            let started = Instant::now();
            if !self.apply(&batch).await {
                break End::Stop;
            }
            match self.queue.ack(batch.taken, &batch.dead).await {
                Ok(Ok(())) => {
                    backoff = Backoff::default();
                    for d in &batch.dead {
                        tracing::warn!(reason = %d.reason, message = %d.raw, "dead letter");
                    }
                    metrics::counter!("dead_letters_total").increment(batch.dead.len() as u64);
                    metrics::histogram!("batch_size").record(batch.taken as f64);
                    metrics::histogram!("batch_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                Ok(Err(Lost)) => break End::Lost,
                Err(e) => {
                    redis_retry(&e, "acknowledging a batch");
                    // Nothing may be in hand while resyncing.
                    if let Some(h) = pending.take() {
                        let (f, _) = h.await.expect("the fetch task does not panic");
                        fetcher = Some(f);
                    }
                    if !backoff.sleep(&self.token).await || !self.resync().await {
                        break End::Stop;
                    }
                }
            }
        };
        // Whatever the prefetch took stays in the processing list: the next
        // session or the clean stop puts it back on the queue.
        if let Some(h) = pending.take() {
            let (f, _) = h.await.expect("the fetch task does not panic");
            fetcher = Some(f);
        }
        self.blocking = fetcher.map(|f| f.blocking);
        end
    }

    /// Commits the batch, retrying Postgres faults. False when cancelled first.
    async fn apply(&self, batch: &Batch) -> bool {
        let mut backoff = Backoff::default();
        loop {
            match store::apply(&self.pool, &batch.votes).await {
                Ok(_) => {
                    metrics::counter!("votes_applied_total").increment(batch.valid as u64);
                    return true;
                }
                Err(e) => {
                    metrics::counter!("retries_total", "what" => "postgres").increment(1);
                    tracing::warn!(cause = %e, votes = batch.votes.len(), "postgres: applying a batch failed; retrying");
                    if !backoff.sleep(&self.token).await {
                        return false;
                    }
                }
            }
        }
    }

    /// With no batch in hand: puts the processing list back on the queue.
    async fn resync(&mut self) -> bool {
        let mut backoff = Backoff::default();
        loop {
            match self.queue.release().await {
                Ok(n) => {
                    tracing::info!(
                        messages = n,
                        "redis is back: batch in doubt put back on the queue"
                    );
                    return true;
                }
                Err(e) => {
                    redis_retry(&e, "putting a batch back");
                    if !backoff.sleep(&self.token).await {
                        return false;
                    }
                }
            }
        }
    }
}

fn redis_retry(e: &redis::RedisError, doing: &str) {
    metrics::counter!("retries_total", "what" => "redis").increment(1);
    tracing::warn!(cause = %e, "redis: {doing} failed; retrying");
}

/// Refreshes the heartbeat three times per TTL, and now and then takes back
/// the batches of workers whose heartbeat expired.
async fn heartbeat(mut queue: Queue, ttl: Duration, token: CancellationToken) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        match queue.heartbeat().await {
            Ok(Ok(())) => {}
            Ok(Err(Lost)) => tracing::warn!(worker = %queue.id, "heartbeat key expired"),
            Err(e) => redis_retry(&e, "refreshing the heartbeat"),
        }
        n += 1;
        if n % 3 == 0 {
            if let Err(e) = queue.reclaim_dead().await {
                redis_retry(&e, "looking for dead workers");
            }
        }
    }
}
