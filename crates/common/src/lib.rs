//! What the voting services share.
//!
//! The system is a queue between two web apps:
//!
//! ```text
//! browser ─► vote ─RPUSH JSON─► Redis list `votes` ─► worker ─upsert─► Postgres ─NOTIFY─► result ─SSE─► browser
//! ```
//!
//! Every binary (vote, worker, result, seed, hits) is a small library plus a
//! `main` of a few lines; this crate holds the pieces they have in common:
//!
//! - [`config`]: settings from the environment (clap with `env`), including the
//!   `REDIS_URL` / `DATABASE_URL` overrides, `*_FILE` secrets, and one clear line
//!   naming the variable when a setting is wrong.
//! - [`telemetry`]: `tracing` set up once, text or JSON (`LOG_FORMAT`).
//! - [`shutdown`]: SIGINT/SIGTERM turned into a [`tokio_util::sync::CancellationToken`]
//!   that servers, worker loops and SSE streams all obey.
//! - [`message`]: the queue message, wire-compatible with the original stack.
//! - [`queue`]: the Redis key names and connection helpers.
//! - [`db`]: the Postgres pool, the embedded migrations and the tallies read.
//! - [`admin`]: the admin server (`/healthz`, `/readyz`, `/metrics`) and the
//!   `healthcheck` probe that lets an image do without a shell or curl.
//! - [`retry`]: waiting for a dependency with backoff, logging the cause.
//! - [`options`]: the vote options (`OPTION_A`..`OPTION_H`).
//! - [`tally`]: the tallies as `/events` pushes them.

pub mod admin;
pub mod config;
pub mod db;
pub mod message;
pub mod options;
pub mod queue;
pub mod retry;
pub mod shutdown;
pub mod tally;
pub mod telemetry;
