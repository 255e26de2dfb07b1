//! Integration tests of the `shadergen` binary: each runs the built executable.

mod caps;
mod common;
mod emit;
mod errors;
mod kv_plan;
mod list;
mod matrix;
mod validate;
