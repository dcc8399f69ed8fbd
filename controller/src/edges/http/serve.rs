//! Serving with bounds, for every server Slipway runs (the admission webhook over TLS, the HTTP
//! server of both homes): a TLS handshake, a request's headers and a whole request each have a
//! time limit, and connections are capped in all and per client address, so a slow or hostile
//! client cannot starve the API server's admission calls ([`crate::decide::limits`]).

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
    fn hold(&self, ip: IpAddr) -> Option<Held> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= limits::CONNECTIONS_PER_PEER {
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

/// Serves `router` on `listener` (over TLS with `tls`) until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(limits::CONNECTIONS));
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
        let Some(held) = peers.hold(peer.ip()) else {
            tracing::debug!(%peer, "too many connections from this address; closing a new one");
            continue;
        };
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let _held = (permit, held);
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits::TLS_HANDSHAKE, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => connection(s, router).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake took too long"),
                    }
                }
                None => connection(stream, router).await,
            }
        });
    }
}
