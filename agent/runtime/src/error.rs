//! Errors of the runtime: one enum per concern, gathered by [`RuntimeError`].

use std::path::PathBuf;

/// An image config or app spec that cannot become a safe OCI bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("image config of {image} rejected: WorkingDir `{dir}` {reason}")]
    WorkingDir {
        image: String,
        dir: String,
        reason: &'static str,
    },
    #[error("image config of {image} rejected: User `{user}` {reason}")]
    User {
        image: String,
        user: String,
        reason: String,
    },
    #[error("image config of {image} rejected: {field} {reason}")]
    Field {
        image: String,
        field: &'static str,
        reason: String,
    },
    #[error("release {image} has nothing to run: neither the image nor the app spec sets an entrypoint or command")]
    NoCommand { image: String },
    #[error("app {app}: seccomp profile {path} cannot be used: {reason}; nothing was changed")]
    Seccomp {
        app: String,
        path: PathBuf,
        reason: String,
    },
    #[error("app {app}: volume {volume}: {reason}")]
    Volume {
        app: String,
        volume: String,
        reason: String,
    },
    #[error("cannot build config.json for {id}: {0}", id = .1)]
    Spec(oci_spec::OciSpecError, String),
}

/// A failed runc invocation.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("cannot run `{bin} {args}`: {source}")]
    Spawn {
        bin: PathBuf,
        args: String,
        source: std::io::Error,
    },
    #[error("`runc {args}` failed (exit {code}): {message}")]
    Failed {
        args: String,
        code: i32,
        message: String,
    },
    #[error("starting container {id}: {reason}")]
    Start { id: String, reason: String },
    #[error("`runc {args}` did not finish within {secs} s")]
    Timeout { args: String, secs: u64 },
    #[error("`runc {args}` printed output we cannot read: {reason}")]
    Output { args: String, reason: String },
}

/// A failed network namespace or CNI plugin step.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network namespace {name}: {action} failed: {reason}")]
    Netns {
        name: String,
        action: &'static str,
        reason: String,
    },
    #[error("egress NAT of bridge `{bridge}`: {reason}")]
    Nat { bridge: String, reason: String },
    #[error("CNI {command} of plugin `{plugin}` for {id} failed: {reason}")]
    Plugin {
        command: &'static str,
        plugin: String,
        id: String,
        reason: String,
    },
    #[error("CNI network config {path}: {reason}")]
    Netconf { path: PathBuf, reason: String },
    #[error("CNI ADD for {id} returned no IP address: {result}")]
    NoAddress { id: String, result: String },
}

/// Everything the runtime can fail at; each variant names the container or path involved.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Runc(#[from] RuncError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("{path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("container {id} exists or has run before: a release never runs twice under one id; release a new seq")]
    Exists { id: String },
    #[error(
        "container {id} is not a created container waiting to start (its record says {phase})"
    )]
    NotCreated { id: String, phase: String },
    #[error("no container {id} in {state_dir}")]
    NotFound { id: String, state_dir: PathBuf },
    #[error(transparent)]
    BadId(#[from] slipway_proto::IdError),
    #[error("container id `{id}` does not match its release, whose id is `{expected}`")]
    IdMismatch {
        id: slipway_proto::ContainerId,
        expected: slipway_proto::ContainerId,
    },
    #[error("container {id} is {status}, not running")]
    NotRunning { id: String, status: String },
    #[error("state record {path} is corrupt: {reason}; move it aside to let the agent clean up")]
    CorruptState { path: PathBuf, reason: String },
    #[error("rootfs of {id}: {reason}")]
    Rootfs { id: String, reason: String },
    #[error("volume {name}: {reason}")]
    Volume { name: String, reason: String },
    /// Names the secret, never its value.
    #[error("container {id}: secret `{name}` {reason}")]
    Secret {
        id: String,
        name: String,
        reason: String,
    },
    #[error("container {id}: secrets tmpfs: {reason}")]
    SecretsTmpfs { id: String, reason: String },
    #[error("runtime config: {0}")]
    Config(String),
    #[error("container {id} did not exit within {secs} s of SIGKILL")]
    Stuck { id: String, secs: u64 },
    #[error("exec in {id} did not finish within {ms} ms")]
    ExecTimeout { id: String, ms: u128 },
}

/// Shorthand for I/O errors that name their path.
pub(crate) fn io(
    path: impl Into<PathBuf>,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io {
        path,
        action,
        source,
    }
}
