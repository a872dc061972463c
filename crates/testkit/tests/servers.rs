//! The harness itself: servers start, answer, stop and come back with their data.

use std::io::{Read, Write};
use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};
use testkit::{PgServer, RedisServer};

fn redis_cmd(port: u16, cmd: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn redis_restarts_with_its_data() {
    let r = RedisServer::start();
    assert_eq!(redis_cmd(r.port, "SET k 41").unwrap(), "+OK\r\n");
    assert_eq!(redis_cmd(r.port, "INCR k").unwrap(), ":42\r\n");
    r.stop();
    assert!(
        redis_cmd(r.port, "PING").is_err(),
        "a stopped server refuses connections"
    );
    r.start_again();
    assert_eq!(redis_cmd(r.port, "GET k").unwrap(), "$2\r\n42\r\n");
}

#[test]
fn shared_redis_gives_each_test_its_own_queue() {
    let a = testkit::redis();
    let b = testkit::redis();
    assert_eq!(a.url, b.url);
    assert_ne!(a.queue, b.queue);
}

#[tokio::test]
async fn postgres_databases_are_fresh_and_separate() {
    let a = testkit::postgres().await;
    let b = testkit::postgres().await;
    assert_ne!(a.database, b.database);
    let mut c = PgConnection::connect(&a.url).await.unwrap();
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&mut c)
        .await
        .unwrap();
    let mut d = PgConnection::connect(&b.url).await.unwrap();
    let n: i64 = sqlx::query("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
        .fetch_one(&mut d)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn postgres_restarts_with_its_data() {
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let mut c = PgConnection::connect(&pg.url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    let mut c = PgConnection::connect(&pg.url()).await.unwrap();
    let x: i32 = sqlx::query("SELECT x FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 7);
}
