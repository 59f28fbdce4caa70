//! A real headless browser for tests of the controller's dashboard: Debian's `chromium`,
//! driven over the Chrome DevTools Protocol (one websocket, one page). Its profile lives in a
//! temp dir; the process is killed on drop.

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// The Debian package's binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// One DevTools command never takes longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium --headless` on a fresh profile and opens one blank page.
    pub fn start() -> anyhow::Result<Browser> {
        if !Path::new(CHROMIUM).exists() {
            bail!("{CHROMIUM} is missing: run deploy/install-deps (Debian package `chromium`)");
        }
        let profile = tempfile::Builder::new()
            .prefix("slipway-chromium-")
            .tempdir()?;
        let log = std::fs::File::create(profile.path().join("chromium.log"))?;
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox", // tests run as root, where chromium's sandbox refuses to start
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--window-size=1280,1400",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting chromium")?;
        // Chromium writes the port it picked, then the browser's websocket path.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(p), Some(path)) = (lines.next(), lines.next()) {
                    break (p.trim().parse::<u16>()?, path.trim().to_string());
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(profile.path().join("chromium.log"))
                    .unwrap_or_default();
                bail!("chromium did not open its DevTools port in 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(CALL_TIMEOUT))?;
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), tcp)
            .map_err(|e| anyhow!("DevTools websocket: {e}"))?;
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = b.browser_call("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"].as_str().context("targetId")?.to_string();
        let attached = b.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        b.session = attached["sessionId"]
            .as_str()
            .context("sessionId")?
            .to_string();
        b.call("Page.enable", json!({}))?;
        b.call("Runtime.enable", json!({}))?;
        Ok(b)
    }

    fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<String>,
    ) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(Message::text(msg.to_string()))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                bail!("DevTools {method}: no answer in {CALL_TIMEOUT:?}");
            }
            let Message::Text(text) = self.ws.read()? else {
                continue;
            };
            let v: Value = serde_json::from_str(&text)?;
            // Events (no id) are not needed: pages are polled through `eval`.
            if v["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(err) = v.get("error") {
                bail!("DevTools {method}: {err}");
            }
            return Ok(v["result"].clone());
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.send(method, params, None)
    }

    /// A DevTools command on the page.
    pub fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let session = self.session.clone();
        self.send(method, params, Some(session))
    }

    /// Loads `url` and waits until its document has loaded.
    pub fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        let r = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(e) = r.get("errorText") {
            bail!("loading {url}: {e}");
        }
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(15),
        )
    }

    /// Evaluates a JavaScript expression in the page (promises awaited); its JSON value.
    pub fn eval(&mut self, js: &str) -> anyhow::Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("`{js}` threw: {ex}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until the expression is true in the page (a navigation in between is fine).
    pub fn wait_for(&mut self, js: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Value::Bool(true)) = self.eval(&format!("!!({js})")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let url = self.url().unwrap_or_default();
                let body = self
                    .eval("document.body ? document.body.innerText : ''")
                    .unwrap_or_default();
                bail!("`{js}` not true within {timeout:?} at {url}; page text:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The page's current address.
    pub fn url(&mut self) -> anyhow::Result<String> {
        Ok(self
            .eval("window.location.href")?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Saves a PNG of the page (its whole height) at `path`, creating its directory.
    pub fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().context("screenshot data")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/test-artifacts/NAME` of the target dir this test runs from.
pub fn artifact(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/test-artifacts
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let target = dir.parent().expect("target dir");
    target.join("test-artifacts").join(name)
}
