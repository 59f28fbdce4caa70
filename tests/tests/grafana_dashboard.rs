//! `deploy/grafana/slipway.json` only queries metrics the binaries export: after a real
//! deploy through the controller (registry, controller, agent, runc), every `slipway_*` name
//! in every PromQL expression of the dashboard has samples on the controller's or the
//! agent's `/metrics`.

use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// One GET of `path` on `addr`: the body.
fn fetch(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "GET {path} on {addr}: {text}"
    );
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// Names of the samples in a Prometheus text exposition.
fn sampled(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Every `expr` in the dashboard.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    ("expr", Some(e)) => out.push(e.to_string()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// PromQL aggregation operators (`sum by (x) (...)` puts a clause between them and `(`).
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
];

/// The metric names a PromQL expression selects: identifiers outside label matchers and
/// range brackets that are not followed by `(` (functions), not operators, and not label
/// names in a grouping clause.
fn metric_names(expr: &str) -> Vec<String> {
    let (mut names, mut depth_braces, mut depth_brackets) = (Vec::new(), 0, 0);
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => depth_brackets += 1,
            ']' => depth_brackets -= 1,
            ')' => grouping = false,
            _ if (c.is_ascii_alphabetic() || c == '_')
                && depth_braces == 0
                && depth_brackets == 0 =>
            {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if matches!(word.as_str(), "by" | "without" | "on" | "ignoring") {
                    grouping = true;
                } else if next != Some(&'(') && !grouping && !AGGREGATIONS.contains(&word.as_str())
                {
                    names.push(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

#[test]
fn every_dashboard_query_uses_a_metric_the_controller_or_agent_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/slipway.json"))
            .expect("dashboard is JSON");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 10, "dashboard has {} queries", all.len());

    let registry = Registry::start().unwrap();
    let v1 = busybox_httpd_image("metrics v1")
        .push(registry.addr(), "metweb", "v1")
        .unwrap();
    let v2 = busybox_httpd_image("metrics v2")
        .push(registry.addr(), "metweb", "v2")
        .unwrap();
    let (mut controller, key) = Controller::prepare("");
    let admin = controller.token("admin", "admin", None);
    let agent = controller.agent_section("host-m", "{ role = \"web\" }");
    controller.start();
    let host = TestHost::start_with(registry.addr(), key, &agent).unwrap();
    let listen = free_port();
    let app_toml = controller.path().join("app.toml");
    std::fs::write(
        &app_toml,
        format!(
            "name = \"metweb\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\nstop_grace = \"1s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"2s\"\n[rollout]\nselector = {{ role = \"web\" }}\n",
            v1.repository
        ),
    )
    .unwrap();
    let slipway = |args: &[&str]| controller.slipway(&admin, args);
    ok(slipway(&["app", "apply", "-f", app_toml.to_str().unwrap()]));
    // Two releases, so the second swap has an old container to drain.
    for (tag, body) in [("v1", "metrics v1"), ("v2", "metrics v2")] {
        let repo = if tag == "v1" {
            &v1.repository
        } else {
            &v2.repository
        };
        ok(slipway(&[
            "release",
            "metweb",
            "--image",
            &format!("{repo}:{tag}"),
        ]));
        host.wait_for_body(listen, body, Duration::from_secs(60))
            .unwrap();
    }
    let agent_addr: SocketAddr = format!("127.0.0.1:{}", host.metrics_port).parse().unwrap();
    let controller_addr: SocketAddr = format!("127.0.0.1:{}", controller.port).parse().unwrap();
    // Bake ends (and the deploy counts as live) a moment after traffic moved.
    wait_until(Duration::from_secs(30), || {
        fetch(agent_addr, "/metrics").contains("slipway_agent_deploys_total{outcome=\"live\"} 2")
    })
    .expect("agent counts two live deploys");
    let agent_text = fetch(agent_addr, "/metrics");
    let mut exported = sampled(&agent_text);
    exported.extend(sampled(&fetch(controller_addr, "/metrics")));
    for phase in ["pull", "start", "health", "switch", "drain", "bake"] {
        assert!(
            agent_text.contains(&format!(
                "slipway_agent_phase_duration_seconds_count{{phase=\"{phase}\"}}"
            )),
            "phase {phase} not timed:\n{agent_text}"
        );
    }
    assert!(
        agent_text.contains("slipway_agent_containers_running 1"),
        "{agent_text}"
    );

    let mut missing = Vec::new();
    for e in &all {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no metric in query {e:?}");
        for n in names {
            if !exported.contains(&n) {
                missing.push(format!("{n} (in {e})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported: {missing:#?}\nexported: {exported:#?}"
    );
}
