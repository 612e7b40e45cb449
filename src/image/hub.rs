//! Docker Hub's names, in one place for base images and pushes alike: images are written
//! `docker.io/<namespace>/<name>`, the distribution API answers at `registry-1.docker.io` (its
//! challenge sends clients to `auth.docker.io`), and the Docker daemon and CLI key Hub's
//! credentials by `https://index.docker.io/v1/`. Pure.

/// How Docker writes Docker Hub in image names.
pub const NAME: &str = "docker.io";

/// Where Docker Hub answers the distribution API.
pub const API_HOST: &str = "registry-1.docker.io";

/// The server address the Docker daemon (`POST /auth`, `X-Registry-Config`) and the docker CLI
/// know Docker Hub's credentials by (moby's `IndexServer`).
pub const AUTH_ADDRESS: &str = "https://index.docker.io/v1/";

/// Docker Hub's rate limit, and what to do when it is used up.
pub const RATE_LIMIT: &str = "Docker Hub's rate limit on pulls (per IP address without a login, per account with one; see https://docs.docker.com/docker-hub/usage/) is used up; wait for it to reset, or log in with an account of a higher limit (registry-username, MONOSHIP_REGISTRY_PASSWORD)";

/// What to add to a failed build's or push's message when the daemon's `log` shows a
/// registry's rate limit (the distribution error `toomanyrequests`, as Hub answers a pull or
/// push over its limit); `None` otherwise.
pub fn rate_limit_hint(log: &str) -> Option<String> {
    let limited = log.to_ascii_lowercase().contains("toomanyrequests");
    limited.then(|| {
        format!("a registry's rate limit stopped it (HTTP 429); if it is Docker Hub: {RATE_LIMIT}")
    })
}

/// Whether `host` is one of Docker Hub's names: `docker.io`, `index.docker.io` (the old index),
/// `registry-1.docker.io` (the API host), in any case.
pub fn is_docker_hub(host: &str) -> bool {
    ["docker.io", "index.docker.io", API_HOST]
        .iter()
        .any(|h| host.eq_ignore_ascii_case(h))
}

/// `host` as Docker writes it in image names: `docker.io` for every spelling of Docker Hub,
/// other hosts as they are.
pub fn image_host(host: &str) -> String {
    match is_docker_hub(host) {
        true => NAME.to_string(),
        false => host.to_string(),
    }
}

/// The `host[:port]` that answers the distribution API for `host`.
pub fn api_host(host: &str) -> String {
    match is_docker_hub(host) {
        true => API_HOST.to_string(),
        false => host.to_string(),
    }
}

/// The `serveraddress` of a login to `host`, as the Docker daemon and CLI store it.
pub fn auth_address(host: &str) -> String {
    match is_docker_hub(host) {
        true => AUTH_ADDRESS.to_string(),
        false => host.to_string(),
    }
}

/// Whether two registry hosts are the same registry (Docker Hub goes by several names; host
/// names ignore case).
pub fn same_registry(a: &str, b: &str) -> bool {
    api_host(a).eq_ignore_ascii_case(&api_host(b))
}

/// Why `repository` (the path inside Docker Hub, namespace included) cannot be a Docker Hub
/// repository: Hub takes exactly `<namespace>/<name>`. `None` when it can.
pub fn repository_problem(repository: &str) -> Option<String> {
    match repository.split('/').count() {
        2 => None,
        1 => Some(format!(
            "Docker Hub repositories live below a user or organisation: use `docker.io/<namespace>` as the registry, and `{repository}` goes to `docker.io/<namespace>/{repository}`"
        )),
        _ => Some(format!(
            "Docker Hub repositories are `<namespace>/<name>`, one level below the user or organisation, and `{repository}` has more; give the service a repository name without `/` (`repository:` in its config)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_docker_hub_maps_to_one_registry() {
        // spelling, (image host, API host, daemon server address)
        let hub = ("docker.io", API_HOST, AUTH_ADDRESS);
        let rows = [
            ("docker.io", hub),
            ("index.docker.io", hub),
            ("registry-1.docker.io", hub),
            ("Docker.IO", hub),
            ("INDEX.docker.io", hub),
            ("ghcr.io", ("ghcr.io", "ghcr.io", "ghcr.io")),
            (
                "127.0.0.1:5000",
                ("127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"),
            ),
            // Look-alikes are other registries.
            (
                "docker.io.evil.example",
                (
                    "docker.io.evil.example",
                    "docker.io.evil.example",
                    "docker.io.evil.example",
                ),
            ),
            ("mydocker.io", ("mydocker.io", "mydocker.io", "mydocker.io")),
            ("registry-2.docker.io", {
                let h = "registry-2.docker.io";
                (h, h, h)
            }),
        ];
        for (spelling, (image, api, auth)) in rows {
            assert_eq!(
                (
                    image_host(spelling).as_str(),
                    api_host(spelling).as_str(),
                    auth_address(spelling).as_str()
                ),
                (image, api, auth),
                "{spelling}"
            );
        }
    }

    #[test]
    fn hub_names_are_the_same_registry_and_others_are_not() {
        for a in ["docker.io", "index.docker.io", API_HOST, "DOCKER.IO"] {
            for b in ["docker.io", "index.docker.io", API_HOST] {
                assert!(same_registry(a, b), "{a} {b}");
            }
            assert!(!same_registry(a, "ghcr.io"));
        }
        assert!(same_registry("GHCR.io", "ghcr.io"));
        assert!(!same_registry("127.0.0.1:5000", "127.0.0.1:5001"));
    }

    #[test]
    fn daemon_logs_that_hit_a_rate_limit_get_a_hint() {
        let log =
            "abc: Preparing\nERROR: toomanyrequests: You have reached your pull rate limit.\n";
        let hint = rate_limit_hint(log).unwrap();
        assert!(
            hint.contains("HTTP 429") && hint.contains(RATE_LIMIT),
            "{hint}"
        );
        assert_eq!(
            rate_limit_hint("ERROR: denied: requested access to the resource is denied"),
            None
        );
    }

    #[test]
    fn hub_repositories_are_a_namespace_and_one_name() {
        assert_eq!(repository_problem("acme/cart"), None);
        assert_eq!(repository_problem("acme/pr-cart"), None);
        let alone = repository_problem("cart").unwrap();
        assert!(alone.contains("docker.io/<namespace>"), "{alone}");
        let deep = repository_problem("acme/team/cart").unwrap();
        assert!(
            deep.contains("`acme/team/cart`") && deep.contains("without `/`"),
            "{deep}"
        );
    }
}
