//! The summary at the end: as text for people, as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt;

use common::tally::Tallies;
use serde::Serialize;

use crate::load::Outcome;

/// Everything the run found out; `--json` prints it as is.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub sent: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Failures by kind: `connect`, `timeout`, `status 503`, `other`.
    pub failures: BTreeMap<String, u64>,
    /// One example cause per failure kind.
    pub failure_causes: BTreeMap<String, String>,
    pub elapsed_seconds: f64,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
    /// Votes that count per option once processed (new voters, plus each
    /// returning voter's last vote).
    pub counted: BTreeMap<String, i64>,
    pub interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub baseline: Tallies,
    pub expected: Tallies,
    /// The last tallies the result service showed.
    pub seen: Option<Tallies>,
    /// From the last answer of the vote service to the tallies adding up.
    pub delay_seconds: Option<f64>,
    /// What is missing (or extra), per option, when not ok.
    pub differences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn new(url: String, o: &Outcome) -> Self {
        let ms = |q: f64| o.latency.value_at_quantile(q) as f64 / 1000.0;
        Report {
            url,
            sent: o.sent,
            succeeded: o.succeeded,
            failed: o.failed(),
            failures: o.failures.iter().map(|(k, n)| (k.kind(), *n)).collect(),
            failure_causes: o
                .causes
                .iter()
                .map(|(k, c)| (k.kind(), c.clone()))
                .collect(),
            elapsed_seconds: o.elapsed.as_secs_f64(),
            requests_per_second: o.throughput(),
            latency_ms: Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                max: o.latency.max() as f64 / 1000.0,
            },
            counted: o.counted.clone(),
            interrupted: o.interrupted,
            verify: None,
        }
    }

    /// Every request succeeded, and the verification (if asked) passed.
    pub fn success(&self) -> bool {
        self.failed == 0 && !self.interrupted && self.verify.as_ref().is_none_or(|v| v.ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {} votes to {} in {:.2} s: {} succeeded, {} failed{}",
            self.sent,
            self.url,
            self.elapsed_seconds,
            self.succeeded,
            self.failed,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        writeln!(f, "throughput  {:.0} requests/s", self.requests_per_second)?;
        let l = self.latency_ms;
        writeln!(
            f,
            "latency     p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.p50, l.p90, l.p99, l.max
        )?;
        // The three kinds are always shown, so "0 connect" says it was checked.
        let mut kinds = vec![
            format!("connect {}", self.failures.get("connect").unwrap_or(&0)),
            format!("timeout {}", self.failures.get("timeout").unwrap_or(&0)),
        ];
        for (k, n) in &self.failures {
            if k != "connect" && k != "timeout" {
                kinds.push(format!("{k}: {n}"));
            }
        }
        writeln!(f, "failures    {}", kinds.join(", "))?;
        for (k, cause) in &self.failure_causes {
            writeln!(f, "  {k}, e.g.: {cause}")?;
        }
        let counted: Vec<String> = self
            .counted
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "votes       {}", counted.join(", "))?;
        if let Some(v) = &self.verify {
            if v.ok {
                writeln!(
                    f,
                    "verified    every vote counted {:.3} s after the last answer: {}",
                    v.delay_seconds.unwrap_or_default(),
                    show(&v.expected)
                )?;
            } else {
                writeln!(
                    f,
                    "NOT VERIFIED: the result service does not show every vote ({}):",
                    v.seen
                        .as_ref()
                        .map(|s| format!("it shows {}", show(s)))
                        .unwrap_or_else(|| "no tallies read".into())
                )?;
                for d in &v.differences {
                    writeln!(f, "  {d}")?;
                }
                if let Some(e) = &v.error {
                    writeln!(f, "  last error: {e}")?;
                }
                writeln!(
                    f,
                    "  votes go vote -> Redis -> worker -> Postgres -> result: is the worker running?"
                )?;
            }
        }
        Ok(())
    }
}

fn show(t: &Tallies) -> String {
    let parts: Vec<String> = t.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{} (total {})", parts.join(", "), t.total)
}
