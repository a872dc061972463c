//! End to end with the real worker binary: votes pushed on the Redis queue
//! are committed by the worker (rows + tallies + NOTIFY in one transaction)
//! and arrive at an SSE client of the real result binary, a burst coalesced.

mod support;

use std::time::Instant;

use support::*;
use testkit::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_drained_by_the_worker_arrive_as_events() {
    let stack =
        tokio::task::spawn_blocking(|| Stack::start(StackOptions::new(&["worker", "result"])))
            .await
            .unwrap()
            .expect("starting worker and result (build them with cargo test --workspace)");
    let base = format!("http://127.0.0.1:{}", stack.ports.result);
    let mut sse = SseClient::connect(&base).await;
    sse.until(&tallies(&[("a", 0), ("b", 0)])).await;

    let redis = redis::Client::open(stack.redis.url()).unwrap();
    let mut con = redis.get_multiplexed_async_connection().await.unwrap();
    let push = |msgs: Vec<String>| {
        let mut con = con.clone();
        let queue = stack.queue.clone();
        async move {
            let _: () = redis::cmd("RPUSH")
                .arg(&queue)
                .arg(msgs)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    };
    // The original vote app's message shape.
    push(
        ["a", "a", "b"]
            .iter()
            .enumerate()
            .map(|(i, v)| format!(r#"{{"voter_id": "e2e{i}", "vote": "{v}"}}"#))
            .collect(),
    )
    .await;
    sse.until(&tallies(&[("a", 2), ("b", 1)])).await;

    // A burst of 10,000 new voters: the worker commits in batches, result
    // coalesces, and the last event has the exact counts.
    let before = sse.events;
    let started = Instant::now();
    push(
        (0..10_000)
            .map(|i| {
                let v = if i % 4 == 0 { "b" } else { "a" };
                format!(r#"{{"voter_id": "burst{i}", "vote": "{v}"}}"#)
            })
            .collect(),
    )
    .await;
    sse.until(&tallies(&[("a", 2 + 7_500), ("b", 1 + 2_500)]))
        .await;
    let events = sse.events - before;
    let window = started.elapsed();
    // result reads at most once per 50 ms.
    let bound = (window.as_millis() / 50) as usize + 2;
    eprintln!("10,000 votes through the worker in {window:?}: {events} events (bound {bound})");
    assert!(events <= bound, "{events} events in {window:?}");
    let _: () = redis::cmd("PING").query_async(&mut con).await.unwrap();
    tokio::task::spawn_blocking(move || drop(stack))
        .await
        .unwrap();
}
