//! Plain HTTP on loopback for the tests: one request helper and a recording receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends one HTTP/1.0 request to `url` (`http://HOST:PORT/PATH`) and returns (status, body);
/// status 0 when nothing answered.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} /{path} HTTP/1.0\r\nHost: {host}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// POSTs a JSON body with a bearer token: (status, body).
pub fn post_json(url: &str, token: &str, body: &str) -> (u16, String) {
    let bearer = format!("Bearer {token}");
    request(
        "POST",
        url,
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// POSTs evaluation results to a results API on 127.0.0.1:`port` (namespace `default`).
pub fn post_results(port: u16, evaluation: &str, token: &str, body: &str) -> (u16, String) {
    post_json(
        &format!("http://127.0.0.1:{port}/api/v1/evaluations/default/{evaluation}/results"),
        token,
        body,
    )
}

/// A real HTTP receiver on loopback: records (path, headers, body); answers 500 to the first
/// `fail_first` requests, then 200 — except under `/redirect`, which answers 307 to `/stolen`.
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<(String, String, String)>>>,
    /// The body of a 200 answer (JSON; empty by default).
    answer: Arc<Mutex<String>>,
    /// The status line of a successful answer (`200 OK` by default).
    success: Arc<Mutex<String>>,
    /// The method of every request so far.
    methods: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let answer = Arc::new(Mutex::new(String::new()));
        let body_of = answer.clone();
        let success = Arc::new(Mutex::new("200 OK".to_string()));
        let success_of = success.clone();
        let methods = Arc::new(Mutex::new(Vec::new()));
        let methods_seen = methods.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap_or(0);
                let mut headers = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    headers.push_str(&line);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap_or(());
                n += 1;
                let ok = success_of.lock().unwrap().clone();
                let status = if n <= fail_first {
                    "500 Internal Server Error"
                } else {
                    ok.as_str()
                };
                methods_seen.lock().unwrap().push(
                    request_line
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let status = if path.starts_with("/redirect") {
                    "307 Temporary Redirect\r\nLocation: /stolen"
                } else {
                    status
                };
                seen.lock().unwrap().push((
                    path,
                    headers,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let body = if status.starts_with('2') {
                    body_of.lock().unwrap().clone()
                } else {
                    String::new()
                };
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        Receiver {
            port,
            got,
            answer,
            success,
            methods,
        }
    }

    /// Answers successes with this status line (e.g. `201 Created`) and `body` from now on.
    pub fn answer_status(&self, status: &str, body: &str) {
        *self.success.lock().unwrap() = status.to_string();
        self.answer_with(body);
    }

    /// The method of every request so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.methods.lock().unwrap().clone()
    }

    /// Answers 200s with `body` from now on.
    pub fn answer_with(&self, body: &str) {
        *self.answer.lock().unwrap() = body.to_string();
    }

    /// Its address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.got.lock().unwrap().clear();
    }

    /// Every request so far: (path, headers, body).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.got.lock().unwrap().clone()
    }
}
