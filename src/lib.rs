//! monoship: ship only what changed in a monorepo.
//!
//! The pipeline is the module list, in order: [`detect`] which paths changed, [`plan`] which
//! services that touches and why, [`image`] builds and pushes their images (or finds them
//! already pushed, by content address), [`deploy`] puts them on a cluster and follows their
//! rollouts, and [`report`] tells what happened. [`app`] runs the stages in that order.
//!
//! Beside the stages: [`cli`] reads flags and action inputs, [`config`] the user's config;
//! [`aws`] gets AWS credentials (GitHub OIDC included) for ECR and EKS; `github` is the REST
//! client that detect (changed files) and report (the comment, Deployments) share; [`error`],
//! [`secret`] and [`interrupt`] (SIGINT/SIGTERM) are leaves every stage may use.

// Test scenarios read top to bottom; the length limit is for the code they test.
#![cfg_attr(test, allow(clippy::too_many_lines))]

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod detect;
pub mod error;
pub(crate) mod github;
pub mod image;
pub mod interrupt;
pub mod plan;
pub mod report;
pub(crate) mod retry;
pub mod secret;
