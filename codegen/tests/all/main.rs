//! codegen's one integration-test binary.
mod codec;
mod decode;
mod emit;
mod golden;
mod spec;
