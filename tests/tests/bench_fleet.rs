//! Benchmark (run on demand, see `deploy/bench/fleet.sh`): a rollout of the busybox app to a
//! fleet of hosts, each in its own network namespace, in waves of 25%, while a client keeps
//! requesting from every host. Reports the failed requests (goal: 0), the rollout's wall time
//! against the sum of its configured pauses and bake windows, and the memory of the agents
//! and proxies.
//!
//! Then where each wave's time went, from the controller's event log: from the wave's start
//! to each host pulling, pulling to starting (the pull), starting to health-checking
//! (rootfs, network, runc), health-checking to baking (health check and switch), baking to
//! live (bake window, drain), and from the wave's last host live to the next wave (the
//! configured pause plus the driver's reaction).
//!
//! `SLIPWAY_BENCH_DELETE=N` deletes N hosts of the later waves (agent killed, cable pulled:
//! a terminated VM) once the first wave has started; the rollout must still finish without
//! a halt, leaving them out as down (after `silent_after`, 30 s here).
//!
//! `SLIPWAY_BENCH_HOSTS` (default 20), `SLIPWAY_BENCH_PAUSE` (default 5s) and
//! `SLIPWAY_BENCH_BAKE` (default 2s) change the shape.

use serde_json::Value;
use slipway_tests::fleet::{ok, Fleet};
use slipway_tests::host::{free_port, wait_until};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::load::{Load, LoadReport};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

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
    let delete: usize = env_or("SLIPWAY_BENCH_DELETE", "0").parse().unwrap();
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
    let mut loads: Vec<Option<Load>> = f
        .hosts
        .iter()
        .map(|h| Some(Load::start(h.addr(listen), 1)))
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    let start = Instant::now();
    ok(f.slipway(0, &["release", app, "--image", &v2.image_ref()]));
    // Terminated VMs: the first host of each of the last `delete` waves (the first wave
    // has started, so they are in the plan).
    let mut deleted = Vec::new();
    if delete > 0 {
        let plan = f.wait_rollout(app, Duration::from_secs(30), |r| r["started"] == 1);
        let waves = plan["waves"].as_array().cloned().unwrap_or_default();
        for w in waves.iter().skip(1).rev().take(delete) {
            let id = w[0].as_str().unwrap().to_string();
            let i = f.hosts.iter().position(|h| h.id == id).unwrap();
            loads[i].take().map(Load::finish);
            let h = f.host_mut(&id);
            h.kill_agent();
            h.unplug();
            deleted.push(i);
        }
        println!(
            "deleted {} host(s) mid-rollout: {:?}",
            deleted.len(),
            deleted.iter().map(|i| &f.hosts[*i].id).collect::<Vec<_>>()
        );
    }
    let mut first_v2: Vec<Option<Duration>> = vec![None; f.hosts.len()];
    wait_until(Duration::from_secs(600), || {
        for (i, h) in f.hosts.iter().enumerate() {
            if first_v2[i].is_none() && !deleted.contains(&i) && h.body(listen) == "fleet v2" {
                first_v2[i] = Some(start.elapsed());
            }
        }
        (0..first_v2.len()).all(|i| first_v2[i].is_some() || deleted.contains(&i))
    })
    .expect("v2 everywhere");
    let r = f.wait_rollout(app, Duration::from_secs(180), |r| {
        r["state"] == "done" || r["state"] == "halted"
    });
    let wall = start.elapsed();
    assert_eq!(r["state"], "done", "the rollout halted: {r}");
    if !deleted.is_empty() {
        println!("left out: {}", r["left_out"]);
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut total = LoadReport::default();
    for l in loads.into_iter().flatten() {
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
    let live_hosts = hosts - deleted.len();
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
        rss_agents as f64 / 1024.0 / live_hosts as f64,
        rss_proxies as f64 / 1024.0,
        rss_proxies as f64 / 1024.0 / live_hosts as f64
    );
    let seq = r["seq"].as_u64().expect("rollout seq");
    wave_breakdown(&f, app, seq, pause);
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

/// The phases an agent reports, in order.
const PHASES: [&str; 5] = ["pulling", "starting", "health-checking", "baking", "live"];

/// Prints, per wave of release `seq`, the mean and max of each step across the wave's hosts,
/// from the controller's event log (controller clock, ms resolution).
fn wave_breakdown(f: &Fleet, app: &str, seq: u64, pause: Duration) {
    let out = f.slipway(0, &["--json", "events", "--app", app]);
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["detail"]["seq"].as_u64() == Some(seq))
        .collect();
    let at = |e: &Value| humantime::parse_rfc3339(e["at"].as_str().unwrap_or_default()).ok();
    let mut waves: Vec<(SystemTime, Vec<String>)> = Vec::new();
    let mut first: BTreeMap<(String, String), SystemTime> = BTreeMap::new();
    for e in &events {
        let Some(t) = at(e) else { continue };
        match e["kind"].as_str() {
            Some("wave.started") => {
                let hosts = e["detail"]["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect();
                waves.push((t, hosts));
            }
            Some("host.phase") => {
                let (Some(h), Some(p)) =
                    (e["detail"]["host"].as_str(), e["detail"]["phase"].as_str())
                else {
                    continue;
                };
                first.entry((h.to_string(), p.to_string())).or_insert(t);
            }
            _ => {}
        }
    }
    if waves.is_empty() {
        println!("no wave.started events for seq {seq}: no breakdown");
        return;
    }
    let ms =
        |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default().as_secs_f64() * 1e3;
    println!("--- where each wave's time went (ms, mean / max over the wave's hosts)");
    println!(
        "{:<5} {:>5} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "wave",
        "hosts",
        "to pulling",
        "pull",
        "start",
        "health+switch",
        "bake+drain",
        "to next wave"
    );
    for (i, (t0, hosts)) in waves.iter().enumerate() {
        let mut steps: Vec<Vec<f64>> = vec![Vec::new(); PHASES.len()];
        let mut last_live = *t0;
        for h in hosts {
            let mut prev = *t0;
            for (k, p) in PHASES.iter().enumerate() {
                if let Some(t) = first.get(&(h.clone(), p.to_string())) {
                    steps[k].push(ms(prev, *t));
                    prev = *t;
                }
            }
            if let Some(t) = first.get(&(h.clone(), "live".to_string())) {
                last_live = last_live.max(*t);
            }
        }
        let cell = |v: &[f64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let max = v.iter().cloned().fold(0.0, f64::max);
                format!("{mean:.0} / {max:.0}")
            }
        };
        let next = waves
            .get(i + 1)
            .map(|(t, _)| format!("{:.0}", ms(last_live, *t)))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<5} {:>5} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}",
            i + 1,
            hosts.len(),
            cell(&steps[0]),
            cell(&steps[1]),
            cell(&steps[2]),
            cell(&steps[3]),
            cell(&steps[4]),
            next
        );
    }
    println!(
        "(\"to next wave\" includes the configured pause of {} ms)",
        pause.as_millis()
    );
}
