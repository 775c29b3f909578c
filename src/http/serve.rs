//! Serving connections: the accept loop with a connection cap, hyper's header read
//! timeout, the client's address for every request, and a graceful shutdown that lets
//! in-flight requests finish within a grace period.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How connections are admitted and how long a client may take; see the README.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open connections at most; one past it is closed at once.
    pub max_connections: usize,
    /// A request's headers must have arrived within this time, or the connection closes.
    pub header_read_timeout: Duration,
    /// After a shutdown is asked for, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
    /// Balancers and proxies whose `X-Forwarded-For` names the client (see `client_address`).
    pub trusted_proxies: Arc<[IpNet]>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            trusted_proxies: Arc::new([]),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: &ConnectionLimits,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // HTTP/1.1 only: sniffing for HTTP/2's preface would wait for bytes without any limit,
    // ahead of the header read timeout, so a silent connection could hold its place forever.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed at once, so the client learns now instead of waiting in a queue.
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(refused, max = limits.max_connections, "connection cap reached; refusing connections");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxies = limits.trusted_proxies.clone();
        let service = app.clone().map_request(move |req: axum::http::Request<Incoming>| {
            let mut req = req.map(Body::new);
            let client = client_address(peer.ip(), req.headers(), &proxies);
            req.extensions_mut().insert(Client(client));
            req
        });
        let (builder, watcher, first_byte) = (builder.clone(), graceful.watcher(), limits.header_read_timeout);
        tokio::spawn(async move {
            // hyper's header read timeout starts with the first byte; a client that sends
            // none is bounded here, by the same limit.
            if tokio::time::timeout(first_byte, stream.peek(&mut [0u8; 1])).await.is_err() {
                return;
            }
            let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The client's address, as `client_address` found it.
#[derive(Debug, Clone, Copy)]
struct Client(IpAddr);

/// The address of the client: the connection's, or, behind a trusted proxy, the one the
/// proxy names.
pub fn client(req: &axum::http::request::Parts) -> Option<IpAddr> {
    req.extensions.get::<Client>().map(|c| c.0)
}

/// Who sent a request that arrived from `peer`. A connection from anywhere but a trusted
/// proxy is its own client, whatever its headers say. From a trusted proxy, the client is
/// the last address in `X-Forwarded-For` (each proxy appends the address it was reached
/// from) that is not a trusted proxy itself; what precedes it was written by the client
/// and proves nothing. An entry that is not an address ends the walk at the proxy that
/// added it.
pub fn client_address(peer: IpAddr, headers: &axum::http::HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !trusted(&client) {
        return client;
    }
    let values = headers.get_all("x-forwarded-for").iter().rev();
    for value in values {
        let Ok(list) = value.to_str() else { return client };
        for entry in list.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else { return client };
            client = ip;
            if !trusted(&client) {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(peer: &str, forwarded: &[&str], proxies: &[&str]) -> String {
        let mut headers = axum::http::HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        let proxies: Vec<IpNet> = proxies.iter().map(|p| p.parse().unwrap()).collect();
        client_address(peer.parse().unwrap(), &headers, &proxies).to_string()
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_alone() {
        let lb = ["10.0.0.0/8"];
        // No proxy trusted, or a peer outside them: the header is the client's own words.
        assert_eq!(from("203.0.113.9", &["198.51.100.1"], &[]), "203.0.113.9");
        assert_eq!(from("203.0.113.9", &["198.51.100.1"], &lb), "203.0.113.9");
        // Through the balancer: the address it appended.
        assert_eq!(from("10.0.0.2", &["198.51.100.1"], &lb), "198.51.100.1");
        // A client's own entries before it prove nothing.
        assert_eq!(from("10.0.0.2", &["1.2.3.4, 198.51.100.1"], &lb), "198.51.100.1");
        assert_eq!(from("10.0.0.2", &["1.2.3.4", "198.51.100.1"], &lb), "198.51.100.1");
        // Two trusted hops, then the client.
        assert_eq!(from("10.0.0.2", &["198.51.100.1, 10.0.0.7"], &lb), "198.51.100.1");
        // Nothing forwarded, only proxies, or garbage where the client's address should be.
        assert_eq!(from("10.0.0.2", &[], &lb), "10.0.0.2");
        assert_eq!(from("10.0.0.2", &["10.0.0.3"], &lb), "10.0.0.3");
        assert_eq!(from("10.0.0.2", &["198.51.100.1, bogus"], &lb), "10.0.0.2");
        assert_eq!(from("10.0.0.2", &["2001:db8::1"], &lb), "2001:db8::1");
    }
}
