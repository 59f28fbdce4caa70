//! The desired-state repository, read through the `git` CLI.
//!
//! Why the CLI and not a library: it adds no C dependency to the controller (libgit2 would),
//! speaks every transport and credential setup the operators' git servers need, and runs
//! exactly the commands an operator types to debug a sync (`git -C <data_dir>/gitops/repo.git
//! log refs/slipway/main`). We keep a bare mirror under the data dir, fetch only the one branch
//! (incremental after the first fetch, forced so a force-push is followed), and read files
//! straight from the commit's tree: there is no working tree to get dirty or half-updated.

use super::defaults;
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("running `git {args}`: {source} (is git installed?)")]
    Spawn {
        args: String,
        source: std::io::Error,
    },
    #[error("`git {args}` did not finish within {}", humantime::format_duration(*timeout))]
    Timeout { args: String, timeout: Duration },
    #[error("`git {args}` failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("reading git credentials file {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("unexpected output from `git {args}`: {reason}")]
    Output { args: String, reason: String },
}

/// A file of the desired-state tree: its path from the repository root, blob id and size.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub mode: String,
    pub oid: String,
    pub size: Option<u64>,
}

/// Who made a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub id: String,
    /// `Name <email>`
    pub author: String,
}

/// A bare mirror of one branch of the configured repository.
pub struct Repo {
    mirror: PathBuf,
    url: String,
    branch: String,
    credentials: Option<PathBuf>,
    timeout: Duration,
}

impl Repo {
    pub fn new(
        mirror: PathBuf,
        url: &str,
        branch: &str,
        credentials: Option<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Repo {
            mirror,
            url: url.to_string(),
            branch: branch.to_string(),
            credentials,
            timeout,
        }
    }

    /// The local ref the branch is fetched into.
    fn local_ref(&self) -> String {
        format!("refs/slipway/{}", self.branch)
    }

