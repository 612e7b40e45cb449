//! Integration tests: the simulator in-process on an ephemeral port, driven by the real
//! `kubectl` and by plain HTTP.

#![allow(clippy::too_many_lines)]

mod binary;
mod http;
mod kubectl;
mod util;
