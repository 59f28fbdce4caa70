//! HTTP/2 without TLS (h2c, prior knowledge) to upstreams whose app sets `upstream_h2c`
//! (gRPC). One multiplexed connection per upstream, swapped in whole (no lock per request)
//! and replaced once it closes.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::defaults;
use crate::pool::{ConnectError, ForwardError};

type Sender = http2::SendRequest<RequestBody>;

/// The h2c connection of one upstream, made on first use.
#[derive(Debug)]
pub(crate) struct H2c {
    addr: SocketAddr,
    conn: ArcSwapOption<Sender>,
}

impl H2c {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        H2c {
            addr,
            conn: ArcSwapOption::empty(),
        }
    }

    async fn connect(&self) -> Result<Arc<Sender>, ConnectError> {
        let addr = self.addr;
        let timeout = defaults::UPSTREAM_CONNECT_TIMEOUT;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ConnectError::Tcp { addr, source }),
            Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        };
        let _ = stream.set_nodelay(true);
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::H2Handshake { addr, source })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let send = Arc::new(send);
        self.conn.store(Some(send.clone()));
        Ok(send)
    }

    /// Sends `req` over the upstream's h2c connection (opened if there is none or it closed).
    pub(crate) async fn forward(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let send = match self.conn.load_full() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        let mut send = (*send).clone();
        send.ready().await.map_err(ForwardError::Request)?;
        send.send_request(req).await.map_err(ForwardError::Request)
    }
}