    /// Fetches the branch (following force-pushes) and returns the commit it points at.
    pub async fn fetch(&self) -> Result<String, GitError> {
        if !self.mirror.join("HEAD").exists() {
            let mirror = self.mirror.to_string_lossy().into_owned();
            self.git(None, &["init", "--bare", "--quiet", &mirror], None)
                .await?;
        }
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.local_ref());
        let mut extra = Vec::new();
        if let Some(path) = &self.credentials {
            // Scoped to the configured URL, so it is never sent to another host.
            extra.push((
                format!("http.{}.extraHeader", self.url),
                format!("Authorization: Basic {}", basic_auth(path)?),
            ));
        }
        self.git_with(
            Some(&self.mirror),
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--end-of-options",
                &self.url,
                &refspec,
            ],
            None,
            &extra,
        )
        .await?;
        let spec = format!("{}^{{commit}}", self.local_ref());
        let out = self
            .git(
                Some(&self.mirror),
                &["rev-parse", "--verify", "--end-of-options", &spec],
                None,
            )
            .await?;
        let id = String::from_utf8_lossy(&out).trim().to_string();
        if id.len() < 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitError::Output {
                args: format!("rev-parse {spec}"),
                reason: format!("`{id}` is not a commit id"),
            });
        }
        Ok(id)
    }

    /// Every file below `dir` (the whole tree when empty) at `commit`.
    pub async fn tree(&self, commit: &str, dir: &str) -> Result<Vec<Entry>, GitError> {
        let mut args = vec!["ls-tree", "-r", "-l", "-z", "--full-tree", commit];
        let pathspec = format!("{dir}/");
        if !dir.is_empty() {
            args.extend(["--", &pathspec]);
        }
        let out = self.git(Some(&self.mirror), &args, None).await?;
        let bad = |reason: String| GitError::Output {
            args: format!("ls-tree {commit}"),
            reason,
        };
        let mut entries = Vec::new();
        for rec in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let rec = std::str::from_utf8(rec).map_err(|_| bad("non-UTF-8 path".into()))?;
            let (meta, path) = rec
                .split_once('\t')
                .ok_or_else(|| bad(format!("no tab in `{rec}`")))?;
            let mut f = meta.split_whitespace();
            let (Some(mode), Some(_kind), Some(oid), Some(size)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(bad(format!("short record `{rec}`")));
            };
            entries.push(Entry {
                path: path.to_string(),
                mode: mode.to_string(),
                oid: oid.to_string(),
                size: size.parse().ok(),
            });
        }
        Ok(entries)
    }

    /// The contents of blobs, in the order asked, through one `git cat-file --batch`.
    pub async fn blobs(&self, oids: &[&str]) -> Result<Vec<Vec<u8>>, GitError> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let input: String = oids.iter().map(|o| format!("{o}\n")).collect();
        let out = self
            .git(Some(&self.mirror), &["cat-file", "--batch"], Some(input))
            .await?;
        let bad = |reason: String| GitError::Output {
            args: "cat-file --batch".into(),
            reason,
        };
        let mut rest = &out[..];
        let mut blobs = Vec::with_capacity(oids.len());
        for oid in oids {
            let nl = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| bad(format!("no header for {oid}")))?;
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let size: usize = match header.split(' ').collect::<Vec<_>>()[..] {
                [_, "blob", size] => size.parse().map_err(|_| bad(header.clone()))?,
                _ => return Err(bad(format!("object {oid}: `{header}`"))),
            };
            rest = &rest[nl + 1..];
            if rest.len() < size + 1 {
                return Err(bad(format!("object {oid} truncated")));
            }
            blobs.push(rest[..size].to_vec());
            rest = &rest[size + 1..];
        }
        Ok(blobs)
    }

    /// The newest commit at or before `commit` that changed `path`.
    pub async fn last_change(&self, commit: &str, path: &str) -> Result<Commit, GitError> {
        let out = self
            .git(
                Some(&self.mirror),
                &["log", "-1", "--format=%H%x00%an <%ae>", commit, "--", path],
                None,
            )
            .await?;
        let text = String::from_utf8_lossy(&out);
        let (id, author) = text
            .trim_end()
            .split_once('\0')
            .ok_or_else(|| GitError::Output {
                args: format!("log -1 {commit} -- {path}"),
                reason: format!("`{text}`"),
            })?;
        Ok(Commit {
            id: id.to_string(),
            author: author.to_string(),
        })
    }

    async fn git(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        stdin: Option<String>,
    ) -> Result<Vec<u8>, GitError> {
        self.git_with(dir, args, stdin, &[]).await
    }

    /// Runs git with `config` passed through the environment (not argv, which any local user
    /// can read in /proc), never prompting, killed after the timeout.
    async fn git_with(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        stdin: Option<String>,
        config: &[(String, String)],
    ) -> Result<Vec<u8>, GitError> {
        let shown = args.join(" ");
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "https:http:file")
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_COUNT", config.len().to_string())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (i, (k, v)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        let mut child = cmd.spawn().map_err(|source| GitError::Spawn {
            args: shown.clone(),
            source,
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = pipe.write_all(input.as_bytes()).await;
            });
        }
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| GitError::Timeout {
                args: shown.clone(),
                timeout: self.timeout,
            })?
            .map_err(|source| GitError::Spawn {
                args: shown.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(GitError::Failed {
                args: shown,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }
}

/// `base64(user:token)` from a credentials file holding `USER:TOKEN` or a bare token.
fn basic_auth(path: &Path) -> Result<String, GitError> {
    let bad = |reason: String| GitError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let pair = credentials_pair(&text).map_err(|e| bad(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(pair))
}

/// Why the first line of a credentials file holds no credentials.
#[derive(Debug, thiserror::Error)]
pub enum BadCredentials {
    #[error("empty: expected `USER:TOKEN` or a token on the first line")]
    Empty,
    #[error("`USER:TOKEN` with an empty user or token")]
    EmptyPart,
}

/// `USER:TOKEN` from the first line of a credentials file.
fn credentials_pair(text: &str) -> Result<String, BadCredentials> {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return Err(BadCredentials::Empty);
    }
    Ok(match line.split_once(':') {
        Some((user, token)) if !user.is_empty() && !token.is_empty() => line.to_string(),
        Some(_) => return Err(BadCredentials::EmptyPart),
        None => format!("{}:{line}", defaults::TOKEN_USER),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_forms() {
        assert_eq!(credentials_pair("bot:s3cr3t\n").unwrap(), "bot:s3cr3t");
        assert_eq!(
            credentials_pair("ghp_abc\n").unwrap(),
            format!("{}:ghp_abc", defaults::TOKEN_USER)
        );
        assert!(credentials_pair("\n").is_err());
        assert!(credentials_pair(":tok").is_err());
    }
}
