//! The whole stack (worker, vote, result on a throwaway Redis and Postgres)
//! in headless Chromium, driven over WebDriver: the result page in one tab,
//! votes cast by clicking the vote page's buttons in another, and the
//! percentages and total following without a reload, through a restart of
//! result and of Postgres. Screenshots go to `target/tmp/screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`); without them the test fails saying so. The binaries of
//! vote and worker come from `cargo test --workspace` (or `cargo build --bins`).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use testkit::{Stack, StackOptions};

use support::WAIT;

/// `name` on PATH (or in `$var`), else a failure that says what to install.
fn require(name: &str, var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found on PATH (or ${var}): the browser test needs Chromium and \
                 its WebDriver; on Debian: apt-get install chromium chromium-driver"
            )
        })
}

/// chromedriver on a free port, and a WebDriver session of a headless
/// Chromium with a fresh profile.
async fn browser(profile: &Path) -> (testkit::Service, Client) {
    let chromium = require("chromium", "CHROME_BIN");
    let driver = require("chromedriver", "CHROMEDRIVER");
    let port = testkit::free_port();
    let svc = testkit::Service::spawn("chromedriver", &driver, &[&format!("--port={port}")], &[])
        .expect("starting chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    testkit::eventually("chromedriver's /status", WAIT, || {
        let url = url.clone();
        async move { reqwest::get(format!("{url}/status")).await.ok() }
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", format!("--user-data-dir={}", profile.display()),
                "--window-size=1000,760", "--hide-scrollbars",
                // The result tab keeps running while the vote tab is in front.
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                // No bar transitions: screenshots show the final state.
                "--force-prefers-reduced-motion",
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("WebDriver session: {e}\n{}", svc.output()));
    (svc, client)
}

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    c.find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

