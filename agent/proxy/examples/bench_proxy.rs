//! Minimal stand-in for `slipway-agent proxy` for benchmarks (deploy/bench/proxy.sh) when the
//! agent binary is not at hand: same runtime (`#[tokio::main]`, TOKIO_WORKER_THREADS honoured)
//! and same flags; SIGUSR2 starts a successor that takes the sockets over. Usage:
//! bench_proxy [proxy] --control-socket S --state F --bind IP [--http-workers N]
//! [--metrics-listen ADDR]

use std::path::PathBuf;

use slipway_proxy::{defaults, EdgeConfig, ProxyConfig};

#[tokio::main]
async fn main() {
    let mut cfg = ProxyConfig {
        control_socket: defaults::CONTROL_SOCKET.into(),
        state_file: defaults::STATE_FILE.into(),
        bind: defaults::BIND.parse().expect("default bind address parses"),
        metrics_listen: None,
        http_workers: 0,
        edge: EdgeConfig::default(),
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "proxy");
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--control-socket" => cfg.control_socket = PathBuf::from(value),
            "--state" => cfg.state_file = PathBuf::from(value),
            "--bind" => cfg.bind = value.parse().expect("--bind takes an IP address"),
            "--http-workers" => {
                cfg.http_workers = value.parse().expect("--http-workers takes a count")
            }
            "--http-port" => cfg.edge.http_port = value.parse().expect("--http-port takes a port"),
            "--https-port" => {
                cfg.edge.https_port = value.parse().expect("--https-port takes a port")
            }
            "--metrics-listen" => {
                cfg.metrics_listen = Some(value.parse().expect("--metrics-listen takes ip:port"))
            }
            _ => panic!("unknown flag {flag}"),
        }
    }
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
        let mut usr2 = signal(SignalKind::user_defined2()).expect("SIGUSR2 handler installs");
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                // As `slipway-agent proxy`: a successor with the same command line takes
                // the sockets over, and this one drains and exits by itself.
                _ = usr2.recv() => {
                    let mut argv = std::env::args_os();
                    if let Some(program) = argv.next() {
                        if let Err(e) = std::process::Command::new(program).args(argv).spawn() {
                            eprintln!("bench_proxy: SIGUSR2: cannot start a successor: {e}");
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = slipway_proxy::serve(cfg, shutdown).await {
        eprintln!("bench_proxy: {e}");
        std::process::exit(1);
    }
}
