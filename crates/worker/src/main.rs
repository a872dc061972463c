use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Drains the Redis vote queue into Postgres. Every setting is an environment variable.
#[derive(Parser)]
#[command(name = "worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: worker::Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Probe this service's /healthz on ADMIN_PORT; exit 0 when healthy, 1 otherwise.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = common::config::parse::<Cli>();
    let settings = cli.settings;
    if let Some(Command::Healthcheck) = cli.command {
        return common::admin::healthcheck(settings.admin.admin_port);
    }
    common::config::run(async move {
        common::telemetry::init("worker", settings.log.log_format)?;
        let shutdown = common::shutdown::on_signal();
        let admin = common::admin::bind(settings.admin.admin_port).await?;
        worker::run(admin, settings, shutdown).await
    })
}
