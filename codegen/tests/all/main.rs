//! codegen's one integration-test binary.
mod emit;
