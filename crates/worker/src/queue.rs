//! The Redis side: taking batches, acknowledging them, heartbeats, reclaiming.
//!
//! Each worker owns a processing list `votes:processing:<id>` and a heartbeat
//! key `votes:alive:<id>` (a TTL refreshed well before it runs out). Messages
//! flow like this, each arrow one atomic Lua script:
//!
//! ```text
//! votes ──TAKE (LRANGE+RPUSH+LTRIM)──► processing:<id> ──(commit in Postgres)──► ACK (LTRIM, RPUSH dead letters)
//!   ▲                                        │
//!   └────────RECLAIM (LMOVE tail→head)───────┘  when <id>'s heartbeat expired, or at its own start/stop
//! ```
//!
//! The processing list is a FIFO: batches are appended at its tail and
//! acknowledged from its head by count, so the next batch can be taken while
//! the previous one commits. A message leaves it only after its transaction
//! committed (ACK), or goes back to the head of the queue, ahead of everything
//! newer (RECLAIM). Dead letters are pushed in the ACK script, so a replayed
//! batch never files them twice.
//!
//! TAKE and ACK refuse to run once the worker's own heartbeat key is gone, and
//! RECLAIM of another worker's list runs only when its heartbeat key is gone:
//! Redis runs scripts one at a time, so the owner and a reclaimer never both
//! act on one list. A worker that finds its heartbeat gone ([`Lost`]) takes a
//! new id; its old list is reclaimed like any dead worker's.
//!
//! When the queue is empty the worker waits in `BLMOVE` (one message straight
//! into the processing list), on a connection of its own with a response
//! timeout longer than the block, so no other command queues behind it.

use std::time::Duration;

use common::message::DeadLetter;
use common::queue::Keys;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Script};

/// The worker's heartbeat key is gone: another worker may have taken back its
/// processing list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost;

/// `KEYS` queue, processing, alive; `ARGV` count. Moves up to `count` messages
/// from the head of the queue to the tail of the processing list. Returns
/// `{queue length left, {messages}}`, or nil when the heartbeat is gone.
const TAKE: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
local want = tonumber(ARGV[1])
-- LRANGE 0 -1 would be the whole list.
if want < 1 then return {redis.call('LLEN', KEYS[1]), {}} end
local items = redis.call('LRANGE', KEYS[1], 0, want - 1)
local n = #items
local i = 1
while i <= n do
  -- unpack() is limited by Lua's C stack (8000): push in slices.
  local j = math.min(i + 999, n)
  redis.call('RPUSH', KEYS[2], unpack(items, i, j))
  i = j + 1
end
if n > 0 then redis.call('LTRIM', KEYS[1], n, -1) end
return {redis.call('LLEN', KEYS[1]), items}
"#;

/// `KEYS` processing, alive, dead; `ARGV` count, dead letters... Drops the
/// first `count` messages of the processing list and files the dead letters.
/// Returns 1, or 0 (doing nothing) when the heartbeat is gone.
const ACK: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1)
local n = #ARGV
local i = 2
while i <= n do
  local j = math.min(i + 999, n)
  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, j))
  i = j + 1
end
return 1
"#;

/// `KEYS` processing, queue, alive; `ARGV` force. Moves the whole processing
/// list back to the head of the queue, in order, if `force` is `1` or the
/// heartbeat is gone. Returns how many messages moved, or -1 when the owner is alive.
const RECLAIM: &str = r#"
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
return n
"#;

/// The scripts, loaded once (EVALSHA, with a fallback to EVAL after a Redis
/// restart emptied the script cache).
#[derive(Clone)]
pub struct Scripts {
    take: Script,
    ack: Script,
    reclaim: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            take: Script::new(TAKE),
            ack: Script::new(ACK),
            reclaim: Script::new(RECLAIM),
        }
    }
}

/// One worker's view of the queue.
#[derive(Clone)]
pub struct Queue {
    pub keys: Keys,
    pub id: String,
    pub conn: ConnectionManager,
    scripts: Scripts,
    ttl: Duration,
}

impl Queue {
    pub fn new(keys: Keys, id: String, conn: ConnectionManager, ttl: Duration) -> Self {
        Self {
            keys,
            id,
            conn,
            scripts: Scripts::default(),
            ttl,
        }
    }

    fn processing(&self) -> String {
        self.keys.processing(&self.id)
    }

    fn alive(&self) -> String {
        self.keys.alive(&self.id)
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis().max(1) as u64
    }

