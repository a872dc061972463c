//! The Redis side: key names and connections.
//!
//! All keys derive from one queue name (`VOTES_QUEUE`, default `votes`, the
//! original's list), so two stacks, or two tests, can share one Redis:
//!
//! | key | type | what |
//! |---|---|---|
//! | `votes` | list | the queue: vote `RPUSH`es, the worker takes from the head |
//! | `votes:seq` | string | the order-key counter (`INCR`) |
//! | `votes:dead` | list | dead letters, JSON with the reason and the original text |
//! | `votes:processing:<worker>` | list | a worker's batch in hand |
//! | `votes:alive:<worker>` | string with TTL | a worker's heartbeat |

use std::time::Duration;

use clap::Args;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisArgs;

/// The queue's name.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Name of the Redis list that carries votes; the other keys derive from it.
    #[arg(long, env = "VOTES_QUEUE", default_value = "votes")]
    pub votes_queue: String,
}

/// The key names of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub queue: String,
}

impl Keys {
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
        }
    }
    pub fn seq(&self) -> String {
        format!("{}:seq", self.queue)
    }
    pub fn dead(&self) -> String {
        format!("{}:dead", self.queue)
    }
    pub fn processing(&self, worker: &str) -> String {
        format!("{}:processing:{worker}", self.queue)
    }
    /// Pattern matching every worker's processing list.
    pub fn processing_pattern(&self) -> String {
        format!("{}:processing:*", self.queue)
    }
    pub fn alive(&self, worker: &str) -> String {
        format!("{}:alive:{worker}", self.queue)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new("votes")
    }
}

impl From<&QueueArgs> for Keys {
    fn from(a: &QueueArgs) -> Self {
        Self::new(a.votes_queue.clone())
    }
}

/// A client for the configured Redis; connecting happens later.
pub fn client(args: &RedisArgs) -> anyhow::Result<redis::Client> {
    redis::Client::open(args.url().expose())
        .map_err(|e| anyhow::anyhow!("REDIS_URL/REDIS_HOST: {e}"))
}

/// A shared, self-healing connection for short commands. It is created without
/// touching the network, so a service starts (and answers 503) while Redis is
/// down; it reconnects in the background. The command that met the dead
/// connection still fails: callers answer 503 or retry.
///
/// Never run a blocking command (`BLMOVE`, `BLPOP`) on it: that stalls every
/// other caller. Blocking work gets its own connection.
pub fn manager(client: redis::Client) -> anyhow::Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_derive_from_the_queue() {
        let k = Keys::new("q1");
        assert_eq!(k.seq(), "q1:seq");
        assert_eq!(k.dead(), "q1:dead");
        assert_eq!(k.processing("w"), "q1:processing:w");
        assert_eq!(k.alive("w"), "q1:alive:w");
        assert_eq!(Keys::default().queue, "votes");
    }
}
