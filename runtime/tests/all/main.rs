//! runtime's one integration-test binary.
mod exec;
mod wasm;
