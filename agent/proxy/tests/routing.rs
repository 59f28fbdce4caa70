//! Host + path routing on the shared listener: many apps on one port, most specific match,
//! 404 for unknown hosts, collisions refused without touching running routes, restored after
//! a restart. Requests are made with curl.

mod common;

use common::*;
use slipway_proto::EdgeSpec;
use slipway_proxy::{EdgeConfig, Protocol, RouteSpec};

fn hosts(list: &[&str], prefix: Option<&str>, strip: bool) -> RouteSpec {
    RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: list.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.map(str::to_owned),
            strip_prefix: strip,
            ..EdgeSpec::default()
        },
    }
}

fn get(addr: std::net::SocketAddr, host: &str, path: &str) -> (u16, String) {
    let url = format!("http://{host}:{}{path}", addr.port());
    let (code, body, _) = curl(&["--resolve", &resolve(host, addr), &url]);
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_share_one_listener_by_host_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (shop, api, blog, port_app) = (
        Backend::start("shop").await,
        Backend::start("api").await,
        Backend::start("blog").await,
        Backend::start("legacy").await,
    );
    let c = &proxy.client;
    c.set_route(
        "shop",
        &hosts(&["shop.example.com", "*.shop.example.com"], None, false),
        shop.upstream(),
    )
    .await
    .unwrap();
    c.set_route(
        "api",
        &hosts(&["shop.example.com"], Some("/api"), true),
        api.upstream(),
    )
    .await
    .unwrap();
    c.set_route(
        "blog",
        &hosts(&["blog.example.com"], None, false),
        blog.upstream(),
    )
    .await
    .unwrap();
    // `listen = PORT` alone keeps working beside them.
    c.set_upstream("legacy", 0, Protocol::Http, port_app.upstream())
        .await
        .unwrap();
    let addr = c
        .edge()
        .await
        .unwrap()
        .http
        .expect("shared HTTP listener is up");
    let legacy = proxy.app_addr("legacy").await;
    let host_only = c.routes().await.unwrap();
    let shop_route = host_only.iter().find(|r| r.app == "shop").unwrap();
    assert_eq!(
        shop_route.bound, None,
        "a host-routed app gets no port of its own"
    );

    let blocking = tokio::task::spawn_blocking(move || {
        assert_eq!(
            get(addr, "shop.example.com", "/x/whoami"),
            (200, "shop /x/whoami".into())
        );
        assert_eq!(
            get(addr, "eu.shop.example.com", "/whoami"),
            (200, "shop /whoami".into())
        );
        // Longest prefix wins, and the prefix is stripped (query kept).
        assert_eq!(
            get(addr, "shop.example.com", "/api/v1/whoami?q=1"),
            (200, "api /v1/whoami?q=1".into())
        );
        // `/apix` is not under `/api`.
        assert_eq!(
            get(addr, "shop.example.com", "/apix/whoami"),
            (200, "shop /apix/whoami".into())
        );
        assert_eq!(
            get(addr, "BLOG.example.com", "/whoami"),
            (200, "blog /whoami".into())
        );
        let (code, body) = get(addr, "unknown.example.com", "/");
        assert_eq!(code, 404);
        assert!(body.contains("404 Not Found"), "{body}");
        let url = format!("http://127.0.0.1:{}/whoami", legacy.port());
        let (code, body, _) = curl(&[&url]);
        assert_eq!((code, body.as_str()), (200, "legacy /whoami"));
    });
    blocking.await.unwrap();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_host_is_refused_and_running_routes_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path()).await;
    let (shop, thief) = (Backend::start("shop").await, Backend::start("thief").await);
    let c = &proxy.client;
    c.set_route(
        "shop",
        &hosts(&["shop.example.com"], None, false),
        shop.upstream(),
    )
    .await
    .unwrap();
    let err = c
        .set_route(
            "thief",
            &hosts(&["other.example.com", "shop.example.com"], None, false),
            thief.upstream(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`thief`") && err.contains("`shop`") && err.contains("shop.example.com"),
        "{err}"
    );
    // Nothing of the refused app went live.
    assert!(c.routes().await.unwrap().iter().all(|r| r.app != "thief"));
    let addr = c.edge().await.unwrap().http.unwrap();
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            get(addr, "shop.example.com", "/whoami"),
            (200, "shop /whoami".into())
        );
        assert_eq!(get(addr, "other.example.com", "/").0, 404);
    })
    .await
    .unwrap();
    // A TCP app cannot be routed by host.
    let tcp = RouteSpec {
        protocol: Protocol::Tcp,
        ..hosts(&["tcp.example.com"], None, false)
    };
    let err = c.set_route("db", &tcp, thief.upstream()).await.unwrap_err();
    assert!(
        err.to_string().contains("TCP apps are routed by port"),
        "{err}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_are_restored_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeConfig {
        http_port: free_port(),
        ..test_edge()
    };
    let shop = Backend::start("shop").await;
    let proxy = Proxy::start_with(dir.path(), edge.clone()).await;
    proxy
        .client
        .set_route(
            "shop",
            &hosts(&["shop.example.com"], Some("/store"), true),
            shop.upstream(),
        )
        .await
        .unwrap();
    proxy.stop().await;
    let proxy = Proxy::start_with(dir.path(), edge.clone()).await;
    let addr = proxy.client.edge().await.unwrap().http.unwrap();
    assert_eq!(addr.port(), edge.http_port);
    let routes = proxy.client.routes().await.unwrap();
    assert_eq!(routes[0].edge.hosts, ["shop.example.com"]);
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            get(addr, "shop.example.com", "/store/whoami"),
            (200, "shop /whoami".into())
        );
    })
    .await
    .unwrap();
    proxy.stop().await;
}
