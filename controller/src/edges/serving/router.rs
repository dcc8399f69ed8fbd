//! The traffic router of the local target: one HTTP port per deployment, splitting requests
//! between versions by weight and recording what it observes (requests, 5xx, latency) per version
//! for rollout analysis. It runs in a process of its own (`slipway router`, see
//! [`super::control`]), so that it outlives the reconciler.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::decide::limits;
use crate::edges::http::serve::{Bounds, serve_with};

use crate::decide::rollout::Window;
use crate::decide::rollout::routing::{self, Route, Routing};
use crate::decide::rollout::shadow;

type Body = Full<Bytes>;

#[derive(Default)]
struct Table {
    /// The weights last given (those above 0).
    given: BTreeMap<String, u32>,
    /// (version, upstream port, weight), in version order.
    backends: Vec<(String, u16, u32)>,
    /// Each backend's running credit for the smooth weighted round robin of [`pick`].
    credit: Vec<i64>,
    /// Observations per version since the weights last changed.
    windows: BTreeMap<String, Window>,
    /// Requests being forwarded, per version (a version is stopped only once it has none).
    in_flight: BTreeMap<String, u32>,
    /// Everything observed per version since the router started (`/metrics`).
    totals: BTreeMap<String, Totals>,
    /// State of the generator that samples latencies beyond a window's [`Window::latency`] cap.
    random: u64,
    /// Requests routed by their headers (A/B cohorts, sticky users) before the weights.
    routing: Routing,
    /// Every version's upstream port (a shadow has no weight, but is mirrored to).
    ports: BTreeMap<String, u16>,
    /// Each shadow's running credit of mirroring (a request is mirrored per 100 earned).
    mirror_credit: BTreeMap<String, u32>,
    /// Mirrored requests not answered yet (at most [`MAX_MIRRORING`]: beyond, none is sent).
    mirroring: usize,
    /// Of them, to standing shadows (at most [`MAX_STANDING`]: the rest are the step's).
    mirroring_standing: usize,
    /// Counts the weight changes: a mirrored answer from before the last one is not this
    /// window's.
    generation: u64,
}

/// The most mirrored requests in flight at once (a slow shadow never piles up requests).
const MAX_MIRRORING: usize = 64;
/// The most of them to standing shadows: a slow one never starves a shadow step's candidate.
const MAX_STANDING: usize = MAX_MIRRORING / 2;

#[path = "router_mirror.rs"]
mod mirror;
use mirror::{Slot, mirror, mirrored_to};

#[path = "router_totals.rs"]
mod totals;
use totals::next_random;
pub use totals::{BUCKETS, Totals};

/// A running router. Dropping it stops it.
pub struct TrafficRouter {
    table: Arc<Mutex<Table>>,
    /// The address clients call.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TrafficRouter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(t: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    // The table stays consistent even if a request task panicked while holding it.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

impl TrafficRouter {
    /// Binds `127.0.0.1:port` (0: any free port) on the runtime and starts serving.
    pub async fn start(port: u16) -> std::io::Result<TrafficRouter> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let table = Arc::new(Mutex::new(Table {
            random: u64::from(std::process::id()) << 32 | u64::from(addr.port()),
            ..Table::default()
        }));
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let t = table.clone();
        // The bounds of every server Slipway runs: connections capped, headers within 5 s.
        let task = tokio::spawn(serve_with(listener, Bounds::ROUTER, None, move |io| {
            let (table, client) = (t.clone(), client.clone());
            async move {
                let service = service_fn(move |req| forward(req, table.clone(), client.clone()));
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits::REQUEST_HEADERS)
                    .serve_connection(TokioIo::new(io), service)
                    .await;
            }
        }));
        Ok(TrafficRouter { table, addr, task })
    }

    /// Routes by these weights (version → percent) to these upstream ports; new weights start
    /// new observation windows (new ports alone — a server started again — do not).
    pub fn set(&self, weights: &BTreeMap<String, u32>, ports: &BTreeMap<String, u16>) {
        let mut t = lock(&self.table);
        let given: BTreeMap<String, u32> = weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(v, w)| (v.clone(), *w))
            .collect();
        let same = t.given == given;
        t.given = given;
        t.backends = weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .filter_map(|(v, w)| ports.get(v).map(|p| (v.clone(), *p, *w)))
            .collect();
        t.credit = vec![0; t.backends.len()];
        t.ports = ports.clone();
        if !same {
            t.windows.clear();
            t.generation += 1;
        }
    }

    /// Routes requests by these rules before the weights.
    pub fn set_routing(&self, routing: &Routing) {
        let mut t = lock(&self.table);
        if t.routing != *routing {
            t.routing = routing.clone();
        }
    }

    /// Requests to `version` being forwarded right now.
    pub fn in_flight(&self, version: &str) -> u32 {
        lock(&self.table)
            .in_flight
            .get(version)
            .copied()
            .unwrap_or(0)
    }

    /// What was observed for a version since the weights last changed.
    pub fn window(&self, version: &str) -> Window {
        lock(&self.table)
            .windows
            .get(version)
            .cloned()
            .unwrap_or_default()
    }

    /// Stops accepting connections (requests already taken are answered).
    pub fn close(&self) {
        self.task.abort();
    }

    /// Requests being forwarded right now, to any version.
    pub fn in_flight_total(&self) -> u32 {
        lock(&self.table).in_flight.values().sum()
    }

    /// Everything observed per version since the router started.
    pub fn totals(&self) -> BTreeMap<String, Totals> {
        lock(&self.table).totals.clone()
    }

    /// The current weights.
    pub fn weights(&self) -> BTreeMap<String, u32> {
        lock(&self.table)
            .backends
            .iter()
            .map(|(v, _, w)| (v.clone(), *w))
            .collect()
    }
}

