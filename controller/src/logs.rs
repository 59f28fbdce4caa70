//! Remote logs: the relay between operators reading an app's output and the agents that
//! hold it. Agents open no port: each keeps a log long-poll open to its controller
//! (`GET /v1/hosts/{host}/log-requests`), which [`LogRelay::request`] wakes with a request;
//! the agent answers by streaming the lines up (`POST /v1/hosts/{host}/logs/{id}`), and the
//! controller relays them, tagged with the host, to the reader's streaming response.
//!
//! Memory is bounded: each reader has one channel of [`defaults::LOG_BUFFER_FRAMES`] frames
//! that every upload for it feeds; a full channel stops reading the uploads (TCP
//! back-pressure reaches the agents). A reader gone closes the channel, which ends the
//! uploads. State is per controller process: with several controllers, a host's logs are
//! reachable through the replica its agent polls.

use crate::defaults;
use slipway_proto::api::logs::{LogFrame, LogRequest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

/// Where the frames of one reader go.
pub type FrameSender = mpsc::Sender<LogFrame>;

/// Log requests waiting for agents, and the uploads they are expected to start.
#[derive(Default)]
pub struct LogRelay {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    hosts: HashMap<String, HostQueue>,
    pending: HashMap<String, Pending>,
}

/// One host's side of the relay.
#[derive(Default)]
struct HostQueue {
    /// Requests the agent has not picked up yet.
    queued: Vec<LogRequest>,
    /// Wakes the host's log long-poll.
    wake: Arc<Notify>,
    /// Log long-polls open now.
    polling: usize,
    /// When the last log long-poll ended.
    last_poll: Option<Instant>,
}

impl HostQueue {
    fn listening(&self) -> bool {
        self.polling > 0
            || self
                .last_poll
                .is_some_and(|t| t.elapsed() <= defaults::LOG_POLL_GRACE)
    }
}

/// A request handed to an agent whose upload has not started yet.
struct Pending {
    host: String,
    follow: bool,
    frames: FrameSender,
    started: oneshot::Sender<()>,
}

/// What the upload handler gets when an agent starts the upload of a request.
pub struct Upload {
    pub frames: FrameSender,
    pub follow: bool,
}

/// Why a request was not handed to a host.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The host's agent has no log long-poll open to this controller.
    NotListening,
    /// The host already has [`defaults::LOG_REQUESTS_PER_HOST`] requests in flight.
    Busy,
}

impl LogRelay {
    /// Whether `host`'s agent is listening for log requests here (polling, or between polls).
    pub fn listening(&self, host: &str) -> bool {
        let inner = self.inner.lock().unwrap();
        inner.hosts.get(host).is_some_and(HostQueue::listening)
    }

    /// Hands `req` to `host`'s agent. The receiver fires when the agent starts the upload;
    /// until then [`LogRelay::withdraw`] takes the request back.
    pub fn request(
        &self,
        host: &str,
        req: LogRequest,
        frames: FrameSender,
    ) -> Result<oneshot::Receiver<()>, RequestError> {
        let mut inner = self.inner.lock().unwrap();
        let in_flight = inner.pending.values().filter(|p| p.host == host).count();
        if !inner.hosts.get(host).is_some_and(HostQueue::listening) {
            return Err(RequestError::NotListening);
        }
        if in_flight >= defaults::LOG_REQUESTS_PER_HOST {
            return Err(RequestError::Busy);
        }
        let (started, rx) = oneshot::channel();
        inner.pending.insert(
            req.id.clone(),
            Pending {
                host: host.to_string(),
                follow: req.follow,
                frames,
                started,
            },
        );
        let q = inner.hosts.entry(host.to_string()).or_default();
        q.queued.push(req);
        q.wake.notify_one();
        Ok(rx)
    }

    /// Takes back a request whose upload has not started; false when it has (or is gone).
    pub fn withdraw(&self, id: &str) -> bool {
        let mut inner = self.inner.lock().unwrap();
        let Some(p) = inner.pending.remove(id) else {
            return false;
        };
        if let Some(q) = inner.hosts.get_mut(&p.host) {
            q.queued.retain(|r| r.id != id);
        }
        true
    }

