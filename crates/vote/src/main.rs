use std::process::ExitCode;

use clap::{Parser, Subcommand};

// jemalloc rather than glibc's malloc: each vote allocates and frees many
// small buffers (request parts, the form, the Redis command, the response) on
// two runtime threads, and a profile under load showed ~30% of the service's
// CPU in glibc's malloc, free and arena locks. With jemalloc `cargo xtask
// bench vote` goes from 46-47% to 54-63% of the bare-handler baseline; idle
// RSS 6.6 MB instead of 5.4 MB. (mimalloc was tried too: 13.5 MB idle.)
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The vote page of the voting app. Every setting is an environment variable.
#[derive(Parser)]
#[command(name = "vote", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: vote::Settings,
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
        common::telemetry::init("vote", settings.log.log_format)?;
        // jemalloc returns freed memory to the system only when the process
        // allocates again, so after a burst of load an idle vote kept its
        // peak (13-15 MB after `cargo xtask bench vote`) for good. Its
        // background thread purges on a timer instead: back to 8-9 MB within
        // ten seconds of the load ending. One more thread; no cost per request
        // that the benchmark can tell from its noise.
        if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
            tracing::warn!(cause = %e, "jemalloc background purging is off: memory freed after a load is kept until the next allocations");
        }
        let shutdown = common::shutdown::on_signal();
        let listener = vote::bind(settings.bind_port).await?;
        let admin = common::admin::bind(settings.admin.admin_port).await?;
        vote::run(listener, admin, settings, shutdown).await
    })
}
