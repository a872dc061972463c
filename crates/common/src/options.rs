//! The vote options: `a`, `b`, ... each with a display name.

use clap::Args;

/// The keys of the options, in order. Eight is the most the settings allow.
pub const KEYS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

/// `OPTION_A`..`OPTION_H`. A and B default to the classic Cats and Dogs; C..H are
/// off unless set. An empty value switches an option off.
#[derive(Debug, Clone, Args)]
pub struct OptionArgs {
    /// Display name of option `a`.
    #[arg(long, env = "OPTION_A", default_value = "Cats")]
    pub option_a: String,
    /// Display name of option `b`.
    #[arg(long, env = "OPTION_B", default_value = "Dogs")]
    pub option_b: String,
    /// Display name of option `c` (unset: no option c).
    #[arg(long, env = "OPTION_C")]
    pub option_c: Option<String>,
    /// Display name of option `d`.
    #[arg(long, env = "OPTION_D")]
    pub option_d: Option<String>,
    /// Display name of option `e`.
    #[arg(long, env = "OPTION_E")]
    pub option_e: Option<String>,
    /// Display name of option `f`.
    #[arg(long, env = "OPTION_F")]
    pub option_f: Option<String>,
    /// Display name of option `g`.
    #[arg(long, env = "OPTION_G")]
    pub option_g: Option<String>,
    /// Display name of option `h`.
    #[arg(long, env = "OPTION_H")]
    pub option_h: Option<String>,
}

/// One option: its key on the wire (`a`) and its display name (`Cats`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VoteOption {
    pub key: &'static str,
    pub name: String,
}

/// The configured options, in key order. Cheap to clone behind an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteOptions(Vec<VoteOption>);

impl VoteOptions {
    /// Builds the list from `(key, name)` pairs; used by tests and by [`OptionArgs`].
    pub fn new(names: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        Self(
            names
                .into_iter()
                .filter(|(_, n)| !n.trim().is_empty())
                .map(|(key, name)| VoteOption {
                    key,
                    name: name.trim().to_owned(),
                })
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &VoteOption> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The option with this wire key, if it is configured.
    pub fn get(&self, key: &str) -> Option<&VoteOption> {
        self.0.iter().find(|o| o.key == key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl Default for VoteOptions {
    fn default() -> Self {
        Self::new([("a", "Cats".to_owned()), ("b", "Dogs".to_owned())])
    }
}

impl OptionArgs {
    /// The options that are switched on. Fails (naming the variable) when fewer
    /// than two are left, since a vote needs a choice.
    pub fn options(&self) -> anyhow::Result<VoteOptions> {
        let names = [
            Some(self.option_a.clone()),
            Some(self.option_b.clone()),
            self.option_c.clone(),
            self.option_d.clone(),
            self.option_e.clone(),
            self.option_f.clone(),
            self.option_g.clone(),
            self.option_h.clone(),
        ];
        let opts = VoteOptions::new(
            KEYS.iter()
                .zip(names)
                .filter_map(|(k, n)| n.map(|n| (*k, n))),
        );
        if opts.len() < 2 {
            anyhow::bail!(
                "OPTION_A and OPTION_B must name at least two options (both are set empty)"
            );
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_names_switch_options_off() {
        let o = VoteOptions::new([("a", "X".into()), ("b", " ".into()), ("c", "Z".into())]);
        assert_eq!(o.len(), 2);
        assert!(o.contains("a") && o.contains("c") && !o.contains("b"));
        assert_eq!(o.get("c").unwrap().name, "Z");
    }

    #[test]
    fn defaults_are_cats_and_dogs() {
        let o = VoteOptions::default();
        let names: Vec<_> = o.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["Cats", "Dogs"]);
    }
}
