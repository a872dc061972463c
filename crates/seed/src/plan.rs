//! The command line, and the plan it resolves to.
//!
//! Every flag is also an environment variable, so the compose file (and a
//! user's `-e`) can set them. Precedence: a flag, then the scenario file's
//! setting, then the original seed's default (3,000 votes, a=2,b=1, 50 at a time).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hyper::Uri;

use crate::scenario::{parse_duration, parse_split, Scenario};

/// The original seed: 3,000 votes.
pub const DEFAULT_COUNT: u64 = 3000;
/// The original seed: ApacheBench's `-c 50`.
pub const DEFAULT_CONCURRENCY: usize = 50;

/// Sends votes to the vote service, like the original seed (3,000 new voters,
/// 2,000 for a and 1,000 for b, 50 at a time), prints a summary, and with
/// --verify checks on the result service that every vote was counted. Exits
/// non-zero when any request failed or the verification did not pass.
#[derive(Debug, Clone, Parser)]
#[command(name = "seed", version)]
pub struct Cli {
    /// The vote page the votes are POSTed to.
    #[arg(long, env = "VOTE_URL", default_value = "http://vote/", value_parser = parse_url, value_name = "VOTE_URL")]
    pub url: Uri,
    /// Number of votes to send [default: 3000, or the scenario's total].
    #[arg(long, env = "SEED_COUNT", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..), value_name = "SEED_COUNT")]
    pub count: Option<u64>,
    /// How the votes are shared among the options, as weights: a=2,b=1 [default: a=2,b=1].
    #[arg(long, env = "SEED_SPLIT", value_parser = parse_split_arg, conflicts_with = "scenario", value_name = "SEED_SPLIT")]
    pub split: Option<Split>,
    /// A scenario file (see seed-data/README.md), or the name of one in SEED_DATA_DIR: original, changes, burst.
    #[arg(long, env = "SEED_SCENARIO", value_name = "SEED_SCENARIO")]
    pub scenario: Option<String>,
    /// Where --scenario looks up a name.
    #[arg(
        long,
        env = "SEED_DATA_DIR",
        default_value = "seed-data",
        value_name = "SEED_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Requests in flight at once [default: 50].
    #[arg(long, env = "SEED_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..=100_000), value_name = "SEED_CONCURRENCY")]
    pub concurrency: Option<u64>,
    /// At most this many requests per second [default: no limit].
    #[arg(long, env = "SEED_RATE", value_parser = clap::value_parser!(u32).range(1..), value_name = "SEED_RATE")]
    pub rate: Option<u32>,
    /// Send for this long (500ms, 30s, 2m) instead of a number of votes.
    #[arg(long, env = "SEED_DURATION", value_parser = parse_duration, value_name = "SEED_DURATION")]
    pub duration: Option<Duration>,
    /// The votes come from this many voters who keep their voter_id cookie, so
    /// most votes change an earlier one [default: 0, every vote a new voter].
    #[arg(
        long,
        env = "SEED_RETURNING_VOTERS",
        value_name = "SEED_RETURNING_VOTERS"
    )]
    pub returning_voters: Option<usize>,
    /// Give up on one request after this long; it counts as a timeout.
    #[arg(long, env = "SEED_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "SEED_TIMEOUT")]
    pub timeout: Duration,
    /// How long to wait for the vote service (and with --verify the result
    /// service) to answer before starting.
    #[arg(long, env = "SEED_WAIT", default_value = "60s", value_parser = parse_duration, value_name = "SEED_WAIT")]
    pub wait: Duration,
    /// Print the report as one JSON object on stdout instead of text.
    #[arg(long, env = "SEED_JSON")]
    pub json: bool,
    /// After sending, follow RESULT_URL/events until every vote is counted.
    #[arg(long, env = "SEED_VERIFY")]
    pub verify: bool,
    /// The result service, read by --verify.
    #[arg(long, env = "RESULT_URL", default_value = "http://result/", value_parser = parse_url, value_name = "RESULT_URL")]
    pub result_url: Uri,
    /// How long --verify waits, after the last vote, for the tallies to add up.
    #[arg(long, env = "SEED_VERIFY_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "SEED_VERIFY_TIMEOUT")]
    pub verify_timeout: Duration,
    #[command(flatten)]
    pub log: common::config::LogArgs,
}

/// `--split`'s value (a newtype, so that clap takes it as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split(pub Vec<(String, u64)>);

fn parse_split_arg(s: &str) -> Result<Split, String> {
    parse_split(s).map(Split)
}

