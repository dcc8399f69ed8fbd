//! Serving with bounds, for every server Slipway runs (the admission webhook over TLS, the HTTP
//! server of both homes, the local routers): a TLS handshake, a request's headers and a whole
//! request each have a time limit, and connections are capped in all and per client address, so
//! a slow or hostile client cannot starve the API server's admission calls
//! ([`crate::decide::limits`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt as _;

use crate::decide::limits;

/// Connections held per client address.
#[derive(Clone, Default)]
struct Peers(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place among its peer's; freed when dropped.
struct Held {
    peers: Peers,
    ip: IpAddr,
}

impl Peers {
    fn hold(&self, ip: IpAddr, most: usize) -> Option<Held> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(Held {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut m = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serves HTTP/1 requests of one connection with `router`, within the time limits.
async fn connection<IO>(io: IO, router: Router)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let router = router.clone();
        async move {
            match tokio::time::timeout(limits::REQUEST, router.oneshot(req)).await {
                Ok(answer) => answer,
                Err(_) => Ok((
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "the request took too long\n",
                )
                    .into_response()),
            }
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits::REQUEST_HEADERS)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A connection, plain or over TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The caps of a server.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Connections held at once.
    pub connections: usize,
    /// Connections one client address holds at once.
    pub per_peer: usize,
}

impl Bounds {
    /// Slipway's own servers: [`limits::CONNECTIONS`], [`limits::CONNECTIONS_PER_PEER`].
    pub const API: Bounds = Bounds {
        connections: limits::CONNECTIONS,
        per_peer: limits::CONNECTIONS_PER_PEER,
    };
    /// A local router: every client is on 127.0.0.1 (often one proxy in front), so only the
    /// total is capped.
    pub const ROUTER: Bounds = Bounds {
        connections: limits::CONNECTIONS,
        per_peer: limits::CONNECTIONS,
    };
}

/// Serves `router` on `listener` (over TLS with `tls`) until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    serve_with(listener, Bounds::API, tls, move |io: Box<dyn Io>| {
        connection(io, router.clone())
    })
    .await;
}

/// Serves each connection accepted on `listener` (after the TLS handshake with `tls`) with
/// `serve_one`, within `bounds`, until the task is dropped.
pub async fn serve_with<F, Fut>(
    listener: tokio::net::TcpListener,
    bounds: Bounds,
    tls: Option<tokio_rustls::TlsAcceptor>,
    serve_one: F,
) where
    F: Fn(Box<dyn Io>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let open = Arc::new(tokio::sync::Semaphore::new(bounds.connections));
    let peers = Peers::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            // Out of file descriptors, say: wait a little rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over a limit: closed at once.
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many connections; closing a new one");
            continue;
        };
        let Some(held) = peers.hold(peer.ip(), bounds.per_peer) else {
            tracing::debug!(%peer, "too many connections from this address; closing a new one");
            continue;
        };
        let (serve_one, tls) = (serve_one.clone(), tls.clone());
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _held = (permit, held);
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits::TLS_HANDSHAKE, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_one(Box::new(s)).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake took too long"),
                    }
                }
                None => serve_one(Box::new(stream)).await,
            }
        });
    }
}
