//! Serving connections: the accept loop with a connection cap, hyper's header read
//! timeout, the client's address for every request, and a graceful shutdown that lets
//! in-flight requests finish within a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
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
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
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
        let service = app.clone().map_request(move |req: axum::http::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
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

/// The address of the client that opened the connection.
pub fn peer(req: &axum::http::request::Parts) -> Option<SocketAddr> {
    req.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