/// An `http://host[:port]/path` URL. Plain HTTP only: the vote service is
/// reached on the compose network or on loopback.
pub fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("`{s}` is not a URL like http://vote/: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{s}`: https is not supported; seed speaks plain HTTP, use http://"
            ))
        }
        _ => return Err(format!("`{s}` is not a URL like http://vote/")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host, as in http://vote/"));
    }
    if uri.path_and_query().is_none() {
        // `http://vote` means `http://vote/`.
        return format!("{s}/").parse().map_err(|e| format!("`{s}`: {e}"));
    }
    Ok(uri)
}

/// When sending stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many votes.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

/// What to send, resolved from the flags, the scenario and the defaults.
#[derive(Debug, Clone)]
pub struct Plan {
    pub url: Uri,
    /// Votes per option: the exact number with [`Stop::Count`], weights with
    /// [`Stop::Duration`].
    pub votes: Vec<(String, u64)>,
    pub stop: Stop,
    pub concurrency: usize,
    pub rate: Option<NonZeroU32>,
    /// Size of the pool of voters who keep their cookie; 0: a new voter per vote.
    pub returning_voters: usize,
    pub timeout: Duration,
}

impl Plan {
    /// `count` new voters split a=2,b=1 (like the original), `concurrency` at a time.
    pub fn new(url: Uri, count: u64, concurrency: usize) -> Self {
        Self {
            url,
            votes: apportion(&[("a".into(), 2), ("b".into(), 1)], count),
            stop: Stop::Count(count),
            concurrency,
            rate: None,
            returning_voters: 0,
            timeout: Duration::from_secs(10),
        }
    }

    /// Resolves the command line (reading the scenario file, if any).
    pub fn from_cli(cli: &Cli) -> anyhow::Result<Plan> {
        let scenario = match &cli.scenario {
            Some(name) => Some(load_scenario(name, &cli.data_dir)?),
            None => None,
        };
        let sc = scenario.clone().unwrap_or_default();
        let weights = match (&cli.split, &scenario) {
            (Some(Split(w)), _) => w.clone(),
            (None, Some(s)) => s.votes.clone(),
            (None, None) => vec![("a".into(), 2), ("b".into(), 1)],
        };
        let duration = cli.duration.or(if cli.count.is_some() {
            None
        } else {
            sc.duration
        });
        let stop = match duration {
            Some(d) => Stop::Duration(d),
            None => Stop::Count(cli.count.unwrap_or_else(|| match &scenario {
                Some(s) => s.votes.iter().map(|(_, c)| c).sum(),
                None => DEFAULT_COUNT,
            })),
        };
        let votes = match stop {
            Stop::Count(n) => apportion(&weights, n),
            Stop::Duration(_) => weights,
        };
        Ok(Plan {
            url: cli.url.clone(),
            votes,
            stop,
            concurrency: cli
                .concurrency
                .map(|c| c as usize)
                .or(sc.concurrency)
                .unwrap_or(DEFAULT_CONCURRENCY),
            rate: cli.rate.or(sc.rate).and_then(NonZeroU32::new),
            returning_voters: cli.returning_voters.or(sc.returning_voters).unwrap_or(0),
            timeout: cli.timeout,
        })
    }

    /// Requests actually in flight at once: a returning voter never has two
    /// votes in flight (so that their last vote is well defined), hence at
    /// most one request per voter of the pool.
    pub fn effective_concurrency(&self) -> usize {
        if self.returning_voters > 0 {
            self.concurrency.min(self.returning_voters)
        } else {
            self.concurrency
        }
        .max(1)
    }
}

/// Shares `total` among `weights` in proportion, exactly (largest remainder).
pub fn apportion(weights: &[(String, u64)], total: u64) -> Vec<(String, u64)> {
    let sum: u128 = weights.iter().map(|(_, w)| *w as u128).sum();
    if sum == 0 {
        return weights.iter().map(|(k, _)| (k.clone(), 0)).collect();
    }
    let mut out: Vec<(String, u64, u128)> = weights
        .iter()
        .map(|(k, w)| {
            let exact = *w as u128 * total as u128;
            (k.clone(), (exact / sum) as u64, exact % sum)
        })
        .collect();
    let given: u64 = out.iter().map(|(_, n, _)| n).sum();
    let mut order: Vec<usize> = (0..out.len()).collect();
    // Largest remainder first; file order breaks ties.
    order.sort_by(|&i, &j| out[j].2.cmp(&out[i].2).then(i.cmp(&j)));
    for &i in order.iter().take((total - given) as usize) {
        out[i].1 += 1;
    }
    out.into_iter().map(|(k, n, _)| (k, n)).collect()
}

