//! The service's settings, all from the environment (DESIGN.md §2).

use clap::Args;
use common::config::{AdminArgs, LogArgs, RedisArgs};
use common::options::OptionArgs;
use common::queue::QueueArgs;

/// Everything `vote` reads at start. A malformed value stops the process with
/// one line naming the variable (clap's value names are the variable names).
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Port of the vote page.
    #[arg(long, env = "BIND_PORT", default_value_t = 80)]
    pub bind_port: u16,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub options: OptionArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Settings {
    /// The defaults with Redis at `redis_url` and the given queue: for tests and
    /// tools that start the service in-process.
    pub fn for_tests(redis_url: &str, queue: &str) -> Self {
        use clap::{FromArgMatches, Parser};
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        // Flags only, without the environment, so a developer's shell cannot
        // change what a test sees.
        let cmd = <Only as clap::CommandFactory>::command().mut_args(|a| a.env(None));
        let matches = cmd
            .try_get_matches_from(["vote", "--redis-url", redis_url, "--votes-queue", queue])
            .expect("valid test settings");
        Only::from_arg_matches(&matches)
            .expect("valid test settings")
            .settings
    }
}
