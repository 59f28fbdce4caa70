//! Health checks against a container: HTTP (2xx on a path), TCP connect, or exec inside it.

use crate::parts::Parts;
use slipway_proto::spec::{HealthKind, HealthSpec};
use slipway_proto::ContainerId;
use slipway_runtime::Runtime;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One probe's result: healthy or not, and what it said (shown when a deploy fails).
#[derive(Debug, Clone)]
pub struct Probe {
    pub healthy: bool,
    pub output: String,
}

/// What to probe.
pub struct Target<'a> {
    pub container_id: &'a str,
    pub addr: SocketAddr,
    pub runtime: &'a Runtime,
}

/// A boxed, `Send` probe future (boxing keeps the per-app task's future `Send`).
pub type ProbeFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Probe> + Send + 'a>>;

/// Runs one probe of `spec` against `target`, bounded by the spec's timeout.
pub fn probe<'a>(spec: &'a HealthSpec, target: &'a Target<'a>) -> ProbeFuture<'a> {
    Box::pin(probe_inner(spec, target))
}

async fn probe_inner(spec: &HealthSpec, target: &Target<'_>) -> Probe {
    let fut = async {
        match spec.kind {
            HealthKind::Http => http(target.addr, &spec.path).await,
            HealthKind::Tcp => TcpStream::connect(target.addr)
                .await
                .map(|_| Probe {
                    healthy: true,
                    output: format!("connected to {}", target.addr),
                })
                .unwrap_or_else(|e| Probe {
                    healthy: false,
                    output: format!("connect {}: {e}", target.addr),
                }),
            HealthKind::Exec => match target
                .runtime
                .exec(target.container_id, &spec.command, spec.timeout)
                .await
            {
                Ok(out) => Probe {
                    healthy: out.code == 0,
                    output: format!(
                        "exit {}: {}{}",
                        out.code,
                        tail(&out.stdout),
                        tail(&out.stderr)
                    ),
                },
                Err(e) => Probe {
                    healthy: false,
                    output: format!("exec {:?}: {e}", spec.command),
                },
            },
        }
    };
    match tokio::time::timeout(spec.timeout, fut).await {
        Ok(p) => p,
        Err(_) => Probe {
            healthy: false,
            output: format!(
                "no answer within {}",
                humantime::format_duration(spec.timeout)
            ),
        },
    }
}

/// Why a container is not running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliveError {
    #[error("container {id} is {status:?}{}", exit_code.map(|e| format!(" (exit code {e})")).unwrap_or_default())]
    NotRunning {
        id: ContainerId,
        status: slipway_runtime::ContainerStatus,
        exit_code: Option<i32>,
    },
    #[error("container {id} is gone")]
    Gone { id: ContainerId },
}

/// Why a container did not become healthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    #[error("{source}; last health check: {last}")]
    Died { source: AliveError, last: String },
    #[error("not healthy within {}; last health check: {last}", humantime::format_duration(*deadline))]
    Deadline { deadline: Duration, last: String },
}

/// Ok while the container runs; otherwise why not (stopped with its exit code, or gone).
pub async fn check_alive(parts: &dyn Parts, id: &ContainerId) -> Result<(), AliveError> {
    // While the process lives, the task that reaps it answers without a runc process; the
    // runtime is asked (for the status and exit code to report) otherwise.
    if parts.process_alive(id) == Some(true) {
        return Ok(());
    }
    match parts.container(id).await {
        Ok(found) => match found {
            Some(c) if c.status == slipway_runtime::ContainerStatus::Running => Ok(()),
            Some(c) => Err(AliveError::NotRunning {
                id: id.clone(),
                status: c.status,
                exit_code: c.exit_code,
            }),
            None => Err(AliveError::Gone { id: id.clone() }),
        },
        // Cannot tell; do not fail a deploy on a transient runtime error.
        Err(_) => Ok(()),
    }
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim();
    let start = s.len().saturating_sub(200);
    let start = (start..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

async fn http(addr: SocketAddr, path: &str) -> Probe {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return Probe {
                healthy: false,
                output: format!("GET http://{addr}{path}: connect: {e}"),
            }
        }
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: slipway-health\r\nConnection: close\r\n\r\n");
    if let Err(e) = stream.write_all(req.as_bytes()).await {
        return Probe {
            healthy: false,
            output: format!("GET http://{addr}{path}: {e}"),
        };
    }
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        match stream.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if buf[..n].windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            Err(e) => {
                return Probe {
                    healthy: false,
                    output: format!("GET http://{addr}{path}: {e}"),
                }
            }
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let status_line = head.lines().next().unwrap_or("").to_string();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Probe {
        healthy: (200..300).contains(&code),
        output: if status_line.is_empty() {
            format!("GET http://{addr}{path}: empty answer")
        } else {
            format!("GET http://{addr}{path}: {status_line}")
        },
    }
}

/// Probes until `healthy_threshold` successes in a row (Ok: how long it took) or the deadline
/// (Err with the last probe's output). The first probe goes out at once, the next ones soon
/// after until one is healthy; a container that died fails at once, with its exit code.
pub async fn wait_healthy(
    parts: &dyn Parts,
    spec: &HealthSpec,
    id: &ContainerId,
    addr: SocketAddr,
) -> Result<Duration, HealthError> {
    let start = tokio::time::Instant::now();
    let deadline = start + spec.deadline;
    let mut streak = 0;
    let mut last;
    // Until the first healthy answer, retry sooner than `interval` (doubling up to it): an
    // app is usually listening a few milliseconds after its start.
    let mut retry = Some(crate::defaults::FIRST_PROBE_RETRY);
    loop {
        let p = parts.probe(spec, id, addr).await;
        if p.healthy {
            retry = None;
            streak += 1;
            if streak >= spec.healthy_threshold {
                return Ok(start.elapsed());
            }
        } else {
            streak = 0;
        }
        last = p.output;
        if let Err(source) = check_alive(parts, id).await {
            return Err(HealthError::Died { source, last });
        }
        let pause = retry.map_or(spec.interval, |r| r.min(spec.interval));
        retry = retry.map(|r| r * 2);
        if tokio::time::Instant::now() + pause > deadline {
            return Err(HealthError::Deadline {
                deadline: spec.deadline,
                last,
            });
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_probe_reads_status() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for code in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let p = http(addr, "/").await;
        assert!(p.healthy, "{}", p.output);
        let p = http(addr, "/").await;
        assert!(!p.healthy);
        assert!(p.output.contains("503"), "{}", p.output);
    }
}