/// Finds `name` as a path, else as `<dir>/<name>` or `<dir>/<name>.scenario`,
/// and parses it. Errors name the file and the line.
pub fn load_scenario(name: &str, dir: &Path) -> anyhow::Result<Scenario> {
    let candidates = [
        PathBuf::from(name),
        dir.join(name),
        dir.join(format!("{name}.scenario")),
    ];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let known = list_scenarios(dir);
        let known = if known.is_empty() {
            format!("no scenarios in {}", dir.display())
        } else {
            format!("scenarios in {}: {}", dir.display(), known.join(", "))
        };
        anyhow::bail!(
            "--scenario {name}: no such file, nor {name} or {name}.scenario in SEED_DATA_DIR ({}); {known}",
            dir.display()
        );
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--scenario: cannot read {}", path.display()))?;
    Scenario::parse(&text).map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))
}

/// The scenario names in `dir`, sorted.
pub fn list_scenarios(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "scenario" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// Flags only: the test runner's environment must not change the outcome.
    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        let cmd = Cli::command().mut_args(|a| a.env(None));
        let mut all = vec!["seed"];
        all.extend_from_slice(args);
        Cli::from_arg_matches(&cmd.try_get_matches_from(all)?)
    }

    fn data_dir() -> String {
        format!("{}/../../seed-data", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_defaults_are_the_original_seed() {
        let p = Plan::from_cli(&cli(&[]).unwrap()).unwrap();
        assert_eq!(p.url, "http://vote/");
        assert_eq!(p.votes, vec![("a".into(), 2000), ("b".into(), 1000)]);
        assert_eq!(p.stop, Stop::Count(3000));
        assert_eq!(p.concurrency, 50);
        assert_eq!(p.rate, None);
        assert_eq!(p.returning_voters, 0);
    }

    #[test]
    fn flags_override_the_scenario() {
        let dir = data_dir();
        let p = Plan::from_cli(
            &cli(&[
                "--scenario",
                "original",
                "--data-dir",
                &dir,
                "--count",
                "30",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(p.votes, vec![("a".into(), 20), ("b".into(), 10)]);
        let p = Plan::from_cli(
            &cli(&[
                "--scenario",
                "changes",
                "--data-dir",
                &dir,
                "--returning-voters",
                "7",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(p.returning_voters, 7);
        let p = Plan::from_cli(
            &cli(&["--split", "a=1,c=1", "--duration", "2s", "--rate", "9"]).unwrap(),
        )
        .unwrap();
        assert_eq!(p.stop, Stop::Duration(Duration::from_secs(2)));
        assert_eq!(p.votes, vec![("a".into(), 1), ("c".into(), 1)]);
        assert_eq!(p.rate, NonZeroU32::new(9));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let e = cli(&["--url", "https://x/"]).unwrap_err().to_string();
        assert!(e.contains("https is not supported"), "{e}");
        let e = cli(&["--url", "vote"]).unwrap_err().to_string();
        assert!(e.contains("VOTE_URL"), "{e}");
        assert!(cli(&["--count", "0"]).is_err());
        assert!(cli(&["--concurrency", "0"]).is_err());
        assert!(cli(&["--count", "5", "--duration", "1s"]).is_err());
        assert!(cli(&["--split", "a=1", "--scenario", "x"]).is_err());
        let e = cli(&["--split", "q=1"]).unwrap_err().to_string();
        assert!(e.contains("SEED_SPLIT"), "{e}");
        assert_eq!(cli(&["--url", "http://h:81"]).unwrap().url, "http://h:81/");
    }

    #[test]
    fn a_missing_scenario_lists_the_known_ones() {
        let dir = data_dir();
        let e = Plan::from_cli(&cli(&["--scenario", "nope", "--data-dir", &dir]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--scenario nope"), "{e}");
        assert!(e.contains("original"), "{e}");
    }

    #[test]
    fn a_malformed_scenario_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("seed-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.scenario");
        std::fs::write(&f, "a 10\nb ten\n").unwrap();
        let e = Plan::from_cli(&cli(&["--scenario", f.to_str().unwrap()]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.scenario: line 2:"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn apportion_is_exact() {
        let w = vec![("a".to_owned(), 2), ("b".to_owned(), 1)];
        assert_eq!(
            apportion(&w, 3000),
            vec![("a".into(), 2000), ("b".into(), 1000)]
        );
        assert_eq!(apportion(&w, 10), vec![("a".into(), 7), ("b".into(), 3)]);
        let w3 = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 1),
            ("c".to_owned(), 1),
        ];
        let r = apportion(&w3, 100);
        assert_eq!(r.iter().map(|(_, n)| n).sum::<u64>(), 100);
        assert_eq!(r[0].1, 34);
    }
}
