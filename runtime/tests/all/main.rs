//! runtime's one integration-test binary.
mod diff;
mod exec;
mod kv_gpu;
mod wasm;
