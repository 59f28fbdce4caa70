//! Remote logs: an operator asks the controller (`GET /v1/apps/{app}/logs`), the controller
//! hands a [`LogRequest`] to each host's agent on its log long-poll
//! (`GET /v1/hosts/{host}/log-requests`), and the agent streams [`LogFrame`]s back
//! (`POST /v1/hosts/{host}/logs/{id}`), which the controller relays, tagged with the host, to
//! the operator. Both streams are newline-delimited JSON, one frame a line.

use serde::{Deserialize, Serialize};

/// Which of a container's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(&self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One request for one host's logs of one app, as the agent receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    /// Where to upload: `POST /v1/hosts/{host}/logs/{id}`.
    pub id: String,
    pub app: String,
    /// Only output written at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only the last N lines of each stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u64>,
    /// Keep sending new output until the controller ends the upload.
    #[serde(default)]
    pub follow: bool,
}

/// The answer to a log long-poll: the requests waiting for this host (often none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogRequests {
    pub requests: Vec<LogRequest>,
}

/// One line of a log stream. A frame with neither `line` nor `error` is a keep-alive.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogFrame {
    /// The host the line came from; set by the controller, absent in agents' uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<LogStream>,
    /// One line of output, without its newline (lossy UTF-8; a very long line comes split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// Why this host gives no (more) output: down, silent, no container of the app ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Something the operator should know that is not output, e.g. the container followed
    /// changed to a new release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl LogFrame {
    pub fn line(stream: LogStream, line: String) -> Self {
        Self {
            stream: Some(stream),
            line: Some(line),
            ..Self::default()
        }
    }

    pub fn error(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }

    pub fn note(note: impl Into<String>) -> Self {
        Self {
            note: Some(note.into()),
            ..Self::default()
        }
    }

    /// Is this a keep-alive, carrying nothing?
    pub fn is_keep_alive(&self) -> bool {
        self.line.is_none() && self.error.is_none() && self.note.is_none()
    }

    /// The frame as one NDJSON line, newline included.
    pub fn to_ndjson(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a log frame serializes");
        v.push(b'\n');
        v
    }
}
