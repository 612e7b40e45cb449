//! Deploy marks: every digest `ship` deploys gets a tag of its own, `deployed-<digest>`, so a
//! registry's retention rules can keep what runs.
//!
//! Why: a reused image keeps the push date of its first push, so an ECR lifecycle rule on push
//! age (or a count rule, which ECR orders by push date too) can expire a digest that a workload
//! runs. A rule of higher priority that selects the `deployed-` tags protects those images
//! from every rule below it (docs/ecr-lifecycle.md has the policy).
//!
//! The tag is a function of the digest alone, so it never moves: it works with immutable tags,
//! a redeploy of the same digest adds nothing, and there is at most one such tag per image.

use crate::image::registry::{OciRegistry, RegistryError};

/// What every deploy mark starts with; a lifecycle rule selects them by this prefix.
pub const DEPLOYED_TAG_PREFIX: &str = "deployed-";

/// Hex digits of the digest in the tag: 64 bits, unique among the images of a repository.
const DIGEST_DIGITS: usize = 16;

/// The deploy mark of `digest` (`sha256:<64 hex>`): `deployed-` and its first 16 hex digits.
/// `None` for anything else. Pure.
pub fn deployed_tag(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then(|| format!("{DEPLOYED_TAG_PREFIX}{}", &hex[..DIGEST_DIGITS]))
}

/// What [`mark_deployed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// The tag was put on the digest now.
    Added(String),
    /// The tag already named the digest (an earlier deploy of the same image).
    Present(String),
}

impl Marked {
    pub fn tag(&self) -> &str {
        match self {
            Marked::Added(tag) | Marked::Present(tag) => tag,
        }
    }
}

/// Why a digest could not be marked.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error("`{digest}` is not a sha256 digest")]
    BadDigest { digest: String },
    #[error("{repository}:{tag} already names {other}, not {digest}; delete that tag")]
    Taken {
        repository: String,
        tag: String,
        digest: String,
        other: String,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Tags `repository@digest` with its deploy mark: the stored manifest is put again under the
/// tag (no layer moves, the digest stays). A tag that already names the digest is left alone,
/// so an immutable repository never sees a second write.
///
/// # Errors
/// When the digest is malformed, the tag names another digest, or the registry fails.
pub async fn mark_deployed(
    registry: &OciRegistry,
    repository: &str,
    digest: &str,
) -> Result<Marked, MarkError> {
    let tag = deployed_tag(digest).ok_or_else(|| MarkError::BadDigest {
        digest: digest.to_string(),
    })?;
    match registry.tag_digest(repository, &tag).await? {
        Some(existing) if existing == digest => return Ok(Marked::Present(tag)),
        Some(other) => {
            return Err(MarkError::Taken {
                repository: repository.to_string(),
                tag,
                digest: digest.to_string(),
                other,
            })
        }
        None => {}
    }
    let manifest = registry.manifest(repository, digest).await?;
    registry.put_manifest(repository, &tag, &manifest).await?;
    Ok(Marked::Added(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_the_digest_s_first_sixteen_hex_digits() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(
            deployed_tag(&digest).as_deref(),
            Some("deployed-0123456789abcdef")
        );
        for bad in [
            "sha256:0123",
            "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "latest",
        ] {
            assert_eq!(deployed_tag(bad), None, "{bad}");
        }
    }
}
