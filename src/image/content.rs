//! Content addresses: a digest of everything a service's image is built from, so an image
//! whose inputs were built before is found in the registry instead of rebuilt.
//!
//! The tag is `src-<inputs>-<bases>`. `<inputs>` (40 hex digits) covers each input file
//! (path, mode and git blob id, or the SHA-256 of its bytes when the work tree differs from
//! the index), the Dockerfile path, the build args, the target and the platforms. Files come
//! from the work tree because that is what Docker sends: a file an earlier CI step generated
//! (untracked or ignored) counts like any other. `<bases>` (24 hex digits) covers the digest
//! of every base image the Dockerfile's `FROM`s name ([`crate::image::base`]); it is a part
//! of its own so that an image of the same files built on other bases can be found by the
//! first part, and the base that moved named.

use std::collections::BTreeMap;
use std::path::Path;

use crate::detect::git::{GitError, GitRepo};
use crate::image::base::Bases;
use crate::image::registry::{hex, sha256_digest};

/// One file of a build context and its content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: String,
    pub mode: String,
    /// A git blob id, or `sha256:<hex>` of the bytes on disk.
    pub id: String,
}

/// Every file in the work tree with a content id: the index's blob ids, overridden by the
/// bytes on disk where the work tree differs (and without deleted files).
///
/// # Errors
/// When git fails.
pub fn work_tree_files(repo: &GitRepo) -> Result<Vec<InputFile>, GitError> {
    let mut files: BTreeMap<String, InputFile> = repo
        .index_entries()?
        .into_iter()
        .map(|e| {
            (
                e.path.clone(),
                InputFile {
                    path: e.path,
                    mode: e.mode,
                    id: e.id,
                },
            )
        })
        .collect();
    for path in repo.work_tree_differences()? {
        match disk_id(&repo.root().join(&path)) {
            Some((mode, id)) => {
                files.insert(path.clone(), InputFile { path, mode, id });
            }
            None => {
                files.remove(&path);
            }
        }
    }
    Ok(files.into_values().collect())
}

/// Mode and content id of a file on disk; `None` when it does not exist (or is a folder).
fn disk_id(path: &Path) -> Option<(String, String)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).ok()?;
        return Some((
            "120000".into(),
            sha256_digest(target.as_os_str().as_encoded_bytes()),
        ));
    }
    if !meta.is_file() {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    #[cfg(unix)]
    let executable = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
    #[cfg(not(unix))]
    let executable = false;
    Some((
        if executable { "100755" } else { "100644" }.into(),
        sha256_digest(&bytes),
    ))
}

/// What else decides an image besides its files.
#[derive(Debug, Clone, Default)]
pub struct BuildSettings<'a> {
    pub dockerfile: &'a str,
    pub context: &'a str,
    pub build_args: Option<&'a BTreeMap<String, String>>,
    pub target: Option<&'a str>,
    pub platforms: &'a [String],
}

/// The content tag: `src-`, 40 hex digits of SHA-256 over the sorted inputs and settings,
/// `-` and the [`bases_key`].
pub fn content_tag(files: &[&InputFile], settings: &BuildSettings, bases: &Bases) -> String {
    format!("{}-{}", inputs_key(files, settings), bases_key(bases))
}

/// Stands for the bases part of a content tag on a dry run, which looks nothing up.
pub const BASES_NOT_LOOKED_UP: &str = "<base-digests>";

