//! HTTP/2: h2c from clients (prior knowledge), and h2c to upstreams that ask for it (gRPC):
//! the request arrives as HTTP/2 with `te: trailers`, and the upstream's trailers reach the
//! client. Clients are curl.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipway_proto::EdgeSpec;
use slipway_proxy::{Protocol, RouteSpec, Upstream};
use tokio::net::TcpListener;

/// A body of the given frames (popped from the end), length unknown up front, as a gRPC
/// server streams it.
struct Framed(Vec<Frame<Bytes>>);

impl hyper::body::Body for Framed {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop().map(Ok))
    }
}

/// An h2c-only upstream (like a gRPC server): answers the version and `te` it saw, and a
/// `grpc-status: 0` trailer.
async fn h2c_backend() -> (Upstream, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let te = req
                        .headers()
                        .get("te")
                        .map(|v| v.to_str().unwrap_or("?").to_owned())
                        .unwrap_or_default();
                    let text = format!("{:?} te={te} path={}", req.version(), req.uri().path());
                    let mut trailers = hyper::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let body = Framed(vec![
                        Frame::trailers(trailers),
                        Frame::data(Bytes::from(text)),
                    ]);
                    Ok::<_, Infallible>(Response::new(body))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let up = Upstream {
        id: "grpc-1".parse().unwrap(),
        addr,
    };
    (up, task)
}

fn route(host: &str, h2c: bool) -> RouteSpec {
    RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: vec![host.to_owned()],
            upstream_h2c: h2c,
            ..EdgeSpec::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_and_h2c_upstreams_with_trailers() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let web = Backend::start("web").await;
    let (grpc, _task) = h2c_backend().await;
    let c = &proxy.client;
    c.set_route("web", &route("web.example.com", false), web.upstream())
        .await
        .unwrap();
    c.set_route("grpc", &route("grpc.example.com", true), grpc)
        .await
        .unwrap();
    let http = c.edge().await.unwrap().http.unwrap();
    tokio::task::spawn_blocking(move || {
        let get = |host: &str, extra: &[&str]| {
            let url = format!("http://{host}:{}/svc/Method", http.port());
            let r = resolve(host, http);
            let mut args = vec!["--resolve", r.as_str()];
            args.extend_from_slice(extra);
            args.push(&url);
            curl(&args)
        };
        // h2c from the client to an HTTP/1.1 upstream.
        let (code, body, headers) = get("web.example.com", &["--http2-prior-knowledge"]);
        assert_eq!((code, body.as_str()), (200, "web"));
        assert!(headers.starts_with("HTTP/2 200"), "{headers}");
        // h2c end to end, trailers included.
        let (code, body, headers) = get(
            "grpc.example.com",
            &["--http2-prior-knowledge", "-H", "te: trailers"],
        );
        assert_eq!(code, 200);
        assert_eq!(body, "HTTP/2.0 te=trailers path=/svc/Method");
        assert!(
            headers.contains("grpc-status: 0"),
            "trailer passed: {headers}"
        );
        // An HTTP/1.1 client reaches the h2c upstream too.
        let (code, body, _) = get("grpc.example.com", &["--http1.1"]);
        assert_eq!(
            (code, body.as_str()),
            (200, "HTTP/2.0 te= path=/svc/Method")
        );
    })
    .await
    .unwrap();
    proxy.stop().await;
}
