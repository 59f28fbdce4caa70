//! L4: raw TCP, routed per connection to the app's current upstream, bytes copied both ways.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::defaults;
use crate::drain::Tracker;
use crate::router::App;

/// Copy buffer per direction; large enough for bulk transfers without many syscalls.
const COPY_BUF: usize = 64 * 1024;

/// Accepts client connections for one app until the task is aborted.
pub(crate) async fn accept_loop(listener: TcpListener, app: Arc<App>, conns: Arc<Tracker>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                tokio::spawn(serve_conn(stream, app.clone(), conns.clone()));
            }
            Err(e) => {
                warn!(app = %app.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(mut client: TcpStream, app: Arc<App>, conns: Arc<Tracker>) {
    let _open = conns.enter();
    let Some(up) = app.current.load_full() else {
        debug!(app = %app.name, "no upstream; connection closed");
        return;
    };
    let mut flight = up.begin();
    let m = &up.metrics;
    m.connections.fetch_add(1, Relaxed);
    let connect = tokio::time::timeout(
        defaults::UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(up.upstream.addr),
    );
    let mut server = tokio::select! {
        biased;
        r = connect => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                m.connect_errors.fetch_add(1, Relaxed);
                warn!(app = %app.name, upstream = %up.upstream.id, addr = %up.upstream.addr,
                    error = %e, "upstream connect failed; client connection closed");
                return;
            }
            Err(_) => {
                m.connect_errors.fetch_add(1, Relaxed);
                warn!(app = %app.name, upstream = %up.upstream.id, addr = %up.upstream.addr,
                    "upstream connect timed out; client connection closed");
                return;
            }
        },
        _ = flight.cut() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, COPY_BUF, COPY_BUF) => {
            match r {
                Ok((to_up, to_client)) => {
                    m.bytes_in.fetch_add(to_up, Relaxed);
                    m.bytes_out.fetch_add(to_client, Relaxed);
                }
                Err(e) => debug!(app = %app.name, error = %e, "tcp connection ended with an error"),
            }
        }
        _ = flight.cut() => {
            debug!(app = %app.name, upstream = %up.upstream.id, "tcp connection cut by drain timeout");
        }
    }
}