/// 24 hex digits of SHA-256 over each base image reference and its digest, or the mark of
/// one without (such an image is always built, so its tag is never looked up). On a dry run
/// with bases to look up, [`BASES_NOT_LOOKED_UP`].
pub fn bases_key(bases: &Bases) -> String {
    if !bases.pending.is_empty() {
        return BASES_NOT_LOOKED_UP.into();
    }
    let mut text = String::from("monoship base images v1\n");
    for (reference, digest) in &bases.digests {
        text.push_str(&format!("base {reference:?} {digest}\n"));
    }
    for reference in bases.unresolved.keys() {
        text.push_str(&format!("base {reference:?} unresolved\n"));
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    hex(digest.as_ref())[..24].to_string()
}

/// `src-` and 40 hex digits of SHA-256 over the sorted inputs and settings.
fn inputs_key(files: &[&InputFile], settings: &BuildSettings) -> String {
    let mut text = String::from("monoship build inputs v2\n");
    text.push_str(&format!(
        "dockerfile {}\ncontext {}\n",
        settings.dockerfile, settings.context
    ));
    if let Some(args) = settings.build_args {
        for (k, v) in args {
            text.push_str(&format!("arg {k:?}={v:?}\n"));
        }
    }
    text.push_str(&format!("target {:?}\n", settings.target));
    let mut platforms = settings.platforms.to_vec();
    platforms.sort();
    text.push_str(&format!("platforms {platforms:?}\n"));
    let mut sorted: Vec<&&InputFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for f in sorted {
        text.push_str(&format!("file {} {} {:?}\n", f.mode, f.id, f.path));
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    format!("src-{}", &hex(digest.as_ref())[..40])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, id: &str) -> InputFile {
        InputFile {
            path: path.into(),
            mode: "100644".into(),
            id: id.into(),
        }
    }

    #[test]
    fn the_tag_depends_on_contents_and_settings_not_order() {
        let (a, b) = (file("a", "1"), file("b", "2"));
        let s = BuildSettings {
            dockerfile: "Dockerfile",
            context: "",
            ..Default::default()
        };
        let content_tag =
            |files: &[&InputFile], s: &BuildSettings| content_tag(files, s, &Bases::default());
        let t1 = content_tag(&[&a, &b], &s);
        assert_eq!(t1, content_tag(&[&b, &a], &s));
        assert!(t1.starts_with("src-") && t1.len() == 69, "{t1}");
        assert_eq!(t1.as_bytes()[44], b'-');
        assert_ne!(t1, content_tag(&[&a, &file("b", "3")], &s));
        assert_ne!(t1, content_tag(&[&a, &file("c", "2")], &s));
        let args: BTreeMap<String, String> = [("X".to_string(), "1".to_string())].into();
        assert_ne!(
            t1,
            content_tag(
                &[&a, &b],
                &BuildSettings {
                    build_args: Some(&args),
                    ..s.clone()
                }
            )
        );
        assert_ne!(
            t1,
            content_tag(
                &[&a, &b],
                &BuildSettings {
                    target: Some("prod"),
                    ..s.clone()
                }
            )
        );
        let p = vec!["linux/arm64".to_string()];
        assert_ne!(
            t1,
            content_tag(
                &[&a, &b],
                &BuildSettings {
                    platforms: &p,
                    ..s.clone()
                }
            )
        );
    }

    #[test]
    fn the_bases_part_follows_the_digests_and_the_files_part_does_not() {
        let a = file("a", "1");
        let s = BuildSettings {
            dockerfile: "Dockerfile",
            ..Default::default()
        };
        let bases = |digest: &str| Bases {
            digests: [("alpine:3".to_string(), digest.to_string())].into(),
            ..Default::default()
        };
        let (one, two) = (
            content_tag(&[&a], &s, &bases("sha256:1")),
            content_tag(&[&a], &s, &bases("sha256:2")),
        );
        assert_ne!(one, two);
        assert_eq!(one[..45], two[..45], "same files: same first part");
        assert_eq!(one, content_tag(&[&a], &s, &bases("sha256:1")));
        let unresolved = Bases {
            unresolved: [("alpine:3".to_string(), "HTTP 404".to_string())].into(),
            ..Default::default()
        };
        let why_does_not_count = Bases {
            unresolved: [("alpine:3".to_string(), "timeout".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(bases_key(&unresolved), bases_key(&why_does_not_count));
        assert_ne!(bases_key(&unresolved), bases_key(&Bases::default()));
        let pending = Bases {
            pending: vec!["alpine:3".into()],
            ..Default::default()
        };
        assert!(content_tag(&[&a], &s, &pending).ends_with("-<base-digests>"));
    }
}
