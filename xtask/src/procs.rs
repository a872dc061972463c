//! What the benchmarks need of the processes they start: building a release
//! binary, waiting for it to be healthy, and reading its memory.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The cargo target folder: `CARGO_TARGET_DIR`, or the workspace's `target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// `cargo build --release --package <package> <targets>` (`--bin x`,
/// `--example y`); returns `target/release`. Building the one package, not
/// the workspace, keeps its features what they are in its own image.
pub fn build_release(package: &str, targets: &[&str]) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--package", package])
        .args(targets)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "cargo build --release -p {package} failed"
    );
    Ok(target_dir().join("release"))
}

/// Waits up to 30 s for `GET /healthz` on `admin` to answer 200.
pub fn wait_healthy(admin: u16, svc: &testkit::Service) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if common::admin::probe(admin, "/healthz", Duration::from_secs(1)).is_ok_and(|c| c == 200) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not healthy within 30 s:\n{}",
            svc.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size in KiB.
pub fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}
