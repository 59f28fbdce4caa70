//! Repository names as Docker spells them: `nginx` is `docker.io/library/nginx`,
//! `user/app` is `docker.io/user/app`, and Docker Hub's API answers at
//! `registry-1.docker.io`. The controller and the agent both normalize with this.

use std::fmt;

/// Docker Hub's registry name in image references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers (`docker.io` itself does not serve `/v2/`).
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Docker Hub's namespace for official images.
pub const DOCKER_HUB_LIBRARY: &str = "library";
/// Other names Docker Hub goes by in references and credential files.
const DOCKER_HUB_ALIASES: &[&str] = &["index.docker.io", "registry-1.docker.io"];
/// The key `docker login` stores Docker Hub credentials under in config.json.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// A repository split into registry and path, Docker Hub names filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    /// Registry as written in references: `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Path inside the registry: `library/nginx`, `team/web`.
    pub path: String,
}

impl Repository {
    /// Normalizes a repository name (no tag, no digest). The first component names a
    /// registry when it holds a `.` or `:` or is `localhost`, as in the distribution
    /// reference grammar; otherwise the repository is on Docker Hub.
    pub fn parse(repository: &str) -> Repository {
        let (registry, path) = match repository.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), repository.to_string()),
        };
        let registry = if DOCKER_HUB_ALIASES.contains(&registry.as_str()) {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("{DOCKER_HUB_LIBRARY}/{path}")
        } else {
            path
        };
        Repository { registry, path }
    }

    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The host (and port) the registry API answers on.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// The host (and port) registry `registry` answers its API on.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// Normalizes a repository name to its full form (`nginx` -> `docker.io/library/nginx`).
pub fn normalize(repository: &str) -> String {
    Repository::parse(repository).to_string()
}

/// The keys credentials for `registry` may be filed under (config.json, agent.toml).
pub fn credential_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string()];
    if registry == DOCKER_HUB {
        keys.extend(DOCKER_HUB_ALIASES.iter().map(|s| s.to_string()));
        keys.push(DOCKER_HUB_CONFIG_KEY.to_string());
    }
    keys.push(format!("https://{registry}"));
    keys.push(format!("http://{registry}"));
    keys
}

/// The server URL a `docker-credential-*` helper is asked about for `registry`.
pub fn helper_server_url(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        normalize(s)
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert_eq!(full("nginx"), "docker.io/library/nginx");
        assert_eq!(full("user/app"), "docker.io/user/app");
        assert_eq!(full("docker.io/nginx"), "docker.io/library/nginx");
        assert_eq!(
            full("index.docker.io/library/nginx"),
            "docker.io/library/nginx"
        );
        assert_eq!(full("registry-1.docker.io/user/app"), "docker.io/user/app");
        assert_eq!(full("docker.io/a/b/c"), "docker.io/a/b/c");
        let r = Repository::parse("nginx");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert!(r.is_docker_hub());
    }

    #[test]
    fn other_registries_are_kept() {
        assert_eq!(full("ghcr.io/org/app"), "ghcr.io/org/app");
        assert_eq!(full("127.0.0.1:5000/web"), "127.0.0.1:5000/web");
        assert_eq!(full("localhost/web"), "localhost/web");
        let r = Repository::parse("registry.example.com:5000/team/web");
        assert_eq!(r.registry, "registry.example.com:5000");
        assert_eq!(r.path, "team/web");
        assert_eq!(r.api_host(), "registry.example.com:5000");
    }

    #[test]
    fn credential_keys_cover_docker_login() {
        let keys = credential_keys("docker.io");
        assert!(keys.contains(&"https://index.docker.io/v1/".to_string()));
        assert!(keys.contains(&"index.docker.io".to_string()));
        assert_eq!(
            helper_server_url("docker.io"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(helper_server_url("ghcr.io"), "ghcr.io");
        assert!(credential_keys("ghcr.io").contains(&"https://ghcr.io".to_string()));
    }
}
