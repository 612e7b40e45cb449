//! One integration-test binary: real git repositories in temp dirs, the real `monoship`
//! binary, and loopback fakes where a remote service is involved.

// Each test is one scenario that reads top to bottom; the length limit is for src/.
#![allow(clippy::too_many_lines)]

mod support;

mod action;
mod architecture;
mod aws;
mod base_images;
mod bigrepo;
mod bounded;
mod build;
mod buildkit;
mod comment;
mod container;
mod deploy;
mod example;
mod exit_codes;
mod faults;
mod github;
mod hostile;
mod hub;
mod lifecycle;
mod plan_git;
mod preflight;
mod provenance;
mod registry;
mod release;
mod report;
mod runner_docker;
mod secrets;
mod ship;
mod signals;
mod since_deployed;
