//! Scenario files: what to send, in a format people edit by hand.
//!
//! One setting per line, `key value`; `#` starts a comment; blank lines are
//! ignored. A key that is an option letter (`a` to `h`, as the vote service
//! knows them) gives that option's number of votes; the other keys are run
//! settings that a command-line flag overrides:
//!
//! ```text
//! # The original seed: 3,000 new voters, 2,000 for a and 1,000 for b.
//! a 2000
//! b 1000
//! concurrency 50        # requests in flight at once
//! rate 500              # at most 500 requests per second (default: no limit)
//! returning-voters 100  # the votes come from 100 voters who keep their cookie
//! duration 30s          # send for 30 s; the counts are then proportions
//! ```
//!
//! A malformed file is refused with the line at fault: `line 3: ...`.

use std::fmt;
use std::time::Duration;

/// The option keys the vote service knows (`OPTION_A`..`OPTION_H`).
pub const OPTION_KEYS: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h"];

/// A parsed scenario. Everything but `votes` is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scenario {
    /// Votes per option, in file order.
    pub votes: Vec<(String, u64)>,
    pub concurrency: Option<usize>,
    pub rate: Option<u32>,
    pub returning_voters: Option<usize>,
    pub duration: Option<Duration>,
}

/// What is wrong, and on which line (1-based) when it is one line's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

const KEYS_HELP: &str =
    "expected an option letter a..h (`a 2000`), concurrency, rate, returning-voters or duration";

impl Scenario {
    /// Parses the text of a scenario file.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let mut s = Scenario::default();
        // Where each key was first given, to name both lines of a duplicate.
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let err = |message: String| ScenarioError {
                line: Some(n),
                message,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let key = words.next().expect("line is not empty");
            let value = words.next().ok_or_else(|| {
                err(format!(
                    "`{key}` needs a value, like `{key} {}`",
                    example(key)
                ))
            })?;
            if let Some(extra) = words.next() {
                return Err(err(format!(
                    "unexpected `{extra}` after `{key} {value}`: one `key value` per line"
                )));
            }
            if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
                return Err(err(format!(
                    "`{key}` is given twice (first on line {first})"
                )));
            }
            seen.push((key.to_owned(), n));
            match key {
                k if OPTION_KEYS.contains(&k) => {
                    let count = value.parse::<u64>().map_err(|_| {
                        err(format!(
                            "`{k}` takes a whole number of votes, like `{k} 2000`, not `{value}`"
                        ))
                    })?;
                    s.votes.push((k.to_owned(), count));
                }
                "concurrency" => {
                    let c = positive(value).ok_or_else(|| {
                        err(format!(
                            "concurrency takes a whole number of at least 1, not `{value}`"
                        ))
                    })?;
                    s.concurrency = Some(c as usize);
                }
                "rate" => {
                    let r = positive(value)
                        .and_then(|r| u32::try_from(r).ok())
                        .ok_or_else(|| {
                            err(format!(
                                "rate takes requests per second, a whole number of at least 1, not `{value}`"
                            ))
                        })?;
                    s.rate = Some(r);
                }
                "returning-voters" => {
                    let r = value.parse::<usize>().map_err(|_| {
                        err(format!(
                            "returning-voters takes a number of voters (0 for none), not `{value}`"
                        ))
                    })?;
                    s.returning_voters = Some(r);
                }
                "duration" => {
                    let d = parse_duration(value).map_err(|e| err(format!("duration: {e}")))?;
                    s.duration = Some(d);
                }
                other if other.len() == 1 && other.chars().all(|c| c.is_ascii_alphabetic()) => {
                    return Err(err(format!(
                        "`{other}` is not an option the vote service knows: options are a..h"
                    )));
                }
                other => return Err(err(format!("unknown key `{other}`: {KEYS_HELP}"))),
            }
        }
        if s.votes.is_empty() {
            return Err(ScenarioError {
                line: None,
                message: "no votes: add at least one line like `a 2000`".into(),
            });
        }
        if s.votes.iter().all(|(_, c)| *c == 0) {
            return Err(ScenarioError {
                line: None,
                message: "the votes add up to 0: give at least one option a count above 0".into(),
            });
        }
        Ok(s)
    }
}

