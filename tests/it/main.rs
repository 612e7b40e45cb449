//! One integration-test binary: real git repositories in temp dirs, the real `monoship`
//! binary, and loopback fakes where a remote service is involved.

mod support;

mod action;
mod aws;
mod bigrepo;
mod build;
mod deploy;
mod example;
mod github;
mod plan_git;
mod registry;
mod ship;
