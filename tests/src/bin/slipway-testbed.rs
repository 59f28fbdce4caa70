//! `slipway-testbed`: a fleet on this one machine, to try rollouts by hand. Every host is a
//! network namespace of its own on a test LAN (own address, proxy, agent, state dir and runc
//! root), against one controller on SQLite or two on a private PostgreSQL. It pushes two
//! demo images, prints how to drive the fleet with `slipway`, and runs until Ctrl-C, then
//! removes everything it made. Run as root; `deploy/testbed` builds and starts it.

use slipway_tests::fleet::Fleet;
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::postgres::Postgres;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const USAGE: &str = "usage: slipway-testbed [--hosts N] [--controllers 1|2] [--labels TOML]
  Starts a fleet of N hosts (default 4), each in its own network namespace, and 1 controller
  (SQLite) or 2 (sharing a private PostgreSQL); pushes two demo images; prints how to use it;
  runs until Ctrl-C (or SIGTERM), then removes everything it made.
  --labels  host labels as a TOML inline table (default { env = \"demo\" })";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Args {
    hosts: usize,
    controllers: usize,
    labels: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        hosts: 4,
        controllers: 1,
        labels: "{ env = \"demo\" }".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--hosts" => a.hosts = value()?.parse().map_err(|e| format!("--hosts: {e}"))?,
            "--controllers" => {
                a.controllers = value()?
                    .parse()
                    .map_err(|e| format!("--controllers: {e}"))?
            }
            "--labels" => a.labels = value()?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(1..=2).contains(&a.controllers) {
        return Err("--controllers must be 1 or 2".into());
    }
    if !(1..=240).contains(&a.hosts) {
        return Err("--hosts must be between 1 and 240".into());
    }
    Ok(a)
}

fn main() -> std::process::ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let pg = (args.controllers == 2).then(|| Postgres::start().expect("starting PostgreSQL"));
    let extra = match &pg {
        Some(pg) => format!(
            "database_url = \"{}\"\n",
            pg.create_database("testbed")
                .expect("creating the database")
        ),
        None => String::new(),
    };
    let mut f = Fleet::start(args.controllers, &extra);
    // Hosts spread over the controllers, as agents behind a load balancer would be.
    for i in 0..args.hosts {
        let insecure = [f.registry.addr().to_string()];
        let insecure: Vec<&str> = insecure.iter().map(String::as_str).collect();
        f.add_hosts_with(
            "host",
            i..i + 1,
            &args.labels,
            i % args.controllers,
            &insecure,
        );
    }
    f.wait_registered();
    let v1 = busybox_httpd_image("demo v1\n")
        .push(f.registry.addr(), "demo", "v1")
        .expect("pushing demo v1");
    busybox_httpd_image("demo v2\n")
        .push(f.registry.addr(), "demo", "v2")
        .expect("pushing demo v2");
    let spec = f.dir.path().join("demo.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"demo\"\nimage = \"{}\"\nlisten = 8080\ncontainer_port = 80\n\n\
             [rollout]\nselector = {}\ncanary = 1\nbatch_size = \"50%\"\npause = \"5s\"\n",
            v1.repository, args.labels
        ),
    )
    .expect("writing demo.toml");

    println!(
        "Slipway test bed: {} host(s), {} controller(s)",
        args.hosts, args.controllers
    );
    for (i, c) in f.controllers.iter().enumerate() {
        println!(
            "  controller {i}: {} (log {})",
            c.url,
            c.log_path().display()
        );
    }
    println!("  registry:     {}", f.registry.addr());
    for h in &f.hosts {
        println!("  {}: {}  (logs in {})", h.id, h.ip, h.dir.path().display());
    }
    let cli = slipway_tests::bins::bin("slipway");
    let cli = cli.display();
    println!("\nTry:");
    println!(
        "  export SLIPWAY_URL={} SLIPWAY_TOKEN={}",
        f.controllers[0].url, f.admin
    );
    println!("  {cli} app apply -f {}", spec.display());
    println!("  {cli} release demo --image {}:v1", v1.repository);
    println!("  curl http://{}:8080/", f.hosts[0].ip);
    println!("  {cli} release demo --image {}:v2", v1.repository);
    println!("  {cli} rollout demo");
    println!("\nCtrl-C stops it and removes every host, namespace and container.");
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("stopping: removing the hosts ...");
    drop(f);
    drop(pg);
    std::process::ExitCode::SUCCESS
}
