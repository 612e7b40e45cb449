//! Base images: the digest each `FROM` of a Dockerfile names today, so that an image is
//! rebuilt when its base moves under the same tag, and the report can say which base moved.
//!
//! References are normalized as Docker does (`alpine` is `docker.io/library/alpine:latest`,
//! Docker Hub is asked at `registry-1.docker.io`). A reference pinned by digest
//! (`name@sha256:…`) is taken as is, without a request. Others are looked up with a `HEAD`
//! (then a `GET`) on their registry's manifest endpoint: the push registry with its own
//! credentials, any other registry with the runner's login for it (docker/login-action's, in
//! the runner's Docker config), else anonymously (the Bearer token flow included).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::image::docker_config::RunnerConfig;
use crate::image::hub;
use crate::image::registry::{OciRegistry, RegistryError, RegistryTarget};
use crate::plan::dockerfile::BaseImages;

/// The label monoship writes on every image it builds: a JSON object of each base image
/// reference (as the Dockerfile names it) to the digest it was resolved to.
pub const BASE_IMAGES_LABEL: &str = "dev.monoship.base-images";

/// The label holding the date of the commit an image was built from.
const CREATED_LABEL: &str = "org.opencontainers.image.created";

/// Most earlier images (same files, other bases) read to tell which base moved.
const MAX_EARLIER: usize = 4;

/// An image reference split the way Docker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]` to ask (Docker Hub as `registry-1.docker.io`).
    pub registry: String,
    /// Repository path inside the registry (`library/alpine`).
    pub repository: String,
    pub tag: String,
    /// `sha256:…` when the reference is pinned.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `[host[:port]/]path[:tag][@digest]`. The first component is a host when it has
    /// a `.` or a `:`, or is `localhost`; otherwise the image is on Docker Hub, where a
    /// one-component path is below `library/`. The tag defaults to `latest`.
    ///
    /// # Errors
    /// With the reason, when it is not a reference Docker would accept.
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        let (name, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(format!("`{d}` is not a sha256 digest"));
            }
        }
        // A `:` after the last `/` starts the tag; one before it is a port.
        let (name, tag) = match name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((host, path))
                if host.contains(['.', ':']) || host == "localhost" || host.starts_with('[') =>
            {
                (host.to_string(), path.to_string())
            }
            _ => (hub::NAME.to_string(), name.to_string()),
        };
        let docker_hub = hub::is_docker_hub(&registry);
        let repository = match (docker_hub, path.contains('/')) {
            (true, false) => format!("library/{path}"),
            _ => path,
        };
        crate::image::registry::validate_repository(&repository).map_err(|e| e.to_string())?;
        let tag = tag.unwrap_or("latest");
        let valid_tag = tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid_tag {
            return Err(format!("`{tag}` is not a valid tag"));
        }
        Ok(ImageRef {
            registry: hub::api_host(&registry),
            repository,
            tag: tag.to_string(),
            digest: digest.map(str::to_string),
        })
    }
}

/// What the registries said of one service's base images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bases {
    /// Reference as the Dockerfile names it → the digest it points to.
    pub digests: BTreeMap<String, String>,
    /// Reference (or `Dockerfile line N` for a `FROM` that cannot be read) → why it has no
    /// digest.
    pub unresolved: BTreeMap<String, String>,
    /// References not looked up (a dry run).
    pub pending: Vec<String>,
    /// Some base was resolved through its tag, so the builder must pull it rather than use a
    /// copy it may hold from before.
    pub by_tag: bool,
}

impl Bases {
    /// A service's bases from its Dockerfile's `FROM`s and the lookups of the run. Pure.
    pub fn of(found: &BaseImages, resolved: &HashMap<String, Resolution>) -> Bases {
        let mut bases = Bases::default();
        for u in &found.unreadable {
            bases
                .unresolved
                .insert(format!("Dockerfile line {}", u.line), u.why.clone());
        }
        for image in &found.images {
            let reference = image.reference.clone();
            match resolved.get(&reference) {
                Some(Resolution::Digest { digest, by_tag }) => {
                    bases.by_tag |= by_tag;
                    bases.digests.insert(reference, digest.clone());
                }
                Some(Resolution::Failed(why)) => {
                    bases.unresolved.insert(reference, why.clone());
                }
                None => bases.pending.push(reference),
            }
        }
        bases
    }

