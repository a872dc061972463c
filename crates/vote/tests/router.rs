//! Router tests: the app driven with `oneshot`, against a real Redis (each
//! test with its own queue name). Every refused request also checks that the
//! queue did not change.

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use redis::AsyncCommands;
use tower::ServiceExt;

use common::message::VoteMessage;
use common::options::VoteOptions;
use common::queue::Keys;
use vote::queue::VoteQueue;
use vote::{router, AppState};

const FORM: &str = "application/x-www-form-urlencoded";

struct App {
    router: Router,
    redis: redis::aio::MultiplexedConnection,
    keys: Keys,
    _server: testkit::TestRedis,
}

async fn app() -> App {
    app_with(VoteOptions::default()).await
}

async fn app_with(options: VoteOptions) -> App {
    let r = testkit::redis();
    let client = redis::Client::open(r.url.as_str()).unwrap();
    let keys = Keys::new(r.queue.clone());
    let queue = VoteQueue::new(
        common::queue::manager(client.clone()).unwrap(),
        keys.clone(),
    );
    let state = AppState::new(options, "test-host".into(), queue).unwrap();
    App {
        router: router(state),
        redis: client.get_multiplexed_async_connection().await.unwrap(),
        keys,
        _server: r,
    }
}

impl App {
    async fn send(&self, req: Request<Body>) -> (Response<Body>, String) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (Response::from_parts(parts, Body::empty()), text)
    }

    /// The messages on this test's queue, parsed.
    async fn queued(&self) -> Vec<VoteMessage> {
        let raw: Vec<String> = self
            .redis
            .clone()
            .lrange(&self.keys.queue, 0, -1)
            .await
            .unwrap();
        raw.iter()
            .map(|m| VoteMessage::parse(m.as_bytes(), &VoteOptions::default()).unwrap())
            .collect()
    }

    /// Asserts that nothing was queued and no order key was taken.
    async fn assert_untouched(&self) {
        let mut r = self.redis.clone();
        let len: i64 = r.llen(&self.keys.queue).await.unwrap();
        let seq: Option<i64> = r.get(self.keys.seq()).await.unwrap();
        assert_eq!((len, seq), (0, None), "the queue changed");
    }
}

fn post() -> axum::http::request::Builder {
    Request::post("/").header(header::CONTENT_TYPE, FORM)
}

fn vote_req(body: &'static str) -> Request<Body> {
    post().body(Body::from(body)).unwrap()
}

fn header<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn cookie_id(res: &Response<Body>) -> String {
    let c = header(res, "set-cookie");
    c.strip_prefix("voter_id=")
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_owned()
}

