//! The WebAssembly twins of kv-append and kv-attend.

use super::Wasm;
use crate::error::WasmError;
use crate::spec::KernelSpec;

/// Emits and validates both modules of a KV kernel.
pub(super) fn emit(spec: &KernelSpec) -> Result<Wasm, WasmError> {
    Err(WasmError::Assemble {
        kernel: spec.name(),
        variant: "simd",
        message: "the KV WebAssembly twins are being written (issue 4)".into(),
    })
}