    /// Announces this worker: sets its heartbeat key.
    pub async fn register(&mut self) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(self.alive())
            .arg(1)
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut self.conn)
            .await
    }

    /// Refreshes the heartbeat, only if it still exists.
    pub async fn heartbeat(&mut self) -> redis::RedisResult<Result<(), Lost>> {
        let r: Option<String> = redis::cmd("SET")
            .arg(self.alive())
            .arg(1)
            .arg("PX")
            .arg(self.ttl_ms())
            .arg("XX")
            .query_async(&mut self.conn)
            .await?;
        Ok(r.map(|_| ()).ok_or(Lost))
    }

    /// Removes the heartbeat key (at a clean stop).
    pub async fn unregister(&mut self) -> redis::RedisResult<()> {
        redis::cmd("DEL")
            .arg(self.alive())
            .query_async(&mut self.conn)
            .await
    }

    /// Moves up to `n` messages into the processing list; returns them and
    /// the queue length left.
    pub async fn take(
        &mut self,
        n: usize,
    ) -> redis::RedisResult<Result<(i64, Vec<Vec<u8>>), Lost>> {
        let r: Option<(i64, Vec<Vec<u8>>)> = self
            .scripts
            .take
            .key(&self.keys.queue)
            .key(self.processing())
            .key(self.alive())
            .arg(n)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(r.ok_or(Lost))
    }

    /// Acknowledges the first `n` messages of the processing list (their
    /// transaction committed) and files the dead letters among them.
    pub async fn ack(
        &mut self,
        n: usize,
        dead: &[DeadLetter],
    ) -> redis::RedisResult<Result<(), Lost>> {
        let mut inv = self.scripts.ack.prepare_invoke();
        inv.key(self.processing())
            .key(self.alive())
            .key(self.keys.dead())
            .arg(n);
        for d in dead {
            inv.arg(d.to_json());
        }
        let ok: i64 = inv.invoke_async(&mut self.conn).await?;
        Ok(if ok == 1 { Ok(()) } else { Err(Lost) })
    }

    /// Puts this worker's own processing list back at the head of the queue.
    pub async fn release(&mut self) -> redis::RedisResult<i64> {
        let (proc, alive) = (self.processing(), self.alive());
        self.reclaim_list(&proc, &alive, true).await
    }

    async fn reclaim_list(
        &mut self,
        proc: &str,
        alive: &str,
        force: bool,
    ) -> redis::RedisResult<i64> {
        self.scripts
            .reclaim
            .key(proc)
            .key(&self.keys.queue)
            .key(alive)
            .arg(if force { "1" } else { "0" })
            .invoke_async(&mut self.conn)
            .await
    }

    /// Puts back at the head of the queue the processing lists of workers
    /// whose heartbeat expired. Returns how many messages moved.
    pub async fn reclaim_dead(&mut self) -> redis::RedisResult<i64> {
        let prefix = self.keys.processing("");
        let mut lists: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.keys.processing_pattern())
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn)
                .await?;
            lists.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut moved = 0;
        for list in lists {
            let Some(owner) = list.strip_prefix(&prefix) else {
                continue;
            };
            if owner == self.id {
                continue;
            }
            let alive = self.keys.alive(owner);
            let n = self.reclaim_list(&list, &alive, false).await?;
            if n > 0 {
                tracing::warn!(
                    worker = owner,
                    messages = n,
                    "took back the batch of a worker whose heartbeat expired"
                );
                moved += n;
            }
        }
        Ok(moved)
    }
}

/// A connection for `BLMOVE` alone.
pub struct Blocking {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    timeout: Duration,
}

impl Blocking {
    pub fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            conn: None,
            timeout,
        }
    }

    /// Waits up to the block timeout for one message and moves it to the tail
    /// of `processing`. A failed connection is dropped and made again next time.
    pub async fn wait_one(
        &mut self,
        keys: &Keys,
        processing: &str,
    ) -> redis::RedisResult<Option<Vec<u8>>> {
        if self.conn.is_none() {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                // Longer than the block, so the wait itself never times out.
                .set_response_timeout(Some(self.timeout + Duration::from_secs(5)));
            self.conn = Some(
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let conn = self.conn.as_mut().expect("just connected");
        let r = redis::cmd("BLMOVE")
            .arg(&keys.queue)
            .arg(processing)
            .arg("LEFT")
            .arg("RIGHT")
            .arg(self.timeout.as_secs_f64())
            .query_async(conn)
            .await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}
