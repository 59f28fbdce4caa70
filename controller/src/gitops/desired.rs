//! The desired state as the repository writes it: one directory per app below `path`, each
//! with `app.toml` (the app spec) and `image` (what to run). Every app is parsed on its own,
//! so a broken file only ever affects its app. Layout: `deploy/gitops-example/README.md`.

use super::defaults::{APP_FILE, IMAGE_FILE, MAX_FILE};
use super::repo::Entry;
use slipway_proto::spec::SpecError;
use slipway_proto::AppSpec;
use std::collections::BTreeMap;

/// One app as the repository wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredApp {
    pub spec: AppSpec,
    /// Full reference: `REPOSITORY:TAG` or `REPOSITORY@sha256:...`.
    pub image: String,
    /// Identifies spec + image: equal fingerprints mean nothing to release.
    pub fingerprint: String,
}

/// Why an app's directory is unusable; `file` is its path in the repository.
#[derive(Debug, thiserror::Error)]
pub enum InvalidApp {
    #[error("directory {file}: not an app name: {reason}")]
    Name { file: String, reason: String },
    #[error("{file} is missing")]
    Missing { file: String },
    #[error("{file} must be a regular file (git mode {mode})")]
    NotRegular { file: String, mode: String },
    #[error("{file} is larger than {MAX_FILE} bytes")]
    TooLarge { file: String },
    #[error("{file} could not be read")]
    Unread { file: String },
    #[error("{file} is not UTF-8")]
    NotUtf8 { file: String },
    #[error("{file}: {source}")]
    Spec { file: String, source: SpecError },
    #[error("{file}: name `{name}` differs from its directory `{app}`")]
    NameMismatch {
        file: String,
        name: String,
        app: String,
    },
    #[error("{file}: {source}")]
    Image { file: String, source: BadImage },
}

/// Why the `image` file names no image of the app.
#[derive(Debug, thiserror::Error)]
pub enum BadImage {
    #[error("empty: expected a tag, `sha256:<digest>` or a full reference")]
    Empty,
    #[error("{0} lines; expected exactly one image")]
    Lines(usize),
    #[error("`{line}` is not from the app's repository `{repository}` (app.toml `image`)")]
    Foreign { line: String, repository: String },
    #[error("`{0}` has an empty or malformed tag or digest")]
    Malformed(String),
}

/// Groups `entries` (from below `dir`) by app and names the blobs each app needs, in order:
/// (app, file name, entry).
pub fn files_by_app(dir: &str, entries: &[Entry]) -> BTreeMap<String, Vec<(String, Entry)>> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut apps: BTreeMap<String, Vec<(String, Entry)>> = BTreeMap::new();
    for e in entries {
        let Some(rel) = e.path.strip_prefix(&prefix) else {
            continue;
        };
        // Only `<app>/<file>`: files directly below `dir` (a README) and deeper ones are not ours.
        let Some((app, file)) = rel.split_once('/') else {
            continue;
        };
        let entry = apps.entry(app.to_string()).or_default();
        if !file.contains('/') {
            entry.push((file.to_string(), e.clone()));
        }
    }
    apps
}

