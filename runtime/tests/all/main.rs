//! runtime's one integration-test binary.
mod diff;
mod exec;
mod wasm;