    /// The warning of an image that is built whatever the registry holds, because a base
    /// image has no digest; `None` when every base resolved.
    pub fn unresolved_warning(&self) -> Option<String> {
        if self.unresolved.is_empty() {
            return None;
        }
        let each: Vec<String> = self
            .unresolved
            .iter()
            .map(|(reference, why)| format!("`{reference}` ({why})"))
            .collect();
        Some(format!(
            "the base image {} cannot be resolved to a digest, so the image was built and not looked up for reuse",
            each.join(", ")
        ))
    }

    /// The value of [`BASE_IMAGES_LABEL`]: the resolved references and their digests.
    pub fn label(&self) -> String {
        serde_json::to_string(&self.digests).expect("a map of strings serializes")
    }
}

/// The lookup of one base image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Digest { digest: String, by_tag: bool },
    Failed(String),
}

/// Looks up every reference (each once, all at once): pinned ones without a request, the
/// push registry's with `push`, others with the runner's login for their registry, else
/// anonymously. Each lookup is bounded by the registry client's deadline and retries.
pub async fn resolve_all(
    references: &[String],
    push: &OciRegistry,
    runner: &RunnerConfig,
) -> HashMap<String, Resolution> {
    let mut parsed = Vec::new();
    let mut resolved = HashMap::new();
    for reference in references {
        if resolved.contains_key(reference) || parsed.iter().any(|(r, _)| r == reference) {
            continue;
        }
        match ImageRef::parse(reference) {
            Ok(ImageRef {
                digest: Some(digest),
                ..
            }) => {
                let by_tag = false;
                resolved.insert(reference.clone(), Resolution::Digest { digest, by_tag });
            }
            Ok(image) => parsed.push((reference.clone(), image)),
            Err(why) => {
                resolved.insert(reference.clone(), Resolution::Failed(why));
            }
        }
    }
    let mut clients: HashMap<String, Result<OciRegistry, String>> = HashMap::new();
    for (_, image) in &parsed {
        if !clients.contains_key(&image.registry)
            && !hub::same_registry(&push.target().host, &image.registry)
        {
            let client = client_for(&image.registry, runner);
            clients.insert(image.registry.clone(), client);
        }
    }
    let lookups = parsed.iter().map(|(reference, image)| {
        let client = match clients.get(&image.registry) {
            Some(c) => c.as_ref(),
            None => Ok(push),
        };
        let note = runner.helper_note(&image.registry);
        async move {
            let resolution = match client {
                Ok(client) => resolve(client, image, note).await,
                Err(why) => Resolution::Failed(why.clone()),
            };
            (reference.clone(), resolution)
        }
    });
    resolved.extend(futures::future::join_all(lookups).await);
    resolved
}

/// A client of `host`: with the runner's login for it, else anonymous.
fn client_for(host: &str, runner: &RunnerConfig) -> Result<OciRegistry, String> {
    let (username, password) = match runner.login(host) {
        Some(login) => (Some(login.username.clone()), Some(login.password.clone())),
        None => (None, None),
    };
    RegistryTarget::parse(host, username, password)
        .and_then(OciRegistry::new)
        .map_err(|e| crate::error::render_chain(&e))
}

