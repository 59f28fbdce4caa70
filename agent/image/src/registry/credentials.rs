//! Which credentials go to a registry: `[registry.auth."HOST"]` first, then a docker
//! `config.json` the way the docker CLI reads it (`credHelpers` for the host, else
//! `credsStore`, else `auths`), so `docker login`, ECR's and GCR's helpers work unchanged.
//! Helpers speak the `docker-credential-*` protocol: `NAME get`, the server URL on stdin,
//! `{"Username","Secret"}` on stdout.

use super::error::{FailureKind, RegistryError};
use super::name;
use super::{Credentials, RegistryConfig};
use crate::defaults;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// The parts of a docker `config.json` we read (the file has many more keys).
#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    /// base64 of `username:password`.
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// A bearer token for the registry itself.
    #[serde(default)]
    registrytoken: Option<String>,
    /// An OAuth2 refresh token for the registry's token endpoint.
    #[serde(default)]
    identitytoken: Option<String>,
}

/// What a credential helper prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn config_error(reason: String) -> RegistryError {
    RegistryError::new(FailureKind::Config, reason)
}

/// The credentials for `registry` (as written in references), or `None` for anonymous.
pub async fn lookup(
    cfg: &RegistryConfig,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let keys = name::credential_keys(registry);
    if let Some(c) = keys.iter().find_map(|k| cfg.auth.get(k)) {
        return Ok(Some(c.clone()));
    }
    let Some(path) = &cfg.docker_config else {
        return Ok(None);
    };
    let docker = read_docker_config(path)?;
    let helper = keys
        .iter()
        .find_map(|k| docker.cred_helpers.get(k))
        .or(docker.creds_store.as_ref());
    if let Some(helper) = helper {
        let program = helper_program(helper)?;
        if let Some(c) = run_helper(Path::new(&program), &name::helper_server_url(registry)).await?
        {
            return Ok(Some(c));
        }
    }
    match keys.iter().find_map(|k| docker.auths.get(k)) {
        Some(entry) => entry_credentials(entry, path, registry),
        None => Ok(None),
    }
}

fn read_docker_config(path: &Path) -> Result<DockerConfig, RegistryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("reading docker config {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| config_error(format!("docker config {}: {e}", path.display())))
}

