//! Benchmark (run on demand, see `deploy/bench/fleet.sh`): a rollout of the busybox app to a
//! fleet of hosts, each in its own network namespace, in waves of 25%, while a client keeps
//! requesting from every host. Reports the failed requests (goal: 0), the rollout's wall time
//! against the sum of its configured pauses and bake windows, and the memory of the agents
//! and proxies.
//!
//! `SLIPWAY_BENCH_HOSTS` (default 20), `SLIPWAY_BENCH_PAUSE` (default 5s) and
//! `SLIPWAY_BENCH_BAKE` (default 2s) change the shape.

use slipway_tests::fleet::{ok, Fleet};
use slipway_tests::host::{free_port, wait_until};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::load::{Load, LoadReport};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[test]
#[ignore = "benchmark: run with deploy/bench/fleet.sh"]
fn bench_fleet_rollout_in_waves_of_a_quarter() {
    let hosts: usize = env_or("SLIPWAY_BENCH_HOSTS", "20").parse().unwrap();
    let pause = humantime::parse_duration(&env_or("SLIPWAY_BENCH_PAUSE", "5s")).unwrap();
    let bake = humantime::parse_duration(&env_or("SLIPWAY_BENCH_BAKE", "2s")).unwrap();
    let app = "fleetbench";
    let controller =
        "long_poll_max_wait = \"5s\"\n[rollout]\nsilent_after = \"30s\"\ntick = \"100ms\"\n";
    let mut f = Fleet::start(1, controller);
    let listen = free_port();
    let v1 = busybox_httpd_image("fleet v1")
        .push(f.registry.addr(), app, "v1")
        .unwrap();
    let v2 = busybox_httpd_image("fleet v2")
        .push(f.registry.addr(), app, "v2")
        .unwrap();

    let t = Instant::now();
    f.add_hosts(app, hosts, &format!("{{ fleet = \"{app}\" }}"), 0);
    f.wait_registered();
    println!("{hosts} hosts up and registered in {}", secs(t.elapsed()));

    f.apply(
        app,
        &format!(
            "name = \"{app}\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n\
             [health]\ndeadline = \"10s\"\n\
             [swap]\nbake = \"{}\"\ndrain_timeout = \"5s\"\n\
             [rollout]\nselector = {{ fleet = \"{app}\" }}\ncanary = 0\nbatch_size = \"25%\"\n\
             pause = \"{}\"\n",
            v1.repository,
            humantime::format_duration(bake),
            humantime::format_duration(pause)
        ),
    );
    ok(f.slipway(0, &["release", app, "--image", &v1.image_ref()]));
    let all_serve = |text: &str| f.hosts.iter().all(|h| h.body(listen) == text);
    wait_until(Duration::from_secs(300), || all_serve("fleet v1")).expect("v1 everywhere");
    println!("v1 on every host after {}", secs(t.elapsed()));

    // One keep-alive client per host, all the time.
    let loads: Vec<Load> = f
        .hosts
        .iter()
        .map(|h| Load::start(h.addr(listen), 1))
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    let start = Instant::now();
    ok(f.slipway(0, &["release", app, "--image", &v2.image_ref()]));
    let mut first_v2: Vec<Option<Duration>> = vec![None; f.hosts.len()];
    wait_until(Duration::from_secs(600), || {
        for (i, h) in f.hosts.iter().enumerate() {
            if first_v2[i].is_none() && h.body(listen) == "fleet v2" {
                first_v2[i] = Some(start.elapsed());
            }
        }
        first_v2.iter().all(Option::is_some)
    })
    .expect("v2 everywhere");
    let r = f.wait_rollout(app, Duration::from_secs(120), |r| r["state"] == "done");
    let wall = start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let mut total = LoadReport::default();
    for l in loads {
        let r = l.finish();
        total.ok += r.ok;
        total.failed += r.failed;
        total.retried += r.retried;
        total.errors.extend(r.errors);
        total.latencies_us.extend(r.latencies_us);
    }
    total.latencies_us.sort_unstable();

    let waves = r["waves"].as_array().map(Vec::len).unwrap_or(0);
    let pauses = pause * (waves.saturating_sub(1) as u32);
    let bakes = bake * waves as u32;
    let mut served: Vec<Duration> = first_v2.into_iter().flatten().collect();
    served.sort();
    let (mut rss_agents, mut rss_proxies) = (0, 0);
    for h in &f.hosts {
        let (a, p) = h.rss_kib();
        rss_agents += a;
        rss_proxies += p;
    }
    println!("--- rollout of {app} to {hosts} hosts in {waves} waves (25% each)");
    println!(
        "requests: {} ok, {} failed, {} retried on a fresh connection",
        total.ok, total.failed, total.retried
    );
    println!(
        "latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total.percentile_us(0.5) as f64 / 1000.0,
        total.percentile_us(0.99) as f64 / 1000.0,
        total.percentile_us(1.0) as f64 / 1000.0
    );
    println!(
        "first host on v2: {}, last: {}",
        secs(served[0]),
        secs(*served.last().unwrap())
    );
    println!("rollout wall time (release -> done): {}", secs(wall));
    println!(
        "configured pauses: {} ({} x {}); bake windows: {} ({} x {})",
        secs(pauses),
        waves.saturating_sub(1),
        secs(pause),
        secs(bakes),
        waves,
        secs(bake)
    );
    println!(
        "wall / pauses = {:.2}x; wall / (pauses + bakes) = {:.2}x; overhead beyond both = {}",
        wall.as_secs_f64() / pauses.as_secs_f64().max(1e-9),
        wall.as_secs_f64() / (pauses + bakes).as_secs_f64(),
        secs(wall.saturating_sub(pauses + bakes))
    );
    println!(
        "memory: agents {:.1} MiB in all ({:.1} MiB each), proxies {:.1} MiB in all ({:.1} MiB each)",
        rss_agents as f64 / 1024.0,
        rss_agents as f64 / 1024.0 / hosts as f64,
        rss_proxies as f64 / 1024.0,
        rss_proxies as f64 / 1024.0 / hosts as f64
    );
    if let Ok(dir) = std::env::var("SLIPWAY_BENCH_LOGS") {
        std::fs::create_dir_all(&dir).unwrap();
        for h in &f.hosts {
            let _ = std::fs::copy(
                h.dir.path().join("agent.log"),
                format!("{dir}/{}.agent.log", h.id),
            );
        }
        let _ = std::fs::copy(f.controllers[0].log_path(), format!("{dir}/controller.log"));
        println!("logs copied to {dir}");
    }
    assert_eq!(total.failed, 0, "failed requests: {:?}", total.errors);
    assert!(total.ok > 0);
}