/// The digest `image`'s tag points to: a `HEAD`, then a `GET` when the registry sends no
/// digest with the `HEAD` or refuses the method.
async fn resolve(client: &OciRegistry, image: &ImageRef, helper: Option<String>) -> Resolution {
    let found = match client.tag_digest(&image.repository, &image.tag).await {
        Err(RegistryError::NoDigest { .. } | RegistryError::Status { .. }) => client
            .manifest(&image.repository, &image.tag)
            .await
            .map(|m| Some(m.digest)),
        other => other,
    };
    match found {
        Ok(Some(digest)) => Resolution::Digest {
            digest,
            by_tag: true,
        },
        Ok(None) => Resolution::Failed(format!(
            "{} has no {}:{} (HTTP 404)",
            client.target().host,
            image.repository,
            image.tag
        )),
        Err(RegistryError::NeedsCredentials { host, .. }) => Resolution::Failed(match helper {
            Some(note) => format!("{host} refused a lookup without credentials; {note}"),
            None => format!("{host} refused a lookup without credentials: monoship has a login only for the registry it pushes to and the hosts of the runner's Docker config (docker/login-action with `DOCKER_CONFIG: ${{{{ runner.temp }}}}/docker` in the job's env)"),
        }),
        Err(e) => Resolution::Failed(crate::error::render_chain(&e)),
    }
}

/// A base image that points to another digest than when the last image of the same files
/// was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedBase {
    /// The reference as the Dockerfile names it.
    pub image: String,
    /// The digest the earlier image was built from.
    pub was: String,
    /// The digest it points to now.
    pub now: String,
}

