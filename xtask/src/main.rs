//! Project tools, in Rust so they run wherever cargo does.
//!
//! - `cargo xtask up`: builds the binaries and starts the whole stack on this
//!   machine without Docker (throwaway Redis and Postgres, then each service),
//!   prints the URLs, and stops everything on Ctrl-C.
//! - `cargo xtask bench <what>`: the benchmarks whose figures the README quotes.

mod bench_memory;
mod bench_result;
mod bench_seed;
mod bench_vote;
mod bench_worker;
mod procs;

use std::path::PathBuf;
use std::process::Command;

use clap::{Parser, Subcommand};
use testkit::{Stack, StackOptions};

#[derive(Parser)]
#[command(about = "Project tools for the voting app")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the whole stack natively; Ctrl-C stops it all.
    Up {
        /// Host port of the vote page.
        #[arg(long, default_value_t = 5000)]
        vote_port: u16,
        /// Host port of the result page.
        #[arg(long, default_value_t = 5001)]
        result_port: u16,
        /// Redis port (default: a free one).
        #[arg(long)]
        redis_port: Option<u16>,
        /// Postgres port (default: a free one).
        #[arg(long)]
        postgres_port: Option<u16>,
        /// Build and run the debug binaries instead of release ones.
        #[arg(long)]
        debug: bool,
        /// Do not build: run the binaries that sit beside this tool (its tests use this).
        #[arg(long)]
        no_build: bool,
    },
    /// Benchmarks whose figures the README quotes.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Idle RSS of worker, vote, result and hits, after start and after a seed run.
    Memory(bench_memory::Args),
    /// 5,000 SSE clients on one release result process: commit->receipt p50/p99, RSS; update cost at 1,000 and 1,000,000 votes.
    Result(bench_result::Args),
    /// The seed load generator against a trivial local server (requests/s).
    Seed(bench_seed::Args),
    /// POST / of the vote service under wrk (requests/s, p50/p99, idle RSS).
    Vote(bench_vote::Args),
    /// The worker draining a 1,000,000-vote backlog into a durable Postgres (votes/s).
    Worker(bench_worker::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up {
            vote_port,
            result_port,
            redis_port,
            postgres_port,
            debug,
            no_build,
        } => {
            let bin_dir = if no_build {
                testkit::stack::bin_dir()
            } else {
                build(!debug)?
            };
            let mut opts = StackOptions::new(testkit::stack::SERVICES);
            opts.bin_dir = bin_dir;
            opts.vote_port = Some(vote_port);
            opts.result_port = Some(result_port);
            opts.redis_port = redis_port;
            opts.postgres_port = postgres_port;
            opts.durable_postgres = true;
            up(opts)
        }
        Cmd::Bench { what } => match what {
            Bench::Memory(args) => bench_memory::run(args),
            Bench::Result(args) => bench_result::run(args),
            Bench::Seed(args) => bench_seed::run(args),
            Bench::Vote(args) => bench_vote::run(args),
            Bench::Worker(args) => bench_worker::run(args),
        },
    }
}

/// `cargo build --bins` (release unless asked otherwise); returns the folder
/// holding the binaries.
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--bins", "--workspace", "--exclude", "xtask"]);
    if release {
        cmd.arg("--release");
    }
    anyhow::ensure!(cmd.status()?.success(), "cargo build failed");
    Ok(procs::target_dir().join(if release { "release" } else { "debug" }))
}

fn up(opts: StackOptions) -> anyhow::Result<()> {
    let stack = Stack::start(opts)?;
    println!("redis     redis://127.0.0.1:{}/", stack.ports.redis);
    println!(
        "postgres  postgres://postgres@127.0.0.1:{}/postgres",
        stack.ports.postgres
    );
    for svc in &stack.services {
        let admin = stack.ports.admin(&svc.name).unwrap_or_default();
        let public = match svc.name.as_str() {
            "vote" => format!("http://127.0.0.1:{}/  ", stack.ports.vote),
            "result" => format!("http://127.0.0.1:{}/  ", stack.ports.result),
            _ => String::new(),
        };
        println!(
            "{:<9} {public}admin http://127.0.0.1:{admin}/metrics  log {}",
            svc.name,
            svc.log.display()
        );
    }
    println!("Ctrl-C stops everything.");
    use std::io::Write;
    std::io::stdout().flush()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let token = common::shutdown::on_signal();
        token.cancelled().await;
    });
    println!("stopping");
    drop(stack);
    Ok(())
}
