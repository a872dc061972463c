//! The admin server and the `healthcheck` probe.
//!
//! Every long-running service serves, on its admin port (`ADMIN_PORT`, 5858):
//! - `/healthz`: the process is alive and its loops run (200 `ok`).
//! - `/readyz`: its dependencies answer (200 `ready`, or 503 naming what is not).
//! - `/metrics`: Prometheus text format, from the `metrics` facade.
//!
//! `<binary> healthcheck` probes `http://127.0.0.1:<port>/healthz` and exits 0 or
//! 1, so an image needs neither a shell nor curl for its `HEALTHCHECK`.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A readiness probe: `Ok` when every dependency answers, else what does not.
pub type ReadyFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// Produces a fresh readiness probe per `/readyz` request.
pub type ReadyCheck = Arc<dyn Fn() -> ReadyFuture + Send + Sync>;

/// Latency buckets, in seconds: from 100 µs (a vote's RPUSH) to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets for sizes (batch sizes, burst sizes).
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
/// Metric names ending in `_seconds` are histograms with [`LATENCY_BUCKETS`],
/// names ending in `_size` with [`SIZE_BUCKETS`].
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)
                })
                .expect("static bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed (a test that built its
            // own); the handle still renders what this recorder sees.
            let _ = metrics::set_global_recorder(recorder);
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A recorder made with `build_recorder` (rather than the exporter's own
/// HTTP listener) keeps every histogram sample until the next render: with
/// nobody scraping `/metrics`, memory grows with each request. One thread
/// per process folds the samples into the buckets every few seconds instead.
/// A thread rather than a task: it needs no runtime, so it also serves the
/// tests, which start and stop many.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(cause = %e, "no metrics upkeep thread: histograms are folded only when /metrics is read");
    }
}

#[derive(Clone)]
struct AdminState {
    ready: ReadyCheck,
    metrics: PrometheusHandle,
}

/// The admin routes.
pub fn router(ready: ReadyCheck) -> Router {
    let state = AdminState {
        ready,
        metrics: metrics_handle(),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match (s.ready)().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(what) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {what}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(s): State<AdminState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled.
///
/// Not an `async fn`: the router, and with it the process-wide metrics
/// recorder, is made when this is called, not when the returned future is
/// first polled. Services spawn this future and then serve their own port at
/// once; were the recorder installed inside the spawned task, the first
/// requests could be counted by no recorder at all.
pub fn serve(
    listener: TcpListener,
    ready: ReadyCheck,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    let app = router(ready);
    async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        Ok(())
    }
}

/// Binds the admin port on all addresses, naming `ADMIN_PORT` if that fails.
pub async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .map_err(|e| anyhow::anyhow!("ADMIN_PORT: cannot listen on port {port}: {e}"))
}

/// Middleware recording `http_requests_total{route,method,status}` and
/// `http_request_duration_seconds{route,method}`. The route is the matched
/// pattern, never the raw path, so the label set stays bounded.
pub async fn track_http(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    res
}

/// `<binary> healthcheck`: GET `http://127.0.0.1:<port>/healthz`; exit 0 on a
/// 200 within 2 s, else 1 with the reason on stderr.
///
/// Written on a plain `TcpStream` rather than an HTTP client crate: it is one
/// fixed request, it must not need a runtime, and it keeps the probe tiny.
pub fn healthcheck(port: u16) -> ExitCode {
    match probe(port, "/healthz", Duration::from_secs(2)) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("unhealthy: /healthz answered {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: 127.0.0.1:{port}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One HTTP/1.0 GET on loopback; returns the status code.
pub fn probe(port: u16, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let m = stream.read(&mut head[n..])?;
        if m == 0 {
            break;
        }
        n += m;
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {line:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let handle = metrics_handle();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ready_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = ready_flag.clone();
        let ready: ReadyCheck = Arc::new(move || {
            let ok = f.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if ok {
                    Ok(())
                } else {
                    Err("redis: down".into())
                }
            })
        });
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, ready, token.clone()));
        metrics::counter!("admin_test_total").increment(3);

        let (h, r1, m) = tokio::task::spawn_blocking(move || {
            let t = Duration::from_secs(2);
            (
                probe(port, "/healthz", t).unwrap(),
                probe(port, "/readyz", t).unwrap(),
                probe(port, "/metrics", t).unwrap(),
            )
        })
        .await
        .unwrap();
        assert_eq!((h, r1, m), (200, 503, 200));
        ready_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let r2 = tokio::task::spawn_blocking(move || {
            probe(port, "/readyz", Duration::from_secs(2)).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(r2, 200);
        assert!(handle.render().contains("admin_test_total 3"));

        let code = tokio::task::spawn_blocking(move || healthcheck(port))
            .await
            .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        token.cancel();
        server.await.unwrap().unwrap();
        let code = tokio::task::spawn_blocking(move || healthcheck(port))
            .await
            .unwrap();
        assert_eq!(code, ExitCode::FAILURE);
    }
}
