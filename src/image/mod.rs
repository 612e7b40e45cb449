//! Image: build each changed service's image and push it, or find it already pushed.
//!
//! [`content`] names an image by what goes into it (the `src-<digest>` tag); [`build`] drives
//! the Docker CLI; [`push`] decides per image whether to build, reuse or retag; [`registry`]
//! speaks the OCI distribution API and [`ecr`] gets ECR logins and repositories;
//! [`lifecycle`] tags each deployed digest so retention rules can keep what runs.

pub(crate) mod build;
pub(crate) mod content;
pub mod ecr;
pub mod lifecycle;
pub(crate) mod push;
pub mod registry;
