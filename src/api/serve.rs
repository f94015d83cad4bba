//! Serving the router over TLS: one task per connection, a bounded
//! handshake, the verified client's name and address handed to the
//! handlers as a request extension ([`Peer`]), graceful shutdown on
//! cancellation.

use crate::pki::server::peer_name;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The CN of the client certificate the handshake verified (cluster CA
    /// only; a certificate of another CA fails the handshake).
    pub name: Option<String>,
    /// The client's address (rate limits are per source IP).
    pub addr: SocketAddr,
}

/// Serves `app` on `listener` with `config` until `cancel`.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (tcp, addr) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "API: TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let peer = Peer {
                name: peer_name(tls.get_ref().1.peer_certificates()),
                addr,
            };
            let svc = TowerToHyperService::new(app.layer(axum::Extension(peer)));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
                }
            }
        });
    }
}
