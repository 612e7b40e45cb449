//! monoship: ship only what changed in a monorepo.
//!
//! The pipeline is the module list: [`detect`] which paths changed, [`plan`] which services
//! that touches and why, [`build`] their images, [`push`] them (or find them already pushed,
//! by the content address of [`inputs`]), [`deploy`] them and follow their rollouts, and
//! [`report`] what happened. [`app`] wires the stages together; [`config`], [`dockerfile`]
//! and [`dockerignore`] read the user's files; [`glob`] fixes the path-glob dialect;
//! [`registry`] speaks the OCI distribution API; [`aws`] and [`ecr`] get AWS credentials
//! (GitHub OIDC included) and ECR logins. [`publish`] tells GitHub itself (the sticky
//! pull-request comment, Deployments) through the [`github`] client.

pub mod app;
pub mod aws;
pub mod build;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod detect;
pub mod dockerfile;
pub mod dockerignore;
pub mod ecr;
pub mod eks;
pub mod github;
pub mod glob;
pub mod inputs;
pub mod plan;
pub mod publish;
pub mod push;
pub mod registry;
pub mod report;
