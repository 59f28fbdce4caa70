//! `[gitops]` in `controller.toml`: which repository holds the desired state and how the
//! controller hears about changes.
//!
//! ```toml
//! [gitops]
//! url = "https://github.com/acme/deploy.git"     # HTTPS URL or a local path (bare repo or not)
//! branch = "main"                                 # pushes to other branches are ignored
//! path = "apps"                                   # one directory per app below this
//! poll_interval = "1m"                            # also synced at once on every valid webhook
//! credentials_file = "/etc/slipway/git-credentials"          # optional: `USER:TOKEN` or `TOKEN`
//! github_secret_file = "/etc/slipway/github-webhook.secret"  # enables POST /v1/webhooks/github
//! gitlab_token_file = "/etc/slipway/gitlab-webhook.token"    # enables POST /v1/webhooks/gitlab
//! git_timeout = "2m"                              # one git command gives up after this
//! ```

use super::defaults;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitopsConfig {
    /// `https://...` (or `http://` on loopback), `file://...` or a local path.
    pub url: String,
    #[serde(default = "d_branch")]
    pub branch: String,
    /// Directory of the repository holding one directory per app.
    #[serde(default = "d_path")]
    pub path: String,
    #[serde(default = "d_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// File with `USER:TOKEN` (or a bare token) for HTTPS; never put credentials in `url`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Shared secret of the GitHub webhook (X-Hub-Signature-256).
    #[serde(default)]
    pub github_secret_file: Option<PathBuf>,
    /// Secret token of the GitLab webhook (X-Gitlab-Token).
    #[serde(default)]
    pub gitlab_token_file: Option<PathBuf>,
    #[serde(default = "d_git_timeout", with = "humantime_serde")]
    pub git_timeout: Duration,
}

fn d_branch() -> String {
    defaults::BRANCH.to_string()
}
fn d_path() -> String {
    defaults::APPS_PATH.to_string()
}
fn d_poll() -> Duration {
    defaults::POLL_INTERVAL
}
fn d_git_timeout() -> Duration {
    defaults::GIT_TIMEOUT
}

/// A `[gitops]` setting that would leak secrets or make git misbehave; the message names
/// the key.
#[derive(Debug, thiserror::Error)]
pub enum InvalidGitops {
    #[error("[gitops] url is empty")]
    EmptyUrl,
    #[error(
        "[gitops] url scheme `{0}` is not supported: use https://, a local path or file:// \
         (http:// only on loopback)"
    )]
    Scheme(String),
    #[error(
        "[gitops] url `{0}://...` carries credentials; put them in credentials_file instead, \
         so they stay out of logs and release annotations"
    )]
    Credentials(String),
    #[error(
        "[gitops] url `{0}`: use https:// or an absolute local path (scp-like and relative \
         forms are not supported)"
    )]
    UrlForm(String),
    #[error("[gitops] branch `{0}` must be a plain branch name ([A-Za-z0-9._/-])")]
    Branch(String),
    #[error("[gitops] path `{0}` must be relative to the repository root")]
    Path(String),
    #[error(
        "[gitops] poll_interval must be at least {}",
        humantime::format_duration(defaults::MIN_POLL_INTERVAL)
    )]
    PollInterval,
    #[error("[gitops] git_timeout must be above zero")]
    GitTimeout,
}

impl GitopsConfig {
    /// Refuses settings that would leak secrets or make git misbehave; the reason names the key.
    pub fn validate(&self) -> Result<(), InvalidGitops> {
        if self.url.trim().is_empty() {
            return Err(InvalidGitops::EmptyUrl);
        }
        if let Some((scheme, rest)) = self.url.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .trim_matches(['[', ']']);
            let loopback =
                host == "localhost" || host.starts_with("127.") || host == "::1" || host.is_empty();
            match scheme {
                "https" | "file" => {}
                "http" if loopback => {}
                other => return Err(InvalidGitops::Scheme(other.to_string())),
            }
            if authority.contains('@') {
                return Err(InvalidGitops::Credentials(scheme.to_string()));
            }
        } else if !self.url.starts_with('/') {
            // git runs inside the mirror, so a relative path would point somewhere else; and
            // scp-like `host:path` means SSH, which has no place for credentials_file.
            return Err(InvalidGitops::UrlForm(self.url.clone()));
        }
        let branch_ok = !self.branch.is_empty()
            && !self.branch.starts_with('-')
            && !self.branch.contains("..")
            && self
                .branch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !branch_ok {
            return Err(InvalidGitops::Branch(self.branch.clone()));
        }
        if self.path.starts_with('/') || self.path.split('/').any(|c| c == "..") {
            return Err(InvalidGitops::Path(self.path.clone()));
        }
        if self.poll_interval < defaults::MIN_POLL_INTERVAL {
            return Err(InvalidGitops::PollInterval);
        }
        if self.git_timeout.is_zero() {
            return Err(InvalidGitops::GitTimeout);
        }
        Ok(())
    }

    /// `path` without leading `./` or trailing `/`; empty for the repository root.
    pub fn apps_dir(&self) -> String {
        self.path
            .trim_start_matches("./")
            .trim_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<GitopsConfig, String> {
        let c: GitopsConfig = toml::from_str(extra).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_and_refusals() {
        let c = cfg("url = \"/srv/deploy.git\"").unwrap();
        assert_eq!(c.branch, defaults::BRANCH);
        assert_eq!(c.apps_dir(), "apps");
        assert!(cfg("url = \"https://github.com/a/b.git\"\npath = \"./\"")
            .unwrap()
            .apps_dir()
            .is_empty());
        for (bad, why) in [
            (
                "url = \"https://u:p@github.com/a/b.git\"",
                "credentials_file",
            ),
            ("url = \"ssh://git@github.com/a/b.git\"", "not supported"),
            ("url = \"http://github.com/a/b.git\"", "not supported"),
            ("url = \"git@github.com:a/b.git\"", "scp-like"),
            ("url = \"deploy.git\"", "absolute"),
            ("url = \"/r\"\nbranch = \"--upload-pack=x\"", "branch"),
            ("url = \"/r\"\npath = \"../x\"", "relative"),
            ("url = \"/r\"\npoll_interval = \"1ms\"", "poll_interval"),
        ] {
            let e = cfg(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(cfg("url = \"http://127.0.0.1:9/r.git\"").is_ok());
    }

    #[test]
    fn the_example_parses() {
        #[derive(Deserialize)]
        struct File {
            gitops: GitopsConfig,
        }
        let f: File = toml::from_str(include_str!(
            "../../../deploy/gitops-example/controller-gitops.toml"
        ))
        .unwrap();
        f.gitops.validate().unwrap();
        assert_eq!(f.gitops.poll_interval, defaults::POLL_INTERVAL);
    }
}
