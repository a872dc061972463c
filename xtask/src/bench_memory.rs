//! `cargo xtask bench memory`: the idle memory of each long-running service
//! (DESIGN.md §6: under 15 MB RSS each).
//!
//! Builds the release binaries (each package on its own, as its image does),
//! starts the native stack (throwaway Redis and a durable Postgres, then
//! worker, vote, result and hits), and reads each process's RSS from
//! `/proc/<pid>/status` twice:
//! 1. idle after start: every service healthy, then a few seconds of nothing;
//! 2. idle after work: the original seed run (3,000 votes, `seed --verify`,
//!    which also follows result's `/events` until every vote is counted) and
//!    `--hits` GETs of the hit counter, then again a few seconds of nothing
//!    (longer than the metrics upkeep interval, so histogram samples are
//!    folded as they are in a service that runs for days).
//!
//! It also prints each process's peak RSS (VmHWM) over the whole run.

use std::process::Command;
use std::time::Duration;

use testkit::{Stack, StackOptions};

use crate::procs::{hwm_kib, rss_kib};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds of quiet before each reading.
    #[arg(long, default_value_t = 7)]
    pub settle: u64,
    /// GETs of the hit counter in the work phase.
    #[arg(long, default_value_t = 1000)]
    pub hits: u32,
}

/// The services measured.
const MEASURED: &[&str] = &["worker", "vote", "result", "hits"];
/// DESIGN.md §6.
const TARGET_MB: f64 = 15.0;

pub fn run(args: Args) -> anyhow::Result<()> {
    for package in MEASURED.iter().copied().chain(["seed"]) {
        crate::procs::build_release(package, &["--bin", package])?;
    }
    let bin_dir = crate::procs::target_dir().join("release");
    let mut opts = StackOptions::new(testkit::stack::SERVICES);
    opts.bin_dir = bin_dir.clone();
    opts.durable_postgres = true;
    let mut stack = Stack::start(opts)?;
    // The hit counter is not part of the voting stack; it joins it here on
    // the same Redis, on a port of its own that the work phase needs to know.
    let hits_port = testkit::free_port();
    stack.start_service(
        "hits",
        &bin_dir,
        &[("BIND_PORT".to_owned(), hits_port.to_string())],
    )?;
    let settle = Duration::from_secs(args.settle);

    std::thread::sleep(settle);
    let at_start = readings(&mut stack)?;

    let mut seed = Command::new(bin_dir.join("seed"));
    // The default run, whatever SEED_* settings the caller's shell has.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SEED_") {
            seed.env_remove(key);
        }
    }
    let out = seed
        .args(["--url", &format!("http://127.0.0.1:{}/", stack.ports.vote)])
        .args([
            "--result-url",
            &format!("http://127.0.0.1:{}/", stack.ports.result),
        ])
        .arg("--verify")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "seed --verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..args.hits {
        let code = common::admin::probe(hits_port, "/", Duration::from_secs(2))?;
        anyhow::ensure!(code == 200, "hits GET / #{i} answered {code}");
    }
    std::thread::sleep(settle);
    let after_work = readings(&mut stack)?;

    println!(
        "idle RSS of each service, native release binaries (target: under {TARGET_MB:.0} MB each)"
    );
    println!(
        "{:<8} {:>12} {:>22} {:>10}",
        "service", "after start", "after 3,000 votes", "peak"
    );
    let mut over = Vec::new();
    // Both readings list MEASURED in order.
    for ((name, start_kib, _), (_, work_kib, peak_kib)) in at_start.iter().zip(&after_work) {
        let mb = |k: &u64| *k as f64 / 1024.0;
        println!(
            "{name:<8} {:>9.1} MB {:>19.1} MB {:>7.1} MB",
            mb(start_kib),
            mb(work_kib),
            mb(peak_kib)
        );
        if mb(start_kib).max(mb(work_kib)) >= TARGET_MB {
            over.push(name.clone());
        }
    }
    println!(
        "work: the original seed run (3,000 new voters, verified on result's /events), {} hits GETs; {} s of quiet before each reading",
        args.hits, args.settle
    );
    if over.is_empty() {
        println!("every service is under {TARGET_MB:.0} MB idle");
    } else {
        println!("over {TARGET_MB:.0} MB idle: {}", over.join(", "));
    }
    Ok(())
}

/// (service, RSS KiB, peak RSS KiB) of each running service; fails if one exited.
fn readings(stack: &mut Stack) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let mut out = Vec::new();
    for name in MEASURED {
        let svc = stack
            .service(name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;
        if let Some(status) = svc.try_status() {
            anyhow::bail!("{name} exited ({status}):\n{}", svc.output());
        }
        let pid = svc.pid().expect("running");
        out.push(((*name).to_owned(), rss_kib(pid)?, hwm_kib(pid)?));
    }
    Ok(out)
}
