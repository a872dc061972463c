//! `hits`: the course's hit counter. See the library for what it does.

use std::process::ExitCode;

use hits::{Cli, Command};

fn main() -> ExitCode {
    let cli = common::config::parse::<Cli>();
    if let Some(Command::Healthcheck) = cli.command {
        return common::admin::healthcheck(cli.bind_port);
    }
    common::config::run(async move {
        common::telemetry::init("hits", cli.log.log_format)?;
        let token = common::shutdown::on_signal();
        let listeners = hits::bind(&cli).await?;
        hits::run(listeners, hits::Settings::from(&cli), token).await
    })
}
