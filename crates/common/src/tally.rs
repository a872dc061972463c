//! The tallies as the result service pushes them on `/events`, and as the
//! seed tool's `--verify` reads them back.
//!
//! One SSE `data:` line per update: `{"counts":{"a":2000,"b":1000},"total":3000}`.
//! Every configured option is present in `counts` (0 when nobody chose it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::options::VoteOptions;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tallies {
    /// Votes per option key.
    pub counts: BTreeMap<String, i64>,
    /// Sum of `counts`.
    pub total: i64,
}

impl Tallies {
    /// From the counts read from the database, with every configured option
    /// present and counts of unknown options left out.
    pub fn new(options: &VoteOptions, counts: &BTreeMap<String, i64>) -> Self {
        let counts: BTreeMap<String, i64> = options
            .iter()
            .map(|o| (o.key.to_owned(), counts.get(o.key).copied().unwrap_or(0)))
            .collect();
        let total = counts.values().sum();
        Self { counts, total }
    }

    /// The count of one option (0 when absent).
    pub fn count(&self, key: &str) -> i64 {
        self.counts.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_present_and_total_adds_up() {
        let mut db = BTreeMap::new();
        db.insert("b".to_owned(), 3);
        db.insert("zz".to_owned(), 9);
        let t = Tallies::new(&VoteOptions::default(), &db);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"counts":{"a":0,"b":3},"total":3}"#
        );
        assert_eq!(t.count("a"), 0);
    }
}
