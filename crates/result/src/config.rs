//! Settings, all from the environment (see `--help`).

use clap::{Parser, Subcommand};
use common::config::{AdminArgs, LogArgs, PostgresArgs};
use common::options::OptionArgs;

/// The result page: live vote tallies over Server-Sent Events.
#[derive(Debug, Parser)]
#[command(name = "result", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Port of the result page and its event stream.
    #[arg(long, env = "BIND_PORT", default_value_t = 80)]
    pub bind_port: u16,
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub options: OptionArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe this service's /healthz on 127.0.0.1:ADMIN_PORT; exit 0 if healthy, else 1.
    Healthcheck,
}
