//! The router's tests: the weighted pick, and mirroring against a real upstream.

use super::*;

/// The versions `pick` chooses for `n` requests from a fresh start.
fn picks(backends: &[(String, u16, u32)], n: usize) -> Vec<String> {
    let mut credit = vec![0; backends.len()];
    (0..n)
        .map(|_| pick(backends, &mut credit).unwrap().0)
        .collect()
}

/// An upstream answering `{"ok": true}` to everything; its port.
async fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let shadowed = req.headers().contains_key("x-slipway-shadow");
                    let _ = req.into_body().collect().await;
                    let body = if shadowed {
                        r#"{"ok": true, "shadow": 1}"#
                    } else {
                        r#"{"ok": true}"#
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// One raw HTTP/1.1 exchange with the router; the answer's status line.
fn exchange(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

/// The hostile review: requests that end before the serving version answers (a body that
/// cannot be read) took mirroring slots they never gave back, and 64 of them stopped every
/// later mirror. Now a slot is taken only once the serving version answered, by a task that
/// gives it back, and the mirrored request says it is one.
#[test]
fn requests_that_fail_early_do_not_use_up_the_shadows_slots() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (router, port) = runtime.block_on(async {
        let up = upstream().await;
        let router = TrafficRouter::start(0).await.unwrap();
        router.set(
            &BTreeMap::from([("7".to_string(), 100), ("8".to_string(), 0)]),
            &BTreeMap::from([("7".to_string(), up), ("8".to_string(), up)]),
        );
        router.set_routing(&Routing {
            candidate: Some("8".into()),
            mirror: 100,
            ..Routing::default()
        });
        let port = router.addr.port();
        (router, port)
    });
    for _ in 0..70 {
        let status = exchange(
            port,
            "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZZ\r\n",
        );
        assert!(status.contains(" 400 "), "{status}");
    }
    for _ in 0..30 {
        let status = exchange(
            port,
            "GET /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(status.contains(" 200 "), "{status}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while router.window("8").compared < 30 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let w = router.window("8");
    assert_eq!((w.requests, w.compared), (30, 30), "{w:?}");
    // The shadow saw the marker header (its answer differs in the one field it adds).
    assert_eq!(w.agreed, 0, "{w:?}");
    assert!(w.disagreements[0].why.contains("fields"), "{w:?}");
    assert_eq!(lock(&router.table).mirroring, 0);
    drop(router);
}

#[test]
fn every_hundred_requests_split_exactly_by_weight() {
    let backends = vec![("7".to_string(), 1, 90), ("8".to_string(), 2, 10)];
    let all = picks(&backends, 300);
    for block in all.chunks(100) {
        assert_eq!(block.iter().filter(|v| *v == "8").count(), 10);
    }
    assert_eq!(pick(&[], &mut []), None);
}

/// Issue 20: at 25% the candidate had no request among the first 75 of each block of 100,
/// so a window with light traffic saw none of it. Now any four requests in a row hold one.
#[test]
fn the_candidate_is_interleaved_from_the_first_requests() {
    let backends = vec![("7".to_string(), 1, 75), ("8".to_string(), 2, 25)];
    let all = picks(&backends, 200);
    for four in all.windows(4) {
        assert_eq!(four.iter().filter(|v| *v == "8").count(), 1, "{four:?}");
    }
    // At 1% the candidate still has its request within the first hundred.
    let thin = vec![("7".to_string(), 1, 99), ("8".to_string(), 2, 1)];
    assert_eq!(picks(&thin, 100).iter().filter(|v| *v == "8").count(), 1);
    // Three versions: exact shares, interleaved.
    let three = vec![
        ("6".to_string(), 1, 50),
        ("7".to_string(), 2, 30),
        ("8".to_string(), 3, 20),
    ];
    let all = picks(&three, 10);
    assert_eq!(all.iter().filter(|v| *v == "6").count(), 5);
    assert_eq!(all.iter().filter(|v| *v == "8").count(), 2);
}

/// Issue 22 §8: the router has the bounds of every server Slipway runs — a body over
/// `ROUTED_BODY` is refused with 413 before it reaches a version, and every request is counted in
/// the totals `/metrics` exports, in its latency bucket.
#[test]
fn a_body_over_the_cap_is_refused_and_every_answer_is_counted_in_the_totals() {
    use std::io::{Read, Write};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (router, port) = runtime.block_on(async {
        let up = upstream().await;
        let router = TrafficRouter::start(0).await.unwrap();
        router.set(
            &BTreeMap::from([("7".to_string(), 100)]),
            &BTreeMap::from([("7".to_string(), up)]),
        );
        let port = router.addr.port();
        (router, port)
    });
    let size = crate::decide::limits::ROUTED_BODY + 1;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(
        format!("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    // The router may answer before the whole body is sent.
    let _ = s.write_all(&vec![b'x'; size]);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:.200}");
    for _ in 0..3 {
        let status = exchange(
            port,
            "GET /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(status.contains(" 200 "), "{status}");
    }
    let totals = router.totals();
    let t = &totals["7"];
    assert_eq!((t.requests, t.errors), (3, 0), "{t:?}");
    assert_eq!(t.buckets.len(), super::BUCKETS.len() + 1);
    assert_eq!(t.buckets.iter().sum::<u64>(), 3);
    assert!(t.seconds > 0.0);
    drop(router);
}

/// The hostile review of §8: an answer cut short was sent on as a 200 with half a body and
/// counted a success. Now it is the version's 502, in its window and totals; and the same weights
/// given again (a server started on a new port) keep the window.
#[test]
fn an_answer_cut_short_is_a_502_and_new_ports_alone_keep_the_window() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (router, port, cut) = runtime.block_on(async {
        let up = upstream().await;
        // Promises 100 bytes, sends 10, hangs up.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cut = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    .await;
            }
        });
        let router = TrafficRouter::start(0).await.unwrap();
        router.set(
            &BTreeMap::from([("7".to_string(), 100)]),
            &BTreeMap::from([("7".to_string(), up)]),
        );
        let port = router.addr.port();
        (router, port, cut)
    });
    let get = "GET /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert!(exchange(port, get).contains(" 200 "));
    assert_eq!(router.window("7").requests, 1);
    // Version 7's server "started again" on another port: same weights, the window goes on.
    router.set(
        &BTreeMap::from([("7".to_string(), 100)]),
        &BTreeMap::from([("7".to_string(), cut)]),
    );
    let status = exchange(port, get);
    assert!(status.contains(" 502 "), "{status}");
    let w = router.window("7");
    assert_eq!((w.requests, w.errors), (2, 1), "{w:?}");
    assert_eq!(router.totals()["7"].errors, 1);
    // New weights: a new window.
    router.set(
        &BTreeMap::from([("7".to_string(), 50), ("8".to_string(), 50)]),
        &BTreeMap::from([("7".to_string(), cut)]),
    );
    assert_eq!(router.window("7").requests, 0);
    drop(router);
}
