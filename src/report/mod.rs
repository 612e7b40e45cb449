//! Report: what happened, told through the channels the user reads: stdout (text or JSON),
//! and in action mode `$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY` and workflow commands.
//! Rendering is pure; [`outputs::append`] and [`summary::append`] are the only writers.

pub(crate) mod annotations;
pub mod commands;
pub(crate) mod comment;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod log;
pub mod outputs;
pub(crate) mod publish;
pub mod summary;
pub mod text;
