//! Serving connections: hyper for everything, except that a connection whose
//! first request is `GET /events` is served directly on the socket.
//!
//! Why: hyper keeps a read buffer (up to 16 KiB) and a write buffer (8 KiB)
//! for each connection for its whole life, about 24 KiB of RSS per
//! connection, or 120 MB for 5,000 open event streams. An event stream
//! needs neither: after the request head it only writes events. The direct
//! path reads the head with a small buffer, writes a fixed response head and
//! then the snapshot's pre-formatted frame, shared by all clients (a few KiB
//! per client in all; see `cargo xtask bench result`).
//!
//! The choice is made by peeking at the first bytes without consuming them,
//! so every other connection goes to hyper untouched. A keep-alive
//! connection that asks for `/events` after another request is served by the
//! axum route: the same events, only more memory.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::routes::{AppState, Client, CSP, KEEP_ALIVE, RETRY};

/// The request line the direct path takes over.
const EVENTS: &[u8] = b"GET /events ";
/// Longest request head the direct path reads.
const MAX_HEAD: usize = 8 * 1024;
/// A connection that sends no request in this time is closed.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown`, then waits for the open ones: hyper
/// connections finish their request in hand, event streams end.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(stream, router.clone(), state.clone()));
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(stream: TcpStream, router: Router, state: AppState) {
    let mut start = [0u8; EVENTS.len()];
    let peeked = tokio::select! {
        _ = state.shutdown.cancelled() => return,
        _ = tokio::time::sleep(HEAD_TIMEOUT) => return,
        n = stream.peek(&mut start) => n,
    };
    match peeked {
        Ok(0) | Err(_) => {}
        Ok(n) if n == EVENTS.len() && start == EVENTS => {
            if let Err(e) = events(stream, &state).await {
                tracing::debug!(cause = %e, "event stream ended");
            }
        }
        Ok(_) => hyper_connection(stream, router, &state.shutdown).await,
    }
}

async fn hyper_connection(stream: TcpStream, router: Router, shutdown: &CancellationToken) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// `GET /events` served on the socket: the response head, then the events.
/// The body ends when the connection closes (`connection: close`), which
/// EventSource handles like any end of stream.
async fn events(stream: TcpStream, state: &AppState) -> std::io::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    // The request head, up to the blank line; its content does not matter.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            wr.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
        let n = tokio::select! {
            _ = state.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(HEAD_TIMEOUT) => return Ok(()),
            n = rd.read(&mut buf) => n?,
        };
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    drop(head);
    metrics::counter!("http_requests_total", "route" => "/events", "method" => "GET", "status" => "200")
        .increment(1);
    let response_head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         x-accel-buffering: no\r\nx-content-type-options: nosniff\r\n\
         content-security-policy: {CSP}\r\nconnection: close\r\n\r\nretry: {}\n",
        RETRY.as_millis()
    );
    wr.write_all(response_head.as_bytes()).await?;

    let mut client = Client::new(state.latest.clone(), state.shutdown.clone());
    let mut closed = [0u8; 64];
    loop {
        let next = tokio::select! {
            next = client.next() => next,
            // A keep-alive comment, so proxies keep an idle stream open.
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                wr.write_all(b":\n\n").await?;
                continue;
            }
            // The client went away (or sent something it should not have).
            _ = rd.read(&mut closed) => return Ok(()),
        };
        let Some((snap, _first)) = next else {
            return wr.shutdown().await;
        };
        let snap: Arc<_> = snap;
        tokio::select! {
            written = wr.write_all(snap.frame.as_bytes()) => written?,
            _ = state.shutdown.cancelled() => return Ok(()),
        }
    }
}
