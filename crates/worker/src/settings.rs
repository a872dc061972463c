//! The worker's settings, all from the environment (see `worker --help`).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use clap::Args;
use common::config::{AdminArgs, LogArgs, PostgresArgs, RedisArgs};
use common::options::OptionArgs;
use common::queue::QueueArgs;

/// Everything the worker reads from its environment.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// The configured options: a vote for anything else is dead-lettered.
    #[command(flatten)]
    pub options: OptionArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Most messages taken from the queue and applied in one transaction.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub batch_size: u32,
    /// Seconds to wait on an empty queue before looking again (the BLMOVE
    /// timeout); a new vote wakes the worker at once either way. A SIGTERM
    /// that comes during the wait is obeyed when it ends.
    #[arg(long, env = "BLOCK_TIMEOUT", default_value = "2", value_parser = parse_seconds)]
    pub block_timeout: Duration,
    /// Seconds after which a worker that stopped refreshing its heartbeat is
    /// presumed dead, and its batch in hand is put back on the queue.
    #[arg(long, env = "HEARTBEAT_TTL", default_value = "10", value_parser = parse_seconds)]
    pub heartbeat_ttl: Duration,
    /// Name of this worker in Redis keys (letters, digits, `.`, `_`, `-`;
    /// default: host name, pid and a random suffix). Give each worker its own.
    #[arg(long, env = "WORKER_ID", value_parser = parse_worker_id)]
    pub worker_id: Option<String>,
}

/// Seconds, possibly fractional (`0.5`), between 10 ms and one day.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.01..=86_400.0).contains(&secs) {
        return Err(format!("{s} is out of range (0.01 to 86400 seconds)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A worker id becomes part of Redis key names and of a `SCAN` pattern, so
/// glob characters and spaces are refused.
fn parse_worker_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?}: use 1 to 100 letters, digits, '.', '_' or '-'"
        ))
    }
}

impl Settings {
    /// Default settings for the given Redis, Postgres and queue: for tests and tools.
    pub fn new(redis_url: &str, database_url: &str, queue: &str) -> Self {
        Self {
            redis: RedisArgs::from_url(redis_url),
            postgres: PostgresArgs::from_url(database_url),
            queue: QueueArgs {
                votes_queue: queue.to_owned(),
            },
            options: OptionArgs {
                option_a: "Cats".into(),
                option_b: "Dogs".into(),
                option_c: None,
                option_d: None,
                option_e: None,
                option_f: None,
                option_g: None,
                option_h: None,
            },
            admin: AdminArgs { admin_port: 0 },
            log: LogArgs {
                log_format: Default::default(),
            },
            batch_size: 2000,
            block_timeout: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(10),
            worker_id: None,
        }
    }

    /// `WORKER_ID`, or host name, pid and a random suffix: unique per process,
    /// so a restarted worker never mistakes itself for its previous life.
    pub fn worker_id(&self) -> String {
        if let Some(id) = &self.worker_id {
            return id.clone();
        }
        let host: String = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        format!(
            "{}-{}-{:06x}",
            if host.is_empty() { "worker" } else { &host },
            std::process::id(),
            random & 0xff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_ids_are_checked() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_worker_id("w-1.a_b").is_ok());
        assert!(parse_worker_id("w*").is_err());
        assert!(parse_worker_id("").is_err());
    }

    #[test]
    fn default_ids_differ() {
        let s = Settings::new("redis://x/", "postgres://x/y", "q");
        let (a, b) = (s.worker_id(), s.worker_id());
        assert_ne!(a, b);
        assert!(parse_worker_id(&a).is_ok(), "{a}");
    }
}
