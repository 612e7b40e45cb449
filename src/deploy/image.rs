//! Which containers of a pod template run a service's image.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::image::hub;

/// A container picked for the new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub name: String,
    /// `true` for an entry of `initContainers`.
    pub init: bool,
    /// The image it runs now.
    pub image: String,
}

/// The repository of an image reference, normalized as Docker names images: without tag or
/// digest, `docker.io` and `library/` filled in, so `nginx:1.27`, `docker.io/library/nginx`
/// and `index.docker.io/library/nginx@sha256:...` are one repository. The colon of a
/// registry port (`host:5000/shop/cart`) is not a tag separator.
pub fn repository_of(image: &str) -> String {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let has_registry =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_registry, first.is_empty()) {
        // Every spelling of Docker Hub is one registry (`crate::image::hub`).
        (true, _) if hub::is_docker_hub(first) => format!("{}/{rest}", hub::NAME),
        (true, _) => name.to_string(),
        (false, true) => format!("{}/library/{rest}", hub::NAME),
        (false, false) => format!("{}/{name}", hub::NAME),
    }
}

/// The containers (and init containers) to update: the one named `container`, else every one
/// whose image belongs to one of `repositories` (the first is the one named in messages).
///
/// # Errors
/// When nothing matches; the message lists what the template runs, so the user can fix the
/// config's `container` or the registry.
pub fn pick_containers(
    template: &PodTemplateSpec,
    container: Option<&str>,
    repositories: &[&str],
) -> Result<Vec<Picked>, String> {
    let spec = template.spec.clone().unwrap_or_default();
    let all: Vec<Picked> = spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(spec.init_containers.iter().flatten().map(|c| (c, true)))
        .map(|(c, init)| Picked {
            name: c.name.clone(),
            init,
            image: c.image.clone().unwrap_or_default(),
        })
        .collect();
    let wanted: Vec<String> = repositories.iter().map(|r| repository_of(r)).collect();
    let picked: Vec<Picked> = all
        .iter()
        .filter(|c| match container {
            Some(name) => c.name == name,
            None => wanted.contains(&repository_of(&c.image)),
        })
        .cloned()
        .collect();
    if !picked.is_empty() {
        return Ok(picked);
    }
    let listing = all
        .iter()
        .map(|c| {
            let kind = if c.init { " (init)" } else { "" };
            format!("{}{kind} runs {}", c.name, c.image)
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(match container {
        Some(name) => format!("no container named {name:?}; the pod template has: {listing}"),
        None => format!(
            "no container runs an image of {}; the pod template has: {listing} \
             (set `container` in the deploy config to pick one)",
            repositories.first().unwrap_or(&"")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repositories_are_normalized_like_docker() {
        let table = [
            ("127.0.0.1:5000/shop/cart:old", "127.0.0.1:5000/shop/cart"),
            ("127.0.0.1:5000/shop/cart", "127.0.0.1:5000/shop/cart"),
            (
                "127.0.0.1:5000/shop/cart@sha256:0123",
                "127.0.0.1:5000/shop/cart",
            ),
            (
                "127.0.0.1:5000/shop/cart:v1@sha256:0123",
                "127.0.0.1:5000/shop/cart",
            ),
            ("localhost:5000/cart:1", "localhost:5000/cart"),
            ("localhost/cart", "localhost/cart"),
            ("nginx", "docker.io/library/nginx"),
            ("nginx:1.27", "docker.io/library/nginx"),
            ("library/nginx", "docker.io/library/nginx"),
            ("docker.io/library/nginx:1", "docker.io/library/nginx"),
            ("index.docker.io/library/nginx", "docker.io/library/nginx"),
            ("registry-1.docker.io/acme/cart:1", "docker.io/acme/cart"),
            ("docker.io/acme/cart@sha256:0123", "docker.io/acme/cart"),
            ("org/app:v1", "docker.io/org/app"),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/cart:abc",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/cart",
            ),
        ];
        for (image, want) in table {
            assert_eq!(repository_of(image), want, "{image}");
        }
    }

    fn template() -> PodTemplateSpec {
        serde_json::from_value(json!({"spec": {
        "initContainers": [{"name": "migrate", "image": "127.0.0.1:5000/shop/cart:old"}],
        "containers": [
            {"name": "cart", "image": "127.0.0.1:5000/shop/cart:old"},
            {"name": "proxy", "image": "127.0.0.1:5000/shop/cart-proxy:1"},
            {"name": "other-port", "image": "127.0.0.1:5001/shop/cart:old"},
        ]}}))
        .unwrap()
    }

    #[test]
    fn containers_are_picked_by_repository_with_a_registry_port() {
        let picked = pick_containers(&template(), None, &["127.0.0.1:5000/shop/cart"]).unwrap();
        let names: Vec<_> = picked.iter().map(|p| (p.name.as_str(), p.init)).collect();
        assert_eq!(names, [("cart", false), ("migrate", true)]);
    }

    #[test]
    fn either_repository_of_a_service_is_picked() {
        let both = ["127.0.0.1:5000/shop/pr/cart", "127.0.0.1:5001/shop/cart"];
        let picked = pick_containers(&template(), None, &both).unwrap();
        let names: Vec<_> = picked.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["other-port"]);
    }

    #[test]
    fn a_named_container_wins_over_the_repository() {
        let picked = pick_containers(&template(), Some("proxy"), &["ignored/repo"]).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].image, "127.0.0.1:5000/shop/cart-proxy:1");
    }

    #[test]
    fn no_match_lists_what_runs() {
        let err = pick_containers(&template(), None, &["ghcr.io/shop/cart"]).unwrap_err();
        assert!(
            err.contains("no container runs an image of ghcr.io/shop/cart"),
            "{err}"
        );
        assert!(
            err.contains("proxy runs 127.0.0.1:5000/shop/cart-proxy:1"),
            "{err}"
        );
        assert!(err.contains("migrate (init) runs"), "{err}");
        let err = pick_containers(&template(), Some("web"), &["x"]).unwrap_err();
        assert!(err.starts_with("no container named \"web\""), "{err}");
    }
}