fn example(key: &str) -> &'static str {
    match key {
        "concurrency" => "50",
        "rate" => "500",
        "returning-voters" => "100",
        "duration" => "30s",
        _ => "2000",
    }
}

fn positive(value: &str) -> Option<u64> {
    value.parse::<u64>().ok().filter(|v| *v >= 1)
}

/// `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 30s, 2m or 1h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}` is not a duration like 500ms, 30s, 2m or 1h")),
    };
    if d.is_zero() {
        return Err(format!("`{s}` is zero; give a duration above 0"));
    }
    Ok(d)
}

/// `a=2,b=1`: options and their weights, for `--split`.
pub fn parse_split(s: &str) -> Result<Vec<(String, u64)>, String> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, w) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not `option=weight`, as in a=2,b=1"))?;
        let (k, w) = (k.trim(), w.trim());
        if !OPTION_KEYS.contains(&k) {
            return Err(format!(
                "`{k}` is not an option the vote service knows (a..h)"
            ));
        }
        let w: u64 = w
            .parse()
            .map_err(|_| format!("the weight of `{k}` must be a whole number, not `{w}`"))?;
        if out.iter().any(|(o, _)| o == k) {
            return Err(format!("`{k}` is given twice"));
        }
        out.push((k.to_owned(), w));
    }
    if out.iter().all(|(_, w)| *w == 0) {
        return Err("give at least one option a weight above 0, as in a=2,b=1".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ScenarioError {
        Scenario::parse(text).unwrap_err()
    }

    #[test]
    fn parses_votes_settings_comments_and_blank_lines() {
        let s = Scenario::parse(
            "# the original\n\na 2000   # cats\n  b 1000\nconcurrency 50\nrate 500\n\
             returning-voters 10\nduration 2m\n",
        )
        .unwrap();
        assert_eq!(s.votes, vec![("a".into(), 2000), ("b".into(), 1000)]);
        assert_eq!(s.concurrency, Some(50));
        assert_eq!(s.rate, Some(500));
        assert_eq!(s.returning_voters, Some(10));
        assert_eq!(s.duration, Some(Duration::from_secs(120)));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            err("a 1\nb lots\n").to_string(),
            "line 2: `b` takes a whole number of votes, like `b 2000`, not `lots`"
        );
        assert_eq!(err("a 1\n\n# x\nvotes 3\n").line, Some(4));
        assert!(err("a 1\nvotes 3\n")
            .message
            .contains("unknown key `votes`"));
        assert_eq!(
            err("a\n").to_string(),
            "line 1: `a` needs a value, like `a 2000`"
        );
        assert_eq!(err("a 1 2\n").line, Some(1));
        assert_eq!(
            err("a 1\nb 2\na 3\n").to_string(),
            "line 3: `a` is given twice (first on line 1)"
        );
        assert!(err("z 3\n")
            .to_string()
            .starts_with("line 1: `z` is not an option"));
        assert_eq!(err("a 1\nconcurrency 0\n").line, Some(2));
        assert_eq!(err("a 1\nrate -3\n").line, Some(2));
        assert_eq!(err("a 1\nduration soon\n").line, Some(2));
        assert_eq!(err("a 1\nreturning-voters x\n").line, Some(2));
    }

    #[test]
    fn a_file_without_votes_is_refused() {
        assert_eq!(err("# nothing\nconcurrency 5\n").line, None);
        assert!(err("").message.contains("no votes"));
        assert!(err("a 0\nb 0\n").message.contains("add up to 0"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn splits() {
        assert_eq!(
            parse_split("a=2,b=1"),
            Ok(vec![("a".into(), 2), ("b".into(), 1)])
        );
        assert!(parse_split("a2").unwrap_err().contains("option=weight"));
        assert!(parse_split("x=1").unwrap_err().contains("`x`"));
        assert!(parse_split("a=1,a=2").unwrap_err().contains("twice"));
        assert!(parse_split("a=0").is_err());
        assert!(parse_split("a=one").is_err());
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seed-data");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "scenario") {
                let text = std::fs::read_to_string(&p).unwrap();
                Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 3, "original, changes and burst at least");
        let original =
            Scenario::parse(&std::fs::read_to_string(dir.join("original.scenario")).unwrap())
                .unwrap();
        assert_eq!(original.votes, vec![("a".into(), 2000), ("b".into(), 1000)]);
    }
}