/// Waits until the result page shows `total` and these percentages.
async fn shows(c: &Client, total: &str, pcts: &[(&str, &str)]) {
    let what = format!("the result page to show {total} and {pcts:?}");
    let mut seen = String::new();
    let res = tokio::time::timeout(WAIT, async {
        loop {
            let t = text(c, "#total").await.unwrap_or_default();
            let mut ok = t == total;
            seen = format!("total {t:?}");
            for (key, pct) in pcts {
                let p = text(c, &format!("[data-key='{key}'] [data-role='pct']"))
                    .await
                    .unwrap_or_default();
                seen.push_str(&format!(", {key} {p:?}"));
                ok &= p == *pct;
            }
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        res.is_ok(),
        "timed out waiting for {what}; last seen: {seen}"
    );
}

async fn stream_state(c: &Client, want: &str) {
    testkit::eventually(&format!("stream state {want}"), WAIT, || async {
        (attr(c, "#status", "data-state").await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

/// Clicks option `key` on the vote page as a new voter (no cookie).
async fn vote_as_new_voter(c: &Client, vote_url: &str, key: &str) {
    c.delete_all_cookies().await.unwrap();
    c.goto(vote_url).await.unwrap();
    c.find(Locator::Css(&format!("button[value='{key}']")))
        .await
        .expect("the vote page has a button per option")
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("button[value='{key}'].chosen")))
        .await
        .expect("the vote page marks the chosen option");
}

async fn screenshot(c: &Client, name: &str) {
    save(name, &c.screenshot().await.unwrap());
}

fn save(name: &str, png: &[u8]) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Runs `f` on the stack on a blocking thread (starting and stopping
/// processes waits).
async fn with_stack<T: Send + 'static>(
    stack: Stack,
    f: impl FnOnce(&mut Stack) -> T + Send + 'static,
) -> (Stack, T) {
    tokio::task::spawn_blocking(move || {
        let mut stack = stack;
        let t = f(&mut stack);
        (stack, t)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_clicked_in_one_tab_move_the_result_page_in_another() {
    let stack = tokio::task::spawn_blocking(|| {
        Stack::start(StackOptions::new(&["worker", "vote", "result"]))
    })
    .await
    .unwrap()
    .expect("starting the stack (build the binaries with cargo test --workspace)");
    let result_url = format!("http://127.0.0.1:{}/", stack.ports.result);
    let vote_url = format!("http://127.0.0.1:{}/", stack.ports.vote);
    let profile = tempfile_dir();
    let (_driver, c) = browser(&profile).await;

    // Tab 1: the result page, live, nothing counted yet.
    c.goto(&result_url).await.unwrap();
    let result_tab = c.window().await.unwrap();
    stream_state(&c, "live").await;
    shows(&c, "No votes yet", &[("a", "0%"), ("b", "0%")]).await;
    // Set in the page: still there at the end only if it never reloaded.
    c.execute("window.neverReloaded = true; return true;", vec![])
        .await
        .unwrap();

    // Tab 2: the vote page. Three new voters: a, a, b.
    let vote_tab = c.new_window(true).await.unwrap().handle;
    c.switch_to_window(vote_tab.clone()).await.unwrap();
    c.goto(&vote_url).await.unwrap();
    screenshot(&c, "vote.png").await;
    vote_as_new_voter(&c, &vote_url, "a").await;
    c.switch_to_window(result_tab.clone()).await.unwrap();
    shows(&c, "1 vote", &[("a", "100%"), ("b", "0%")]).await;

    c.switch_to_window(vote_tab.clone()).await.unwrap();
    vote_as_new_voter(&c, &vote_url, "a").await;
    vote_as_new_voter(&c, &vote_url, "b").await;
    // The vote page as the voter sees it after the click: Dogs marked.
    screenshot(&c, "vote-chosen.png").await;
    c.switch_to_window(result_tab.clone()).await.unwrap();
    shows(&c, "3 votes", &[("a", "67%"), ("b", "33%")]).await;
    assert_eq!(
        attr(&c, "[data-key='a'] progress", "value")
            .await
            .as_deref(),
        Some("67")
    );
    screenshot(&c, "result.png").await;

    // The live page reads exactly like a freshly rendered one.
    let (_, _, html) = support::get(&result_url).await;
    for want in [">67%<", ">33%<", ">2 votes<", ">1 vote<", ">3 votes<"] {
        assert!(
            html.contains(want),
            "{want} not in the server's page:\n{html}"
        );
    }
    for (key, count) in [("a", "2 votes"), ("b", "1 vote")] {
        let live = text(&c, &format!("[data-key='{key}'] [data-role='count']")).await;
        assert_eq!(live.as_deref(), Some(count));
    }

    // result restarted: the page says it is reconnecting, then recovers by
    // itself and follows new votes.
    let (stack, _) = with_stack(stack, |s| s.stop_service("result")).await;
    stream_state(&c, "reconnecting").await;
    assert_eq!(text(&c, "#status").await.as_deref(), Some("Reconnecting…"));
    screenshot(&c, "result-reconnecting.png").await;
    let (stack, started) = with_stack(stack, |s| {
        let bin = testkit::stack::bin_dir();
        s.start_service("result", &bin, &[])
    })
    .await;
    started.expect("result starts again");
    stream_state(&c, "live").await;
    c.switch_to_window(vote_tab.clone()).await.unwrap();
    vote_as_new_voter(&c, &vote_url, "b").await;
    c.switch_to_window(result_tab.clone()).await.unwrap();
    shows(&c, "4 votes", &[("a", "50%"), ("b", "50%")]).await;

    // Postgres restarted: result listens again; the page needs nothing.
    let (stack, _) = with_stack(stack, |s| s.pg.restart()).await;
    c.switch_to_window(vote_tab.clone()).await.unwrap();
    vote_as_new_voter(&c, &vote_url, "b").await;
    c.switch_to_window(result_tab.clone()).await.unwrap();
    shows(&c, "5 votes", &[("a", "40%"), ("b", "60%")]).await;
    stream_state(&c, "live").await;
    screenshot(&c, "result-after-restarts.png").await;

    let never = c
        .execute("return window.neverReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(never, json!(true), "the result page reloaded");

    c.close().await.unwrap();
    tokio::task::spawn_blocking(move || drop(stack))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(profile);
}

/// A fresh Chromium profile folder.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(testkit::unique_name("result-chromium"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