    /// The agent of `host` starts uploading request `id`: where its frames go. `None` when
    /// there is no such request for that host (withdrawn, or another host's).
    pub fn start_upload(&self, host: &str, id: &str) -> Option<Upload> {
        let mut inner = self.inner.lock().unwrap();
        if inner.pending.get(id).is_none_or(|p| p.host != host) {
            return None;
        }
        let p = inner.pending.remove(id)?;
        let _ = p.started.send(());
        Some(Upload {
            frames: p.frames,
            follow: p.follow,
        })
    }

    /// A log long-poll of `host` begins: the guard counts it until dropped.
    pub fn poll(self: &Arc<Self>, host: &str) -> PollGuard {
        let wake = {
            let mut inner = self.inner.lock().unwrap();
            let q = inner.hosts.entry(host.to_string()).or_default();
            q.polling += 1;
            q.wake.clone()
        };
        PollGuard {
            relay: self.clone(),
            host: host.to_string(),
            wake,
        }
    }

    /// The requests waiting for `host`, taken.
    fn take(&self, host: &str) -> Vec<LogRequest> {
        let mut inner = self.inner.lock().unwrap();
        inner
            .hosts
            .get_mut(host)
            .map(|q| std::mem::take(&mut q.queued))
            .unwrap_or_default()
    }
}

/// One open log long-poll.
pub struct PollGuard {
    relay: Arc<LogRelay>,
    host: String,
    wake: Arc<Notify>,
}

impl PollGuard {
    /// The requests waiting now, or the first to come before `deadline` (empty then).
    pub async fn next(&self, deadline: Instant) -> Vec<LogRequest> {
        loop {
            let reqs = self.relay.take(&self.host);
            if !reqs.is_empty() {
                return reqs;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return self.relay.take(&self.host),
            }
        }
    }
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let mut inner = self.relay.inner.lock().unwrap();
        if let Some(q) = inner.hosts.get_mut(&self.host) {
            q.polling = q.polling.saturating_sub(1);
            q.last_poll = Some(Instant::now());
            // A request queued for a poll that ended with it goes to the next poll.
            if !q.queued.is_empty() {
                q.wake.notify_one();
            }
        }
    }
}

/// A new request id: 16 random bytes, hex.
pub fn request_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(id: &str) -> LogRequest {
        LogRequest {
            id: id.into(),
            app: "web".into(),
            since: None,
            tail: None,
            follow: false,
        }
    }

    #[tokio::test]
    async fn a_request_wakes_the_hosts_poll_and_its_upload_gets_the_frames() {
        let relay = Arc::new(LogRelay::default());
        let (tx, mut rx) = mpsc::channel(4);
        assert_eq!(
            relay.request("h1", req("a"), tx.clone()).unwrap_err(),
            RequestError::NotListening
        );
        let poll = relay.poll("h1");
        let waiting =
            tokio::spawn(async move { poll.next(Instant::now() + Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = relay.request("h1", req("a"), tx).unwrap();
        let got = waiting.await.unwrap();
        assert_eq!(got, vec![req("a")]);
        assert!(relay.listening("h1"), "between two polls");
        assert!(
            relay.start_upload("h2", "a").is_none(),
            "another host's request"
        );
        let up = relay.start_upload("h1", "a").unwrap();
        started.await.unwrap();
        assert!(!relay.withdraw("a"), "started: nothing to withdraw");
        up.frames.send(LogFrame::note("x")).await.unwrap();
        drop(up);
        assert_eq!(rx.recv().await, Some(LogFrame::note("x")));
        assert_eq!(
            rx.recv().await,
            None,
            "every sender gone: the reader's stream ends"
        );
    }

    #[tokio::test]
    async fn a_withdrawn_request_is_not_handed_out() {
        let relay = Arc::new(LogRelay::default());
        let poll = relay.poll("h1");
        let (tx, _rx) = mpsc::channel(4);
        let _started = relay.request("h1", req("a"), tx).unwrap();
        assert!(relay.withdraw("a"));
        assert!(relay.start_upload("h1", "a").is_none());
        let got = poll.next(Instant::now() + Duration::from_millis(50)).await;
        assert!(got.is_empty());
    }
}
