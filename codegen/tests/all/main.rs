//! codegen's one integration-test binary.
mod caps;
mod codec;
mod decode;
mod emit;
mod format_doc;
mod golden;
mod golden_wat;
mod spec;
