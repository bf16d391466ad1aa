//! The limits that keep hostile or slow clients from holding the launcher. (Who may call it, and
//! what they control, is tests/callers.rs.)

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use support::{SEED_TEMPLATE, TestApp, TestNamespace, put_config_map, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup(args: &[&str]) -> (TestNamespace, TestApp) {
    let ns = TestNamespace::create("limits").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let app = TestApp::start(&ns.name, args).await.ready().await;
    (ns, app)
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_client_that_sends_its_headers_a_byte_a_second_is_cut_off() {
    let (_ns, app) = setup(&["--header-read-timeout", "2s"]).await;
    let mut stream = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
    let started = Instant::now();
    let head =
        b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => {
                let answer = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let after = closed_after.expect("the server gave up on the slow client");
    assert!(after < Duration::from_secs(5), "cut off after {after:?}, the header timeout is 2s");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_and_half_a_preface_is_cut_off() {
    let (_ns, app) = setup(&["--header-read-timeout", "2s"]).await;
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let answer = h2c.get(app.url("/v1/templates")).send().await.expect("HTTP/2 without TLS");
    assert_eq!((answer.status(), answer.version()), (StatusCode::OK, reqwest::Version::HTTP_2));

    // The launcher tells HTTP/2 from HTTP/1 by the first bytes; a client that sends some of the
    // preface and stops is held to the same deadline as a slow request head.
    let mut stream = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection is closed, not answered: {read:?}");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "cut off after {after:?}, not at 2s"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_does_not_hold_up_shutdown() {
    let (_ns, app) = setup(&["--header-read-timeout", "60s"]).await;
    let mut silent = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
    let mut half_preface = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    // Both are accepted and waiting for their first bytes to decide the protocol when the
    // launcher is told to stop: it closes them rather than waiting out the 60 s deadline.
    let stopped = tokio::time::timeout(Duration::from_secs(20), app.stop()).await;
    assert!(stopped.is_ok(), "the launcher waited for connections with no request");
    for stream in [&mut silent, &mut half_preface] {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed at shutdown: {read:?}");
    }
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408_and_oversized_headers_431() {
    let (_ns, app) = setup(&["--request-timeout", "2s"]).await;
    let mut stream = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
    stream
        .write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "answered within the request timeout");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");

    let big = "x".repeat(20 * 1024);
    let r = app.http.get(app.url("/v1/jobs")).header("x-big", big).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_get_503_with_retry_after() {
    let (_ns, app) = setup(&["--max-concurrent-requests", "2", "--request-timeout", "10s"]).await;
    // Two requests held in progress: their bodies never finish.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
        s.write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{",
        )
        .await
        .expect("write");
        held.push(s);
    }
    // The held requests take both slots as soon as the server has read their heads.
    let mut r = app.http.get(app.url("/v1/jobs")).send().await.expect("r");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while r.status() != StatusCode::SERVICE_UNAVAILABLE && tokio::time::Instant::now() < deadline {
        r = app.http.get(app.url("/v1/jobs")).send().await.expect("r");
    }
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    drop(held);
    wait_until(Duration::from_secs(10), "the slots to come back", || async {
        app.http.get(app.url("/v1/jobs")).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("job_launcher_http_rejected_total{outcome=\"overloaded\"} 1"), "{metrics}");
}