/// The bases whose digest differs between an earlier build's label and now. Pure.
pub fn moved(earlier: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<MovedBase> {
    now.iter()
        .filter_map(|(image, digest)| {
            let was = earlier.get(image)?;
            (was != digest).then(|| MovedBase {
                image: image.clone(),
                was: was.clone(),
                now: digest.clone(),
            })
        })
        .collect()
}

/// Which bases moved since the newest earlier image of the same files and settings: the
/// tags that share the content tag's first part (`src-<inputs>-`), their
/// [`BASE_IMAGES_LABEL`] compared with `now`. Empty when there is no such image or the
/// registry cannot tell; this only explains a build, it never decides one.
pub async fn moved_since_last_build(
    registry: &OciRegistry,
    repository: &str,
    content_tag: &str,
    now: &BTreeMap<String, String>,
) -> Vec<MovedBase> {
    let Some((inputs, _)) = content_tag.rsplit_once('-') else {
        return vec![];
    };
    let prefix = format!("{inputs}-");
    let tags = match registry.tags_after(repository, &prefix, 100).await {
        Ok(tags) => tags,
        Err(e) => {
            tracing::debug!(
                repository,
                "cannot list tags: {}",
                crate::error::render_chain(&e)
            );
            return vec![];
        }
    };
    let earlier = tags
        .iter()
        .filter(|t| t.starts_with(&prefix) && *t != content_tag)
        .take(MAX_EARLIER);
    // The newest of them by the commit date label (images of one commit tie).
    let mut newest: Option<(String, BTreeMap<String, String>)> = None;
    for tag in earlier {
        let Ok(Some(digest)) = registry.tag_digest(repository, tag).await else {
            continue;
        };
        let Ok(labels) = registry.labels(repository, &digest).await else {
            continue;
        };
        let Some(bases) = labels
            .get(BASE_IMAGES_LABEL)
            .and_then(|l| serde_json::from_str::<BTreeMap<String, String>>(l).ok())
        else {
            continue;
        };
        let created = labels.get(CREATED_LABEL).cloned().unwrap_or_default();
        if newest.as_ref().is_none_or(|(c, _)| created >= *c) {
            newest = Some((created, bases));
        }
    }
    newest
        .map(|(_, bases)| moved(&bases, now))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::dockerfile::{BaseImage, Unreadable};

    const DOCKER_HUB: &str = hub::API_HOST;
    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_table() {
        let pinned = format!("ghcr.io/a/b@{D}");
        let tagged_pinned = format!("alpine:3@{D}");
        // reference, (registry, repository, tag, digest)
        type Row<'a> = (&'a str, (&'a str, &'a str, &'a str, Option<&'a str>));
        let rows: Vec<Row> = vec![
            ("alpine", (DOCKER_HUB, "library/alpine", "latest", None)),
            ("alpine:3.20", (DOCKER_HUB, "library/alpine", "3.20", None)),
            (
                "library/alpine:3",
                (DOCKER_HUB, "library/alpine", "3", None),
            ),
            ("docker.io/x/y", (DOCKER_HUB, "x/y", "latest", None)),
            (
                "docker.io/alpine",
                (DOCKER_HUB, "library/alpine", "latest", None),
            ),
            ("index.docker.io/x/y:1", (DOCKER_HUB, "x/y", "1", None)),
            (
                "registry-1.docker.io/x/y",
                (DOCKER_HUB, "x/y", "latest", None),
            ),
            ("Docker.io/x/y", (DOCKER_HUB, "x/y", "latest", None)),
            ("bitnami/redis:7", (DOCKER_HUB, "bitnami/redis", "7", None)),
            ("ghcr.io/acme/base:1", ("ghcr.io", "acme/base", "1", None)),
            (
                "127.0.0.1:5000/base:1",
                ("127.0.0.1:5000", "base", "1", None),
            ),
            (
                "127.0.0.1:5000/base",
                ("127.0.0.1:5000", "base", "latest", None),
            ),
            ("localhost/x", ("localhost", "x", "latest", None)),
            (&pinned, ("ghcr.io", "a/b", "latest", Some(D))),
            (&tagged_pinned, (DOCKER_HUB, "library/alpine", "3", Some(D))),
        ];
        for (reference, (registry, repository, tag, digest)) in rows {
            let r = ImageRef::parse(reference).unwrap_or_else(|e| panic!("{reference}: {e}"));
            assert_eq!(
                (
                    r.registry.as_str(),
                    r.repository.as_str(),
                    r.tag.as_str(),
                    r.digest.as_deref()
                ),
                (registry, repository, tag, digest),
                "{reference}"
            );
        }
        for bad in [
            "Alpine",
            "base:",
            "a@sha256:short",
            "a@md5:x",
            "a:b c",
            "",
            "a:-x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bases_say_what_resolved_what_did_not_and_what_was_not_asked() {
        let found = BaseImages {
            images: ["a:1", "b:1", "c:1", "d:1"]
                .iter()
                .enumerate()
                .map(|(i, r)| BaseImage {
                    line: i + 1,
                    reference: r.to_string(),
                })
                .collect(),
            unreadable: vec![Unreadable {
                line: 9,
                instruction: "FROM $X".into(),
                why: "it depends".into(),
            }],
        };
        let resolved = HashMap::from([
            (
                "a:1".to_string(),
                Resolution::Digest {
                    digest: "sha256:a".into(),
                    by_tag: false,
                },
            ),
            (
                "b:1".to_string(),
                Resolution::Digest {
                    digest: "sha256:b".into(),
                    by_tag: true,
                },
            ),
            ("c:1".to_string(), Resolution::Failed("HTTP 404".into())),
        ]);
        let bases = Bases::of(&found, &resolved);
        assert_eq!(bases.label(), r#"{"a:1":"sha256:a","b:1":"sha256:b"}"#);
        assert!(bases.by_tag);
        assert_eq!(bases.pending, ["d:1"]);
        let warning = bases.unresolved_warning().unwrap();
        assert!(
            warning.contains("`Dockerfile line 9` (it depends)"),
            "{warning}"
        );
        assert!(warning.contains("`c:1` (HTTP 404)"), "{warning}");
        assert_eq!(Bases::default().unresolved_warning(), None);
        assert_eq!(Bases::default().label(), "{}");
    }

    #[test]
    fn a_base_moved_when_its_digest_differs_from_the_earlier_label() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let earlier = map(&[("a", "1"), ("b", "1"), ("gone", "1")]);
        let now = map(&[("a", "1"), ("b", "2"), ("new", "1")]);
        assert_eq!(
            moved(&earlier, &now),
            [MovedBase {
                image: "b".into(),
                was: "1".into(),
                now: "2".into()
            }]
        );
    }
}
