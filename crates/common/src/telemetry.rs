//! Logging, set up once per process.
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to one JSON
//! object per line for log collectors. Fields are structured
//! (`tracing::info!(voter = %id, "queued")`), not formatted into the message.

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. A malformed `RUST_LOG` is an error naming it.
/// Calling it twice (as tests may) keeps the first subscriber.
pub fn init(service: &'static str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v)
            .map_err(|e| anyhow::anyhow!("RUST_LOG: invalid filter {v:?}: {e}"))?,
        _ => EnvFilter::new("info"),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "logging initialised");
    }
    Ok(())
}
