//! A private PostgreSQL cluster for tests: `initdb` into a temp dir owned by user `postgres`
//! (initdb refuses root), `postgres` listening on 127.0.0.1 only, on a free port, with its
//! unix socket in the temp dir. Trust authentication: nothing but loopback reaches it.
//! Stopped (immediate) and removed on drop. It never touches the distribution's own cluster.
//!
//! The binaries come from `$SLIPWAY_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package, installed by `deploy/install-deps`).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian installs the server binaries, one directory per major version.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// The OS user the cluster runs as when the tests run as root.
const PG_USER: &str = "postgres";
/// Tries with a fresh port when another process took the one picked meanwhile.
const START_ATTEMPTS: usize = 3;
/// Connections: two controllers' pools, lead and listener connections, and test clients.
const MAX_CONNECTIONS: u32 = 200;

/// A running private cluster.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    dir: tempfile::TempDir,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `psql`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("SLIPWAY_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_PG_ROOT)
        .with_context(|| {
            format!("{DEBIAN_PG_ROOT}: is PostgreSQL installed (deploy/install-deps)?")
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no {DEBIAN_PG_ROOT}/*/bin/initdb: is PostgreSQL installed?"),
    }
}

impl Postgres {
    /// Creates and starts a fresh cluster.
    pub fn start() -> anyhow::Result<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("slipway-pg-")
            .tempdir()
            .context("creating the cluster's temp dir")?;
        let data = dir.path().join("data");
        let mut pg = Postgres {
            port: 0,
            bin,
            data,
            dir,
        };
        if is_root() {
            let out = Command::new("chown")
                .args([&format!("{PG_USER}:{PG_USER}")])
                .arg(pg.dir.path())
                .output()
                .context("chown")?;
            check("chown of the cluster dir", out)?;
        }
        let out = pg
            .as_pg(&pg.bin.join("initdb"))
            .arg("-D")
            .arg(&pg.data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        check("initdb", out)?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            pg.port = crate::host::free_port();
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={MAX_CONNECTIONS} \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                pg.port,
                pg.dir.path().display()
            );
            let out = pg
                .as_pg(&pg.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&pg.data)
                .arg("-l")
                .arg(pg.log_path())
                .args(["-o", &opts, "-w", "-t", "60", "start"])
                .output()
                .context("running pg_ctl start")?;
            match check("pg_ctl start", out) {
                Ok(_) => return Ok(pg),
                Err(e) => last = Some(e.context(pg.log_tail(20))),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// A command run as the cluster's owner, from the cluster's dir.
    fn as_pg(&self, program: &Path) -> Command {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_USER, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(self.dir.path()).env("LC_ALL", "C");
        c
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// URL of database `db` (connecting over TCP to 127.0.0.1 as `postgres`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL in database `db` with psql; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .context("running psql")?;
        check(&format!("psql `{sql}`"), out)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(name))
    }
}

fn check(what: &str, out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        // The temp dir (owned by postgres; we may be root) goes with `self.dir`.
    }
}
