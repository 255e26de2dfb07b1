//! shadergen's generator: from a [`KernelSpec`] to validated WGSL, with the quantization
//! codec and the scalar reference every engine is checked against.
//!
//! ```text
//! KernelSpec { op, format, profile, tuning }      (spec, profile: one table of targets)
//!     ├─► wgsl::emit ─► askama templates ─► naga parse + validate ─► MSL / HLSL / SPIR-V
//!     ├─► reference::matmul (f64 oracle over codec::Weights::dequantize)
//!     └─► package::write ─► DIR/*.wgsl + manifest.json (all or nothing)
//! codec::Weights::quantize ─► packed words + f16 scales/mins (docs/FORMAT.md)
//! ```
//!
//! Invariants: a `KernelSpec` is coherent once built (bits, group, tier checked); `emit`
//! returns only text naga has validated with the profile's capabilities; output is
//! deterministic (no maps with random order, names derived from the spec).

#![deny(missing_docs)]

pub mod caps;
pub mod codec;
pub mod error;
pub mod kv;
pub mod manifest;
pub mod profile;
pub mod reference;
pub mod spec;
pub mod wasm;
pub mod wgsl;

pub use codec::Weights;
pub use error::{CodecError, KvError, PackageError, SpecError, WasmError, WgslError};
pub use kv::{KvCache, KvLayout};
pub use profile::{Dialect, Profile, Target, Tier};
pub use spec::{Format, KernelSpec, Op, Scheme};
