//! After the deploy stage of `ship`: each image a workload may now run gets its deploy mark
//! (`deployed-<digest>`, see [`crate::image::lifecycle`]) in the registry, so a lifecycle
//! policy that keeps those tags never expires a running digest.

use super::Run;
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::image::lifecycle::{mark_deployed, Marked};
use crate::image::push::ImageResult;
use crate::image::registry::{OciRegistry, RegistryTarget};

/// Marks the digest of every image that a rollout put into a workload: succeeded, or failed
/// and left in place (its pods may run). A rolled-back or skipped rollout marks nothing. The
/// tag joins the image's `tags`; a mark that cannot be made is a warning, returned for the
/// report (the deploy itself stands).
pub(crate) fn mark_deployed_images(
    run: &Run<'_>,
    target: &RegistryTarget,
    images: &mut [ImageResult],
    rollouts: &[RolloutResult],
) -> Vec<String> {
    let mut warnings = Vec::new();
    let registry = match OciRegistry::new(target.clone()) {
        Ok(r) => r,
        Err(error) => return vec![cannot_mark("the images", &error.to_string())],
    };
    for image in images.iter_mut() {
        let ran = rollouts.iter().any(|r| {
            r.service == image.service
                && matches!(r.status, RolloutStatus::Succeeded | RolloutStatus::Failed)
        });
        let (Some(reference), Some(digest)) = (image.image.clone(), image.digest.clone()) else {
            continue;
        };
        if !ran {
            continue;
        }
        let Some(repository) = repository_path(&reference, &target.host) else {
            warnings.push(cannot_mark(&reference, "it is not in the run's registry"));
            continue;
        };
        match run
            .session
            .block_on(mark_deployed(&registry, repository, &digest))
        {
            Ok(marked) => {
                if let Marked::Added(tag) = &marked {
                    tracing::info!(%reference, %tag, "marked the deployed image");
                }
                let tag = marked.tag().to_string();
                if !image.tags.contains(&tag) {
                    image.tags.push(tag);
                }
            }
            Err(error) => {
                warnings.push(cannot_mark(&reference, &crate::error::render_chain(&error)))
            }
        }
    }
    warnings
}

fn cannot_mark(what: &str, why: &str) -> String {
    format!(
        "could not tag {what} as deployed ({why}); a registry lifecycle policy that keeps `deployed-*` tags will not know it runs (docs/ecr-lifecycle.md)"
    )
}

/// The repository path of `host/path@digest` on `host`. Pure.
fn repository_path<'a>(reference: &'a str, host: &str) -> Option<&'a str> {
    let (name, _) = reference.split_once('@')?;
    name.strip_prefix(host)?
        .strip_prefix('/')
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_path_is_the_reference_without_host_and_digest() {
        let host = "127.0.0.1:5000";
        assert_eq!(
            repository_path("127.0.0.1:5000/pr/shop/cart@sha256:ab", host),
            Some("pr/shop/cart")
        );
        assert_eq!(
            repository_path("127.0.0.1:50001/cart@sha256:ab", host),
            None
        );
        assert_eq!(repository_path("127.0.0.1:5000/cart", host), None);
        assert_eq!(repository_path("127.0.0.1:5000/@sha256:ab", host), None);
    }
}