fn entry_credentials(
    entry: &AuthEntry,
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    if let Some(token) = &entry.registrytoken {
        return Ok(Some(Credentials::Bearer {
            token: token.clone(),
        }));
    }
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken {
            token: token.clone(),
        }));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        config_error(format!(
            "docker config {}: auths entry for {registry}: {why}",
            path.display()
        ))
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad("`auth` is not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| bad("`auth` is not base64 of `username:password`"))?;
    Ok(Some(Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// `docker-credential-NAME`, looked up in `PATH`; the name may not be a path.
fn helper_program(name: &str) -> Result<String, RegistryError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(config_error(format!(
            "credential helper name `{name}` is not a plain name (letters, digits, `-_.`)"
        )));
    }
    Ok(format!("docker-credential-{name}"))
}

/// Runs `program get` for `server_url`. `Ok(None)` when the helper has no credentials.
pub async fn run_helper(
    program: &Path,
    server_url: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let shown = program.display();
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| config_error(format!("running credential helper `{shown} get`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin is not an error here.
        let _ = stdin.write_all(server_url.as_bytes()).await;
    }
    let out = tokio::time::timeout(
        defaults::CREDENTIAL_HELPER_TIMEOUT,
        child.wait_with_output(),
    )
    .await
    .map_err(|_| {
        config_error(format!(
            "credential helper `{shown} get` for {server_url} did not answer within {:?}",
            defaults::CREDENTIAL_HELPER_TIMEOUT
        ))
    })?
    .map_err(|e| config_error(format!("credential helper `{shown} get`: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The protocol's answer for "nothing stored for this server".
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(config_error(format!(
            "credential helper `{shown} get` for {server_url} failed ({}): {}",
            out.status,
            format!("{} {}", stdout.trim(), stderr.trim()).trim()
        )));
    }
    let answer: HelperAnswer = serde_json::from_str(stdout.trim()).map_err(|e| {
        config_error(format!(
            "credential helper `{shown} get` for {server_url} printed no {{\"Username\",\"Secret\"}} JSON: {e}"
        ))
    })?;
    // The protocol's way of answering an identity token instead of a password.
    if answer.username == HELPER_IDENTITY_TOKEN_USER {
        return Ok(Some(Credentials::IdentityToken {
            token: answer.secret,
        }));
    }
    Ok(Some(Credentials::Basic {
        username: answer.username,
        password: answer.secret,
    }))
}

/// The `Username` a credential helper answers when `Secret` is an identity token.
const HELPER_IDENTITY_TOKEN_USER: &str = "<token>";

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn basic(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials::Basic {
            username: u.into(),
            password: p.into(),
        })
    }

    #[tokio::test]
    async fn docker_config_auths_and_agent_toml_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = write(
            dir.path(),
            "config.json",
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "ghcr.io":{"username":"gh","password":"pat"},
                "r.example":{"auth":"bm9jb2xvbg=="},
                "acr.example":{"auth":"","identitytoken":"refresh-2"}},
               "HttpHeaders":{"User-Agent":"x"}}"#,
            0o600,
        );
        let mut cfg = RegistryConfig {
            docker_config: Some(cfg_path),
            ..Default::default()
        };
        assert_eq!(
            lookup(&cfg, "docker.io").await.unwrap(),
            basic("hub", "secret")
        );
        assert_eq!(lookup(&cfg, "ghcr.io").await.unwrap(), basic("gh", "pat"));
        assert_eq!(lookup(&cfg, "quay.io").await.unwrap(), None);
        assert_eq!(
            lookup(&cfg, "acr.example").await.unwrap(),
            Some(Credentials::IdentityToken {
                token: "refresh-2".into()
            })
        );
        let err = lookup(&cfg, "r.example").await.unwrap_err();
        assert!(
            err.to_string().contains("auths entry for r.example"),
            "{err}"
        );
        cfg.auth
            .insert("ghcr.io".into(), basic("toml", "wins").unwrap());
        assert_eq!(
            lookup(&cfg, "ghcr.io").await.unwrap(),
            basic("toml", "wins")
        );
    }

    #[tokio::test]
    async fn helper_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("asked");
        let helper = write(
            dir.path(),
            "docker-credential-test",
            &format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread url\necho \"$url\" > {}\n\
                 case \"$url\" in\n  ecr.example) echo '{{\"ServerURL\":\"ecr.example\",\"Username\":\"AWS\",\"Secret\":\"tok\"}}';;\n  
                 acr.example) echo '{{\"Username\":\"<token>\",\"Secret\":\"refresh-1\"}}';;\n  \
                 *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
                log.display()
            ),
            0o755,
        );
        let c = run_helper(&helper, "ecr.example").await.unwrap();
        assert_eq!(c, basic("AWS", "tok"));
        assert_eq!(std::fs::read_to_string(&log).unwrap().trim(), "ecr.example");
        assert_eq!(
            run_helper(&helper, "acr.example").await.unwrap(),
            Some(Credentials::IdentityToken {
                token: "refresh-1".into()
            }),
            "Username <token>: the secret is an identity token"
        );
        assert_eq!(run_helper(&helper, "other").await.unwrap(), None);
        let broken = write(
            dir.path(),
            "broken",
            "#!/bin/sh\necho nope >&2\nexit 2\n",
            0o755,
        );
        let err = run_helper(&broken, "x").await.unwrap_err().to_string();
        assert!(err.contains("failed") && err.contains("nope"), "{err}");
        assert!(helper_program("../evil").is_err());
        assert_eq!(
            helper_program("ecr-login").unwrap(),
            "docker-credential-ecr-login"
        );
    }
}