/// Parses one app's directory; `read` yields the contents of a blob already fetched.
pub fn parse_app(
    dir: &str,
    app: &str,
    files: &[(String, Entry)],
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<DesiredApp, InvalidApp> {
    let shown = |file: &str| {
        if dir.is_empty() {
            format!("{app}/{file}")
        } else {
            format!("{dir}/{app}/{file}")
        }
    };
    app.parse::<slipway_proto::AppName>()
        .map_err(|e| InvalidApp::Name {
            file: shown(""),
            reason: e.reason.to_string(),
        })?;
    let text = |file: &str| -> Result<String, InvalidApp> {
        let (_, e) = files
            .iter()
            .find(|(f, _)| f == file)
            .ok_or_else(|| InvalidApp::Missing { file: shown(file) })?;
        if e.mode != "100644" && e.mode != "100755" {
            return Err(InvalidApp::NotRegular {
                file: shown(file),
                mode: e.mode.clone(),
            });
        }
        if e.size.is_none_or(|s| s > MAX_FILE) {
            return Err(InvalidApp::TooLarge { file: shown(file) });
        }
        let bytes = read(&e.oid).ok_or_else(|| InvalidApp::Unread { file: shown(file) })?;
        String::from_utf8(bytes).map_err(|_| InvalidApp::NotUtf8 { file: shown(file) })
    };
    let spec = AppSpec::from_toml(&text(APP_FILE)?).map_err(|source| InvalidApp::Spec {
        file: shown(APP_FILE),
        source,
    })?;
    if spec.name != app {
        return Err(InvalidApp::NameMismatch {
            file: shown(APP_FILE),
            name: spec.name.to_string(),
            app: app.to_string(),
        });
    }
    let image = image_ref(&spec, &text(IMAGE_FILE)?).map_err(|source| InvalidApp::Image {
        file: shown(IMAGE_FILE),
        source,
    })?;
    let fingerprint = fingerprint(&spec, &image);
    Ok(DesiredApp {
        spec,
        image,
        fingerprint,
    })
}

/// The `image` file: one line (blank lines and `#` comments aside) holding a full reference
/// from the spec's repository, a bare tag (`v2`) or a digest (`sha256:...`).
pub fn image_ref(spec: &AppSpec, text: &str) -> Result<String, BadImage> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match lines[..] {
        [one] => one,
        [] => return Err(BadImage::Empty),
        _ => return Err(BadImage::Lines(lines.len())),
    };
    let full = if line.starts_with("sha256:") {
        format!("{}@{line}", spec.image)
    } else if !line.contains(['/', ':', '@']) {
        format!("{}:{line}", spec.image)
    } else {
        line.to_string()
    };
    let rest = full
        .strip_prefix(spec.image.as_str())
        .filter(|r| r.starts_with(':') || r.starts_with('@'))
        .ok_or_else(|| BadImage::Foreign {
            line: line.to_string(),
            repository: spec.image.clone(),
        })?;
    if rest.len() < 2 || rest.contains(char::is_whitespace) {
        return Err(BadImage::Malformed(line.to_string()));
    }
    Ok(full)
}

/// sha256 over the canonical spec (so comments and formatting do not count) and the image.
pub fn fingerprint(spec: &AppSpec, image: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"slipway-gitops-v1\n");
    ctx.update(&serde_json::to_vec(spec).expect("app spec serializes"));
    ctx.update(b"\n");
    ctx.update(image.as_bytes());
    hex::encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AppSpec {
        AppSpec::from_toml(
            "name = \"web\"\nimage = \"127.0.0.1:5000/web\"\nlisten = 8080\ncontainer_port = 80\n",
        )
        .unwrap()
    }

    #[test]
    fn image_file_forms() {
        let s = spec();
        assert_eq!(image_ref(&s, "v2\n").unwrap(), "127.0.0.1:5000/web:v2");
        assert_eq!(
            image_ref(&s, "# pinned\n127.0.0.1:5000/web:v3\n").unwrap(),
            "127.0.0.1:5000/web:v3"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            image_ref(&s, &d).unwrap(),
            format!("127.0.0.1:5000/web@{d}")
        );
        for (bad, why) in [
            ("", "empty"),
            ("v1\nv2\n", "2 lines"),
            ("127.0.0.1:5000/other:v1", "not from the app's repository"),
            ("127.0.0.1:5000/webx:v1", "not from the app's repository"),
            ("127.0.0.1:5000/web:", "malformed"),
        ] {
            let e = image_ref(&s, bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_example_repository_parses() {
        for (app, toml, image) in [
            (
                "web",
                include_str!("../../../deploy/gitops-example/apps/web/app.toml"),
                include_str!("../../../deploy/gitops-example/apps/web/image"),
            ),
            (
                "worker",
                include_str!("../../../deploy/gitops-example/apps/worker/app.toml"),
                include_str!("../../../deploy/gitops-example/apps/worker/image"),
            ),
        ] {
            let spec = AppSpec::from_toml(toml).unwrap();
            assert_eq!(spec.name, app);
            let image = image_ref(&spec, image).unwrap();
            assert!(image.starts_with(&spec.image), "{image}");
        }
    }

    #[test]
    fn fingerprint_ignores_formatting() {
        let a = spec();
        let b = AppSpec::from_toml(
            "# comment\nname = \"web\"\ncontainer_port = 80\nimage = \"127.0.0.1:5000/web\"\nlisten = 8080\n",
        )
        .unwrap();
        assert_eq!(fingerprint(&a, "x:1"), fingerprint(&b, "x:1"));
        assert_ne!(fingerprint(&a, "x:1"), fingerprint(&a, "x:2"));
    }
}
