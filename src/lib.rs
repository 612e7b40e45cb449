//! monoship: ship only what changed in a monorepo.
//!
//! The pipeline is the module list: [`detect`] which paths changed, [`plan`] which services
//! that touches and why, then build, push and deploy those services, and [`report`] what
//! happened. [`app`] wires the stages together; [`config`], [`dockerfile`] and
//! [`dockerignore`] read the user's files; [`glob`] fixes the path-glob dialect.

pub mod app;
pub mod cli;
pub mod config;
pub mod detect;
pub mod dockerfile;
pub mod dockerignore;
pub mod glob;
pub mod plan;
pub mod report;
