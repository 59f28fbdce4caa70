//! Benchmark for issue 4 (run by `deploy/bench/start.sh`): time from "image unpacked" to
//! "process answering on its port" through `Runtime::start`, against a plain `runc run` of a
//! hand-made bundle whose rootfs and netns are prepared in advance; then the RSS of this
//! process (the runtime as the agent embeds it) while it supervises N containers.
//!
//! Usage: bench_start [ROUNDS] [CONTAINERS]   (root; busybox-static, runc, CNI plugins)

use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, Spec};
use slipway_proto::{AppSpec, Digest, Release};
use slipway_runtime::{CniConfig, ContainerSpec, Runtime, RuntimeConfig};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const BRIDGE: &str = "swbench0";
const SUBNET: &str = "10.213.250.0/24";
const PAGE: &str = "bench page";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let many: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let tmp = tempfile::Builder::new()
        .prefix("slipway-bench-")
        .tempdir()
        .unwrap();
    let layers = layers(tmp.path());
    let cfg = RuntimeConfig {
        state_dir: tmp.path().join("containers"),
        runc_root: tmp.path().join("runc"),
        runc: "runc".into(),
        cni: CniConfig {
            bridge: BRIDGE.into(),
            subnet: SUBNET.into(),
            ..CniConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(cfg.clone()).unwrap();
    let image = ImageConfigurationBuilder::default()
        .config(
            ConfigBuilder::default()
                .cmd(
                    ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();

    // Warm-up: page cache, bridge creation.
    let r = release(0);
    let info = start(&rt, &r, &image, &layers).await;
    wait_answer(info).await;
    rt.discard(&r.container_id().unwrap(), Duration::ZERO)
        .await
        .unwrap();

    // Interleaved rounds, so load from elsewhere hits all three alike.
    let plain = Plain::new(tmp.path(), &layers);
    plain.prepared(0).await; // warm-up
    plain.with_net(0).await;
    let (mut ours, mut bare, mut by_hand) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=rounds {
        let r = release(i as u64);
        let t = Instant::now();
        let addr = start(&rt, &r, &image, &layers).await;
        wait_answer(addr).await;
        ours.push(t.elapsed());
        rt.discard(&r.container_id().unwrap(), Duration::ZERO)
            .await
            .unwrap();
        bare.push(plain.prepared(i).await);
        by_hand.push(plain.with_net(i).await);
    }
    plain.unwire(&plain.prepared.0);

    // RSS while supervising `many` containers.
    let rss_idle = rss_kb();
    let mut ids = Vec::new();
    for i in 0..many {
        let r = release(1000 + i as u64);
        let addr = start(&rt, &r, &image, &layers).await;
        wait_answer(addr).await;
        ids.push(r.container_id().unwrap());
    }
    let rss_many = rss_kb();
    let t = Instant::now();
    let listed = rt.list().await.unwrap().len();
    let list_ms = t.elapsed().as_secs_f64() * 1e3;
    for id in &ids {
        rt.discard(id, Duration::ZERO).await.unwrap();
    }
    let _ = Command::new("ip").args(["link", "delete", BRIDGE]).status();
    let table = slipway_runtime::nat::table_name(BRIDGE);
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .status();

    let (o, p, n) = (stats(&ours), stats(&bare), stats(&by_hand));
    println!("start to answering, {rounds} rounds (ms): median / p90 / min");
    println!(
        "  slipway Runtime::start (overlay+netns+CNI+bundle+create+start): {:.1} / {:.1} / {:.1}",
        o.0, o.1, o.2
    );
    println!(
        "  plain runc run -d (rootfs+netns prepared, not timed):           {:.1} / {:.1} / {:.1}",
        p.0, p.1, p.2
    );
    println!(
        "  ip netns add + CNI bridge ADD + runc run -d (by hand, timed):    {:.1} / {:.1} / {:.1}",
        n.0, n.1, n.2
    );
    println!("  runtime overhead per start (median): {:.1} ms over the same work by hand, {:.1} ms over runc run alone", o.0 - n.0, o.0 - p.0);
    println!("RSS of the runtime process: {} KiB idle, {} KiB supervising {listed} containers (list took {list_ms:.0} ms)", rss_idle, rss_many);
}

fn release(seq: u64) -> Release {
    let spec = AppSpec::from_toml(
        "name = \"bench\"\nimage = \"registry.test/bench\"\nlisten = 8080\ncontainer_port = 80\n",
    )
    .unwrap();
    let digest = Digest::of(format!("bench-{}-{seq}", std::process::id()).as_bytes());
    Release {
        app: "bench".parse().unwrap(),
        seq,
        image: format!("registry.test/bench@{digest}"),
        spec,
        issued_at: SystemTime::now(),
        expires: SystemTime::now() + Duration::from_secs(3600),
        key_set_version: 1,
        annotations: Default::default(),
    }
}

async fn start(
    rt: &Runtime,
    r: &Release,
    image: &oci_spec::image::ImageConfiguration,
    layers: &[PathBuf],
) -> IpAddr {
    rt.start(ContainerSpec {
        id: r.container_id().unwrap(),
        release: r,
        image_config: image,
        layer_dirs: layers,
        secrets: None,
    })
    .await
    .unwrap()
    .address
}

fn layers(root: &Path) -> Vec<PathBuf> {
    let (base, top) = (root.join("layers/base"), root.join("layers/top"));
    std::fs::create_dir_all(base.join("bin")).unwrap();
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::create_dir_all(top.join("www")).unwrap();
    std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", base.join("bin/sh")).unwrap();
    std::fs::write(base.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(top.join("www/index.html"), PAGE).unwrap();
    vec![base, top]
}

async fn wait_answer(addr: IpAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(addr).is_ok_and(|b| b.contains(PAGE)) {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} never answered");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn get(addr: IpAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(addr, 80), Duration::from_millis(200))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `runc run -d` of a bundle made by hand from `runc spec` (rootfs: a merged copy of the
/// layers; process: the same httpd).
struct Plain {
    bundle: PathBuf,
    runc_root: PathBuf,
    ipam: PathBuf,
    /// A netns wired in advance, for the "runc run alone" variant.
    prepared: (String, IpAddr),
}

impl Plain {
    fn new(root: &Path, layers: &[PathBuf]) -> Plain {
        let bundle = root.join("plain");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        for l in layers {
            let src = format!("{}/.", l.display());
            assert!(Command::new("cp")
                .arg("-a")
                .arg(src)
                .arg(&rootfs)
                .status()
                .unwrap()
                .success());
        }
        assert!(Command::new("runc")
            .arg("spec")
            .current_dir(&bundle)
            .status()
            .unwrap()
            .success());
        let mut spec = Spec::load(bundle.join("config.json")).unwrap();
        let mut process = spec.process().clone().unwrap();
        process.set_terminal(Some(false));
        process.set_args(Some(
            ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
                .map(String::from)
                .to_vec(),
        ));
        spec.set_process(Some(process));
        spec.save(bundle.join("config.json")).unwrap();
        let mut p = Plain {
            bundle,
            runc_root: root.join("runc-plain"),
            ipam: root.join("ipam-plain"),
            prepared: (String::new(), IpAddr::from([0, 0, 0, 0])),
        };
        let ns = format!("slipway-bench-plain-{}", std::process::id());
        let addr = p.wire(&ns);
        p.prepared = (ns, addr);
        p
    }

    /// ip netns add + CNI bridge ADD, by hand.
    fn wire(&self, ns: &str) -> IpAddr {
        assert!(Command::new("ip")
            .args(["netns", "add", ns])
            .status()
            .unwrap()
            .success());
        let result: serde_json::Value = serde_json::from_str(&self.cni("ADD", ns)).unwrap();
        slipway_runtime::network::address(&result).unwrap()
    }

    fn unwire(&self, ns: &str) {
        self.cni("DEL", ns);
        let _ = Command::new("ip").args(["netns", "delete", ns]).status();
    }

    fn cni(&self, cmd: &str, ns: &str) -> String {
        let netconf = format!(
            r#"{{"cniVersion":"1.0.0","name":"benchplain","type":"bridge","bridge":"{BRIDGE}","isGateway":true,"ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{SUBNET}","rangeStart":"10.213.250.200","rangeEnd":"10.213.250.250"}}]]}}}}"#,
            self.ipam.display()
        );
        let mut c = Command::new("/usr/lib/cni/bridge")
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", ns)
            .env("CNI_NETNS", format!("/run/netns/{ns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(netconf.as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn set_netns(&self, ns: &str) {
        let mut spec = Spec::load(self.bundle.join("config.json")).unwrap();
        let mut linux = spec.linux().clone().unwrap();
        let mut nss = linux.namespaces().clone().unwrap();
        nss.retain(|n| n.typ() != LinuxNamespaceType::Network);
        nss.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(format!("/run/netns/{ns}"))
                .build()
                .unwrap(),
        );
        linux.set_namespaces(Some(nss));
        spec.set_linux(Some(linux));
        spec.save(self.bundle.join("config.json")).unwrap();
    }

    fn run(&self, id: &str) {
        let ok = Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["run", "-d", "--bundle"])
            .arg(&self.bundle)
            .arg(id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "runc run failed");
    }

    fn delete(&self, id: &str) {
        Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["delete", "--force", id])
            .status()
            .unwrap();
    }

    /// `runc run -d` -> answering, netns and address made in advance.
    async fn prepared(&self, i: usize) -> Duration {
        let id = format!("plain-{i}");
        self.set_netns(&self.prepared.0);
        let t = Instant::now();
        self.run(&id);
        wait_answer(self.prepared.1).await;
        let d = t.elapsed();
        self.delete(&id);
        d
    }

    /// ip netns add + CNI ADD + `runc run -d` -> answering.
    async fn with_net(&self, i: usize) -> Duration {
        let id = format!("plainnet-{i}");
        let ns = format!("slipway-bench-pn-{}-{i}", std::process::id());
        self.set_netns(&ns);
        let t = Instant::now();
        let addr = self.wire(&ns);
        self.run(&id);
        wait_answer(addr).await;
        let d = t.elapsed();
        self.delete(&id);
        self.unwire(&ns);
        d
    }
}

fn stats(v: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), ms[0])
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
