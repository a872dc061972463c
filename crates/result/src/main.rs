//! `result`: see the library's documentation.

use std::net::SocketAddr;
use std::process::ExitCode;

use result::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = common::config::parse::<Cli>();
    if let Some(Command::Healthcheck) = cli.command {
        return common::admin::healthcheck(cli.admin.admin_port);
    }
    common::config::run(async move {
        common::telemetry::init("result", cli.log.log_format)?;
        let options = cli.options.options()?;
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], cli.bind_port)))
                .await
                .map_err(|e| {
                    anyhow::anyhow!("BIND_PORT: cannot listen on port {}: {e}", cli.bind_port)
                })?;
        let admin = common::admin::bind(cli.admin.admin_port).await?;
        let pool = common::db::pool(&cli.postgres, 8);
        tracing::info!(postgres = cli.postgres.describe(), "starting");
        let settings = result::Settings {
            options,
            pacing: result::Pacing::default(),
        };
        result::run(
            listener,
            admin,
            pool,
            settings,
            common::shutdown::on_signal(),
        )
        .await
    })
}