/// Picks the backend of the next request by smooth weighted round robin: each backend earns
/// its weight in credit per request, the one with the most credit (the first on a tie) takes the
/// request and pays the total. Every run of `total` requests splits exactly by the weights, and
/// the versions are interleaved evenly within it — at 25% the candidate has one request of every
/// four from the first four on, not a block of 25 after 75 (with light traffic, a window could
/// end before its block began: analysis with no requests).
fn pick(backends: &[(String, u16, u32)], credit: &mut [i64]) -> Option<(String, u16)> {
    let total: i64 = backends.iter().map(|b| i64::from(b.2)).sum();
    if total == 0 || credit.len() != backends.len() {
        return None;
    }
    let mut best = 0;
    for (i, (_, _, w)) in backends.iter().enumerate() {
        credit[i] += i64::from(*w);
        if credit[i] > credit[best] {
            best = i;
        }
    }
    credit[best] -= total;
    let (v, port, _) = &backends[best];
    Some((v.clone(), *port))
}

async fn forward(
    req: Request<Incoming>,
    table: Arc<Mutex<Table>>,
    client: Client<HttpConnector, Body>,
) -> Result<Response<Body>, Infallible> {
    let header = |name: &str| {
        let all: Vec<&str> = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    };
    let Some((version, port)) = take_backend(&table, &header) else {
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no version is serving this deployment yet\n".into(),
        ));
    };
    // Counted out however this request ends (answered, failed, or cancelled).
    struct InFlight(Arc<Mutex<Table>>, String);
    impl Drop for InFlight {
        fn drop(&mut self) {
            if let Some(n) = lock(&self.0).in_flight.get_mut(&self.1) {
                *n = n.saturating_sub(1);
            }
        }
    }
    let _in_flight = InFlight(table.clone(), version.clone());
    let (parts, body) = req.into_parts();
    let read = http_body_util::Limited::new(body, limits::ROUTED_BODY).collect();
    let body = match tokio::time::timeout(limits::ROUTED_REQUEST, read).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over {} MiB\n",
                    limits::ROUTED_BODY >> 20
                ),
            ));
        }
        Ok(Err(e)) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            ));
        }
        Err(_) => {
            return Ok(text(
                StatusCode::REQUEST_TIMEOUT,
                "the request body took too long\n".into(),
            ));
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let Some(upstream) = upstream_request(&parts.method, &path, &parts.headers, body.clone(), port)
    else {
        return Ok(text(StatusCode::BAD_REQUEST, "bad request\n".into()));
    };
    let started = Instant::now();
    let (response, served) = answer(client.request(upstream), &version).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // Mirrored only once the serving version answered (and only then is a slot taken: the
    // task that holds it gives it back however it ends).
    let shadows = mirrored_to(&mut lock(&table), &version);
    observe(&table, version, &response, ms);
    let asked = format!("{} {}", parts.method, shadow::redacted(&path));
    for (shadow, shadow_port, how, generation) in shadows {
        let slot = Slot(table.clone(), generation.is_none());
        let mut mirrored = upstream_request(
            &parts.method,
            &path,
            &parts.headers,
            body.clone(),
            shadow_port,
        );
        if let Some(r) = mirrored.as_mut() {
            r.headers_mut().insert(
                "x-slipway-shadow",
                hyper::header::HeaderValue::from_static("1"),
            );
        }
        if let (Some(mirrored), Some(served)) = (mirrored, served.clone()) {
            tokio::spawn(mirror(
                slot,
                client.clone(),
                mirrored,
                (shadow, generation),
                served,
                how,
                asked.clone(),
            ));
        }
    }
    Ok(response)
}

