//! Image: build each changed service's image and push it, or find it already pushed.
//!
//! [`content`] names an image by what goes into it (the `src-<inputs>-<bases>` tag), [`base`]
//! resolves the base images of its `FROM`s to digests; [`build`] picks the builder: the
//! daemon's BuildKit through the Engine API client [`engine`], fed the context [`tarball`]
//! makes and read back through [`progress`], or the buildx CLI; [`push`] decides per image
//! whether to build, reuse or retag; [`registry`] speaks the OCI distribution API, [`hub`]
//! holds Docker Hub's names (for pushes and base images alike), and [`ecr`] gets ECR logins
//! and repositories; [`lifecycle`] tags each deployed digest so retention rules can keep what
//! runs.

pub mod base;
pub(crate) mod build;
pub(crate) mod content;
pub mod docker_config;
pub mod ecr;
pub(crate) mod engine;
pub mod hub;
pub mod lifecycle;
pub(crate) mod progress;
pub(crate) mod push;
pub mod registry;
pub(crate) mod tarball;