fn assert_security_headers(res: &Response<Body>) {
    let csp = header(res, "content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(res, "x-content-type-options"), "nosniff");
    assert_eq!(header(res, "x-frame-options"), "DENY");
    assert!(res.headers().contains_key("referrer-policy"));
}

#[tokio::test]
async fn get_shows_the_question_the_options_and_the_host() {
    let app = app().await;
    let (res, body) = app
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert_security_headers(&res);
    assert!(body.contains("Cats vs Dogs!"));
    assert!(body.contains(r#"value="a""#) && body.contains(r#"value="b""#));
    assert!(body.contains("Processed by container ID <code>test-host</code>"));
    assert!(!body.contains("aria-pressed"), "nothing chosen on GET");
    // The first visit sets the voter cookie.
    let c = header(&res, "set-cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(c.contains(attr), "{c}");
    }
    assert_eq!(cookie_id(&res).len(), 32);
    app.assert_untouched().await;
}

#[tokio::test]
async fn get_keeps_a_well_formed_cookie() {
    let app = app().await;
    let req = Request::get("/")
        .header("cookie", "voter_id=0123456789abcdef")
        .body(Body::empty())
        .unwrap();
    let (res, _) = app.send(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("set-cookie"));
}

#[tokio::test]
async fn a_vote_is_queued_as_the_original_json_plus_seq_and_marked() {
    let app = app().await;
    let (res, body) = app.send(vote_req("vote=a")).await;
    assert_eq!(res.status(), StatusCode::OK, "{body}");
    assert_security_headers(&res);
    let id = cookie_id(&res);
    assert!(body.contains(r#"class="option option-a chosen""#), "{body}");
    assert!(body.contains("Your vote for <strong>Cats</strong>"));

    let raw: Vec<String> = app
        .redis
        .clone()
        .lrange(&app.keys.queue, 0, -1)
        .await
        .unwrap();
    assert_eq!(raw.len(), 1);
    // String fields voter_id and vote, as the original worker reads them.
    let v: serde_json::Value = serde_json::from_str(&raw[0]).unwrap();
    assert_eq!(v["voter_id"], serde_json::json!(id));
    assert_eq!(v["vote"], "a");
    assert_eq!(v["seq"], 1);
}

#[tokio::test]
async fn voting_again_with_the_cookie_keeps_the_voter_and_orders_the_votes() {
    let app = app().await;
    let (res, _) = app.send(vote_req("vote=a")).await;
    let id = cookie_id(&res);
    let req = post()
        .header("cookie", format!("voter_id={id}"))
        .body(Body::from("vote=b"))
        .unwrap();
    let (res, body) = app.send(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("set-cookie"), "kept, not reset");
    assert!(body.contains(r#"class="option option-b chosen""#));
    let q = app.queued().await;
    assert_eq!(q.len(), 2);
    assert!(q.iter().all(|m| m.voter_id == id));
    assert_eq!(
        (q[0].vote.as_str(), q[1].vote.as_str()),
        ("a", "b"),
        "queue order"
    );
    assert!(
        q[0].seq < q[1].seq,
        "the later vote has the larger order key"
    );
}

#[tokio::test]
async fn a_malformed_cookie_is_treated_as_absent() {
    let app = app().await;
    let req = post()
        .header("cookie", "voter_id=\"><script>; other=1")
        .body(Body::from("vote=b"))
        .unwrap();
    let (res, _) = app.send(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = cookie_id(&res);
    let q = app.queued().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].voter_id, id);
}

#[tokio::test]
async fn more_options_are_offered_and_accepted() {
    let app = app_with(VoteOptions::new([
        ("a", "Tea".into()),
        ("b", "Coffee".into()),
        ("c", "Water".into()),
    ]))
    .await;
    let (_, body) = app
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert!(body.contains("Tea vs Coffee vs Water!"));
    let (res, _) = app.send(vote_req("vote=c")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let raw: Vec<String> = app
        .redis
        .clone()
        .lrange(&app.keys.queue, 0, -1)
        .await
        .unwrap();
    assert!(raw[0].contains(r#""vote":"c""#));
}

#[tokio::test]
async fn an_unknown_option_is_400_and_queues_nothing() {
    let app = app().await;
    for body in ["vote=z", "vote=", "vote=A", "vote=c", "vote=a%20"] {
        let req = post().body(Body::from(body)).unwrap();
        let (res, text) = app.send(req).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains("unknown option"), "{text}");
        assert!(text.contains("vote must be one of a, b"), "{text}");
        assert_eq!(header(&res, "content-type"), "text/plain; charset=utf-8");
        assert_security_headers(&res);
    }
    app.assert_untouched().await;
}

#[tokio::test]
async fn an_oversized_body_is_413_and_queues_nothing() {
    let app = app().await;
    let big = format!("vote=a&pad={}", "x".repeat(2000));
    let req = post().body(Body::from(big.clone())).unwrap();
    let (res, text) = app.send(req).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("too large"), "{text}");
    // The same without a Content-Length: a streamed body is cut off too.
    let stream = futures_body(big);
    let req = post().body(stream).unwrap();
    let (res, _) = app.send(req).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.assert_untouched().await;
}

/// A body of unknown length, as a chunked upload is.
fn futures_body(text: String) -> Body {
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = text
        .into_bytes()
        .chunks(100)
        .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn a_wrong_content_type_is_415_and_queues_nothing() {
    let app = app().await;
    for ct in [
        Some("application/json"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut b = Request::post("/");
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let (res, text) = app.send(b.body(Body::from("vote=a")).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert!(text.contains("application/x-www-form-urlencoded"), "{text}");
    }
    app.assert_untouched().await;
}

#[tokio::test]
async fn a_malformed_form_is_400_with_a_useful_message() {
    let app = app().await;
    for body in ["", "x=1", "vote", "vote=a&vote=b", "\u{0}\u{1}"] {
        let req = post().body(Body::from(body)).unwrap();
        let (res, text) = app.send(req).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body:?}: {text}");
        assert!(
            text.starts_with("malformed form:") || text.contains("unknown option"),
            "{text}"
        );
        assert!(text.contains("vote"), "{text}");
    }
    app.assert_untouched().await;
}

#[tokio::test]
async fn cross_site_posts_are_403_and_queue_nothing() {
    let app = app().await;
    let refused = [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://evil.example"), ("host", "vote.example")],
        vec![("origin", "null"), ("host", "vote.example")],
    ];
    for headers in refused {
        let mut b = post();
        for (k, v) in &headers {
            b = b.header(*k, *v);
        }
        let (res, text) = app.send(b.body(Body::from("vote=a")).unwrap()).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(text.contains("cross-site"), "{text}");
        assert_security_headers(&res);
    }
    app.assert_untouched().await;
}

#[tokio::test]
async fn same_origin_form_posts_and_plain_clients_are_accepted() {
    let app = app().await;
    let accepted = [
        // What a browser sends for the page's own form.
        vec![
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://localhost:5000"),
            ("host", "localhost:5000"),
        ],
        // An older browser without Fetch Metadata.
        vec![
            ("origin", "http://localhost:5000"),
            ("host", "localhost:5000"),
        ],
        // curl, the seed tool.
        vec![("host", "localhost:5000")],
    ];
    for headers in accepted {
        let mut b = post();
        for (k, v) in &headers {
            b = b.header(*k, *v);
        }
        let (res, text) = app.send(b.body(Body::from("vote=b")).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK, "{headers:?}: {text}");
    }
    assert_eq!(app.queued().await.len(), 3);
}

#[tokio::test]
async fn the_stylesheet_is_served_from_memory_with_cache_headers() {
    let app = app().await;
    let (_, page) = app
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    let href = page
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let (res, css) = app
        .send(Request::get(&href).body(Body::empty()).unwrap())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "text/css; charset=utf-8");
    assert!(header(&res, "cache-control").contains("immutable"));
    assert_security_headers(&res);
    assert!(css.contains(".option"));
    let etag = header(&res, "etag").to_owned();

    let req = Request::get(&href)
        .header("if-none-match", &etag)
        .body(Body::empty())
        .unwrap();
    let (res, body) = app.send(req).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    let (res, _) = app
        .send(
            Request::get("/static/vote.css")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control"), "no-cache");

    let (_, page) = (res, page);
    let icon = page
        .split("rel=\"icon\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let (res, _) = app
        .send(Request::get(icon).body(Body::empty()).unwrap())
        .await;
    assert_eq!(header(&res, "content-type"), "image/svg+xml");

    for missing in ["/static/nope.css", "/nope"] {
        let (res, _) = app
            .send(Request::get(missing).body(Body::empty()).unwrap())
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_security_headers(&res);
    }
}

#[tokio::test]
async fn other_methods_are_405_not_500() {
    let app = app().await;
    for m in ["PUT", "DELETE", "PATCH"] {
        let req = Request::builder()
            .method(m)
            .uri("/")
            .body(Body::from("vote=a"))
            .unwrap();
        let (res, _) = app.send(req).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_security_headers(&res);
    }
    app.assert_untouched().await;
}

#[tokio::test]
async fn requests_and_votes_are_counted_for_metrics() {
    let handle = common::admin::metrics_handle();
    let app = app().await;
    let (res, _) = app.send(vote_req("vote=b")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (res, _) = app.send(vote_req("vote=q")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let text = handle.render();
    for series in [
        r#"votes_queued_total{vote="b"}"#,
        r#"http_requests_total{route="/",method="POST",status="200"}"#,
        r#"http_requests_total{route="/",method="POST",status="400"}"#,
        r#"http_request_duration_seconds_bucket{route="/",method="POST",le="0.005"}"#,
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
}