/// Picks the backend for the next request — by its headers when the routing rules send it
/// somewhere, else by weight — and counts it in flight, with the shadow it is also mirrored to
/// (a shadow step's share of requests); None when no version serves.
fn take_backend(
    table: &Mutex<Table>,
    header: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, u16)> {
    let mut t = lock(table);
    let Table {
        backends,
        credit,
        routing,
        ..
    } = &mut *t;
    let chosen = if routing.is_plain() {
        Route::Weighted
    } else {
        let weights = backends.iter().map(|(v, _, w)| (v.as_str(), *w));
        routing::choose(routing, weights, header)
    };
    let picked = match chosen {
        Route::To(v) => backends
            .iter()
            .find(|(b, _, _)| *b == v)
            .map(|(b, p, _)| (b.clone(), *p)),
        Route::Weighted => pick(backends, credit),
    };
    if let Some((v, _)) = &picked {
        *t.in_flight.entry(v.clone()).or_default() += 1;
    }
    picked
}

/// The request to send to the version on `port`: the client's, without its `Host`.
fn upstream_request(
    method: &hyper::Method,
    path: &str,
    headers: &hyper::HeaderMap,
    body: Bytes,
    port: u16,
) -> Option<Request<Body>> {
    let mut upstream = Request::builder()
        .method(method.clone())
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        if k != hyper::header::HOST {
            upstream = upstream.header(k, v);
        }
    }
    upstream.body(Full::new(body)).ok()
}

/// The client's answer: the version's response marked with the version, or why it gave none;
/// and what the version answered (status, body), for a shadow's comparison. The version has
/// [`limits::ROUTED_REQUEST`] for its whole answer, body included, of at most
/// [`limits::ROUTED_BODY`]; an answer cut short is a 502 (the version's error), never a success
/// with half a body.
async fn answer(
    sent: impl std::future::Future<
        Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>,
    >,
    version: &str,
) -> (Response<Body>, Option<(u16, Bytes)>) {
    let exchange = async {
        let resp = sent
            .await
            .map_err(|e| format!("version {version} did not answer: {e}\n"))?;
        let (parts, body) = resp.into_parts();
        let bytes = http_body_util::Limited::new(body, limits::ROUTED_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!(
                        "version {version} answered more than {} MiB\n",
                        limits::ROUTED_BODY >> 20
                    )
                } else {
                    format!("version {version}'s answer was cut short: {e}\n")
                }
            })?
            .to_bytes();
        Ok::<_, String>((parts, bytes))
    };
    match tokio::time::timeout(limits::ROUTED_REQUEST, exchange).await {
        Err(_) => (
            text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "version {version} did not answer within {} s\n",
                    limits::ROUTED_REQUEST.as_secs()
                ),
            ),
            None,
        ),
        Ok(Err(why)) => (text(StatusCode::BAD_GATEWAY, why), None),
        Ok(Ok((mut parts, bytes))) => {
            parts.headers.insert(
                "x-slipway-version",
                version
                    .parse()
                    .unwrap_or(hyper::header::HeaderValue::from_static("?")),
            );
            let served = (parts.status.as_u16(), bytes.clone());
            (Response::from_parts(parts, Full::new(bytes)), Some(served))
        }
    }
}

/// Records a forwarded request in its version's window: one more, a server error, its latency.
fn observe(table: &Mutex<Table>, version: String, response: &Response<Body>, ms: f64) {
    let failed = response.status().is_server_error();
    let mut t = lock(table);
    let random = next_random(&mut t.random);
    match t.totals.get_mut(&version) {
        Some(totals) => totals.add(failed, ms / 1000.0),
        None => {
            let mut totals = Totals::default();
            totals.add(failed, ms / 1000.0);
            t.totals.insert(version.clone(), totals);
        }
    }
    let w = t.windows.entry(version).or_default();
    w.requests += 1;
    if failed {
        w.errors += 1;
    }
    w.latency(ms, random);
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
