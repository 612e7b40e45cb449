//! Paths a repository names must stay inside it. A pull request controls the checkout, so a
//! committed symbolic link could otherwise point a build context, a Dockerfile, a manifest or
//! the config at files beside the checkout (a kubeconfig, the runner's workspace), which would
//! then be sent to Docker, applied to the cluster or quoted in an error.

use std::path::{Component, Path, PathBuf};

/// A repository path that leads out of the repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}` leads outside the repository through `{link}`, a symbolic link to `{target}`; monoship follows no link out of the checkout: replace the link with the files it should name")]
pub struct Escape {
    /// The path as the repository names it.
    pub path: String,
    /// The link on the way, from the repository root.
    pub link: String,
    /// The link's target as written in the repository.
    pub target: String,
}

/// Checks that `path` (from `root`) stays inside `root` when every symbolic link on the way is
/// followed. Components that do not exist end the walk: a missing file is reported by whoever
/// reads it.
///
/// # Errors
/// The first link on the way whose target resolves outside `root`.
pub fn inside(root: &Path, path: &str) -> Result<(), Escape> {
    let Ok(real_root) = std::fs::canonicalize(root) else {
        return Ok(());
    };
    let mut walked = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => walked.push(name),
            Component::ParentDir => {
                walked.pop();
                continue;
            }
            _ => continue,
        }
        let full = root.join(&walked);
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            return Ok(());
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        let target = std::fs::read_link(&full).unwrap_or_default();
        let resolved = std::fs::canonicalize(&full);
        // A dangling link reads nothing; only a link that resolves outside is refused.
        if resolved.is_ok_and(|r| !r.starts_with(&real_root)) {
            return Err(Escape {
                path: path.to_string(),
                link: walked.display().to_string(),
                target: target.display().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("svc/cart")).unwrap();
        std::fs::write(repo.join("svc/cart/Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join("kubeconfig"), "secret").unwrap();
        dir
    }

    #[test]
    fn plain_paths_and_links_that_stay_inside_pass() {
        let dir = tree();
        let repo = dir.path().join("repo");
        symlink("svc/cart", repo.join("cart")).unwrap();
        symlink("../cart/Dockerfile", repo.join("svc/df")).unwrap();
        for path in [
            "svc/cart/Dockerfile",
            "cart/Dockerfile",
            "svc/df",
            "missing/x",
            "",
        ] {
            assert_eq!(inside(&repo, path), Ok(()), "{path}");
        }
    }

    #[test]
    fn a_link_out_of_the_repository_is_refused_naming_it_and_its_target() {
        let dir = tree();
        let repo = dir.path().join("repo");
        symlink("..", repo.join("ws")).unwrap();
        symlink("../../../kubeconfig", repo.join("svc/cart/k8s.yml")).unwrap();
        let err = inside(&repo, "ws/kubeconfig").unwrap_err();
        assert_eq!((err.link.as_str(), err.target.as_str()), ("ws", ".."));
        let err = inside(&repo, "ws").unwrap_err();
        assert_eq!(err.path, "ws");
        let err = inside(&repo, "svc/cart/k8s.yml").unwrap_err();
        assert_eq!(err.link, "svc/cart/k8s.yml");
        assert!(err.to_string().contains("`../../../kubeconfig`"), "{err}");
    }

    #[test]
    fn an_absolute_link_out_is_refused_too() {
        let dir = tree();
        let repo = dir.path().join("repo");
        symlink(dir.path().join("kubeconfig"), repo.join("abs")).unwrap();
        assert!(inside(&repo, "abs").is_err());
    }
}
