//! The baseline of `cargo xtask bench vote` (DESIGN.md §6): a bare axum
//! handler doing one `RPUSH` and answering "ok", with no cookie, no form, no
//! middleware. Built in release beside the service so that the benchmark can
//! print the service's throughput as a fraction of this one, measured on the
//! same machine at the same time.
//!
//!   REDIS_URL=redis://127.0.0.1:6379/ BIND_PORT=8080 cargo run --release -p vote --example baseline

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use redis::aio::ConnectionManager;

async fn push(State(mut conn): State<ConnectionManager>) -> (StatusCode, &'static str) {
    let pushed: redis::RedisResult<i64> = redis::cmd("RPUSH")
        .arg("baseline")
        .arg(r#"{"voter_id":"0123456789abcdef","vote":"a"}"#)
        .query_async(&mut conn)
        .await;
    match pushed {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let port: u16 = std::env::var("BIND_PORT").map_or(Ok(8080), |p| p.parse())?;
    let conn = common::queue::manager(redis::Client::open(url)?)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = Router::new().route("/", post(push)).with_state(conn);
    axum::serve(listener, app).await?;
    Ok(())
}
