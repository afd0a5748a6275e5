//! The accept loop: HTTP/1.1 over hyper with the limits `axum::serve` does not offer.
//!
//! - **Header timeout.** A connection must deliver a request's head within
//!   `http_header_timeout_secs` of opening, and of the end of its previous response (hyper
//!   restarts the timer whenever it waits for a head), so the same bound closes silent,
//!   trickling (slowloris) and idle keep-alive connections.
//! - **Connections per client IP.** At most `max_connections_per_ip` open sockets per address
//!   (per /64 for IPv6), WebSockets included: the count is held by the socket itself, which
//!   an upgraded WebSocket keeps. Trusted proxies are exempt: every client behind them shares
//!   their address, and their clients are limited by the proxy and by the per-IP rate limits.
//!
//! On `stop`, idle keep-alive connections are closed and requests in flight finish; upgraded
//! WebSockets are not this loop's: their sessions drain on their own (see `app.rs`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::domain::ipnet::{IpNet, subject};

/// How long a connection may finish its request after `stop` before it is dropped (within
/// the grace `app.rs` gives the whole server).
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (usually out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The accept loop's limits, from the configuration.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Time to deliver a request head, from connection open or the previous response.
    pub header_timeout: Duration,
    /// Open sockets per client address; 0 = unlimited.
    pub per_ip: usize,
    /// Peers exempt from `per_ip` (reverse proxies).
    pub trusted: Vec<IpNet>,
    /// Counts the connections refused by `per_ip` (a handle on the metrics' counter).
    pub refused: prometheus_client::metrics::counter::Counter,
}

/// Serves `router` on `listener` until `stop` is cancelled, then waits for the open HTTP
/// exchanges (not WebSockets) to end.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    stop: CancellationToken,
) {
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let open = OpenPerIp::default();
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let slot = if limits.trusted.iter().any(|net| net.contains(peer.ip())) {
            None
        } else {
            match open.admit(peer.ip(), limits.per_ip) {
                Some(slot) => Some(slot),
                None => {
                    // Dropping the socket closes it: no answer is cheaper than any answer.
                    limits.refused.inc();
                    tracing::debug!(ip = %peer.ip(), "connection refused: too many from this IP");
                    continue;
                }
            }
        };
        // Frames are written in flushed batches, so Nagle would only add latency.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = match make.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let io = TokioIo::new(Counted { tcp, _slot: slot });
        let stop = stop.clone();
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = http
                .serve_connection(io, TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(conn);
            let finished = tokio::select! {
                done = conn.as_mut() => Some(done),
                () = stop.cancelled() => None,
            };
            let result = match finished {
                Some(done) => done,
                None => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(STOP_GRACE, conn).await {
                        Ok(done) => done,
                        Err(_) => return,
                    }
                }
            };
            // Header timeouts and resets are what this loop is for: not worth more than debug.
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Open sockets by client subject (an IPv4 address or an IPv6 /64).
#[derive(Clone, Default)]
struct OpenPerIp(Arc<Mutex<HashMap<String, usize>>>);

impl OpenPerIp {
    /// A slot for one more socket from `ip`, or `None` at the cap (0 = no cap).
    fn admit(&self, ip: IpAddr, cap: usize) -> Option<Slot> {
        let key = subject(ip);
        let mut open = self.0.lock();
        let count = open.entry(key.clone()).or_insert(0);
        if cap > 0 && *count >= cap {
            return None;
        }
        *count += 1;
        Some(Slot {
            open: self.clone(),
            key,
        })
    }
}

/// One counted socket; dropping it gives the slot back.
struct Slot {
    open: OpenPerIp,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.0.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                // Keeps the map as small as the set of clients connected right now.
                open.remove(&self.key);
            }
        }
    }
}

/// A TCP stream that holds its client's slot for as long as it lives, through a WebSocket
/// upgrade too (hyper hands this same stream to the upgraded connection).
struct Counted {
    tcp: TcpStream,
    _slot: Option<Slot>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_given_back() {
        let open = OpenPerIp::default();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let a1 = open.admit(ip("10.0.0.1"), 2);
        let a2 = open.admit(ip("10.0.0.1"), 2);
        assert!(a1.is_some() && a2.is_some());
        assert!(open.admit(ip("10.0.0.1"), 2).is_none(), "at the cap");
        assert!(open.admit(ip("10.0.0.2"), 2).is_some(), "another client");
        let v6 = open.admit(ip("2001:db8::1"), 1);
        assert!(v6.is_some());
        assert!(open.admit(ip("2001:db8::2"), 1).is_none(), "same /64");
        drop(a1);
        assert!(open.admit(ip("10.0.0.1"), 2).is_some(), "given back");
        drop((a2, v6));
        assert!(open.admit(ip("10.0.0.9"), 0).is_some(), "0 = no cap");
    }
}
