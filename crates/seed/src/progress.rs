//! Progress while sending: a bar on a terminal, a plain line every second
//! otherwise (a log file or `docker compose run` without a TTY gets readable
//! lines instead of a redrawn bar). Both go to stderr, so stdout holds only
//! the report (`--json` stays parseable).

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::load::Counters;
use crate::plan::{Plan, Stop};

/// The running display; [`Progress::finish`] stops it.
pub struct Progress {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts showing `counters` for `plan`.
    pub fn start(plan: &Plan, counters: Arc<Counters>) -> Progress {
        let stop = CancellationToken::new();
        let stop2 = stop.clone();
        let stop_at = plan.stop;
        let task = if std::io::stderr().is_terminal() {
            tokio::spawn(bar(stop_at, counters, stop2))
        } else {
            tokio::spawn(lines(stop_at, counters, stop2))
        };
        Progress { stop, task }
    }

    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn bar(stop_at: Stop, counters: Arc<Counters>, stop: CancellationToken) {
    let start = Instant::now();
    let (len, template) = match stop_at {
        Stop::Count(n) => (n, "{bar:40} {pos}/{len} votes {msg}"),
        Stop::Duration(d) => (d.as_millis() as u64, "{bar:40} {elapsed}/{duration} {msg}"),
    };
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let sent = counters.sent.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let rate = sent as f64 / start.elapsed().as_secs_f64().max(0.001);
        match stop_at {
            Stop::Count(_) => pb.set_position(sent),
            Stop::Duration(_) => pb.set_position(start.elapsed().as_millis() as u64),
        }
        pb.set_message(format!("{sent} sent, {failed} failed, {rate:.0}/s"));
    }
    pb.finish_and_clear();
}

async fn lines(stop_at: Stop, counters: Arc<Counters>, stop: CancellationToken) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The first tick is immediate: skip it, nothing is sent yet.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let sent = counters.sent.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        let of = match stop_at {
            Stop::Count(n) => format!("{sent}/{n}"),
            Stop::Duration(d) => format!("{sent} in {secs:.0}/{} s:", d.as_secs()),
        };
        eprintln!(
            "seed: {of} sent, {failed} failed, {:.0} requests/s",
            sent as f64 / secs.max(0.001)
        );
    }
}
