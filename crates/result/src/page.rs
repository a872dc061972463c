//! The result page, rendered on the server with the current tallies so that
//! it is right without JavaScript; `assets/result.js` then keeps it live.
//!
//! The script repeats [`percentages`] and [`votes_text`] to the letter, so a
//! page updated live reads exactly like a freshly rendered one (the browser
//! test checks this).

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use common::options::VoteOptions;
use common::tally::Tallies;

/// One bar of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub key: &'static str,
    pub name: String,
    pub percent: u32,
    pub count_text: String,
}

#[derive(Template)]
#[template(path = "result.html")]
pub(crate) struct ResultPage {
    pub title: String,
    pub rows: Vec<Row>,
    pub total_text: String,
    /// False while no tallies could be read yet (Postgres down since start).
    pub known: bool,
}

impl ResultPage {
    pub(crate) fn new(options: &VoteOptions, tallies: Option<&Tallies>) -> Self {
        let empty = Tallies::new(options, &Default::default());
        let t = tallies.unwrap_or(&empty);
        let keys: Vec<&'static str> = options.iter().map(|o| o.key).collect();
        let counts: Vec<i64> = keys.iter().map(|k| t.count(k)).collect();
        let pcts = percentages(&counts);
        let rows = options
            .iter()
            .zip(counts.iter().zip(pcts))
            .map(|(o, (&count, percent))| Row {
                key: o.key,
                name: o.name.clone(),
                percent,
                count_text: count_text(count),
            })
            .collect();
        let title = options
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(" vs ");
        Self {
            title,
            rows,
            total_text: if tallies.is_some() {
                votes_text(t.total)
            } else {
                "Waiting for the database…".to_owned()
            },
            known: tallies.is_some(),
        }
    }
}

impl IntoResponse for ResultPage {
    fn into_response(self) -> Response {
        match self.render() {
            Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "rendering the result page");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        }
    }
}

/// Whole percentages that add up to 100 (largest remainder method; ties go
/// to the earlier option). All zero when nobody voted.
pub(crate) fn percentages(counts: &[i64]) -> Vec<u32> {
    let total: i64 = counts.iter().map(|c| (*c).max(0)).sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let total = total as i128;
    let mut out: Vec<u32> = Vec::with_capacity(counts.len());
    let mut rem: Vec<(i128, usize)> = Vec::with_capacity(counts.len());
    for (i, c) in counts.iter().enumerate() {
        let scaled = (*c).max(0) as i128 * 100;
        out.push((scaled / total) as u32);
        rem.push((scaled % total, i));
    }
    let short = 100 - out.iter().sum::<u32>();
    // Largest remainder first; the earlier option first among equals.
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in rem.into_iter().take(short as usize) {
        out[i] += 1;
    }
    out
}

/// The total: "No votes yet", "1 vote", "N votes".
pub(crate) fn votes_text(n: i64) -> String {
    match n {
        0 => "No votes yet".to_owned(),
        _ => count_text(n),
    }
}

/// One option's count: "0 votes", "1 vote", "N votes".
pub(crate) fn count_text(n: i64) -> String {
    match n {
        1 => "1 vote".to_owned(),
        n => format!("{n} votes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn percentages_add_up_to_100() {
        assert_eq!(percentages(&[2000, 1000]), [67, 33]);
        assert_eq!(percentages(&[1, 1, 1]), [34, 33, 33]);
        assert_eq!(percentages(&[0, 0]), [0, 0]);
        assert_eq!(percentages(&[5, 0]), [100, 0]);
        assert_eq!(
            percentages(&[1, 1, 1, 1, 1, 1, 1]),
            [15, 15, 14, 14, 14, 14, 14]
        );
        assert_eq!(percentages(&[999_999, 1]), [100, 0]);
        for counts in [[3, 7, 11], [1, 2, 3], [1_000_000, 1, 1]] {
            assert_eq!(percentages(&counts).iter().sum::<u32>(), 100, "{counts:?}");
        }
    }

    #[test]
    fn totals_read_naturally() {
        assert_eq!(votes_text(0), "No votes yet");
        assert_eq!(votes_text(1), "1 vote");
        assert_eq!(votes_text(3000), "3000 votes");
        assert_eq!(count_text(0), "0 votes");
    }

    #[test]
    fn page_shows_every_option_with_names_escaped() {
        let opts = VoteOptions::new([
            ("a", "Cats".to_owned()),
            ("b", "<Dogs & co>".to_owned()),
            ("c", "Birds".to_owned()),
        ]);
        let mut db = BTreeMap::new();
        db.insert("a".to_owned(), 1);
        db.insert("b".to_owned(), 3);
        let t = Tallies::new(&opts, &db);
        let html = ResultPage::new(&opts, Some(&t)).render().unwrap();
        assert!(
            html.contains("&#60;Dogs &#38; co&#62;") || html.contains("&lt;Dogs &amp; co&gt;"),
            "{html}"
        );
        assert!(!html.contains("<Dogs"), "{html}");
        assert!(
            html.contains(">75%<") && html.contains(">25%<") && html.contains(">0%<"),
            "{html}"
        );
        assert!(html.contains(">4 votes<"), "{html}");
        assert_eq!(html.matches("data-key=").count(), 3, "{html}");
        // CSP 'self': no inline script or style.
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "{html}"
        );
    }

    #[test]
    fn page_without_tallies_says_it_waits() {
        let html = ResultPage::new(&VoteOptions::default(), None)
            .render()
            .unwrap();
        assert!(html.contains("Waiting for the database"), "{html}");
    }
}
