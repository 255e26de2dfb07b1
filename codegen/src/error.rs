//! Errors by stage. Each says *where* (which kernel, row, value) and then *what*, with the
//! allowed values named, so a CLI user can fix the input from the message alone.

use std::path::PathBuf;

/// A `KernelSpec` (or one of its parts) that cannot be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// Unknown browser target.
    #[error("unknown target `{0}`: expected one of generic, chrome, edge, firefox, safari, native")]
    UnknownTarget(String),
    /// A tier that the target does not have.
    #[error("target `{target}` has no tier `{tier}`: its tiers are {allowed}")]
    UnknownTier {
        /// The target asked for.
        target: String,
        /// The tier asked for.
        tier: String,
        /// The tiers it has, comma separated.
        allowed: String,
    },
    /// Unknown op.
    #[error("unknown op `{0}`: expected one of matvec, matmul, kv-append, kv-attend")]
    UnknownOp(String),
    /// Unsupported bit width.
    #[error("unsupported bits `{0}`: expected 2, 3, 4, 8 (or 16 for the unquantized f16 baseline)")]
    Bits(u32),
    /// Unsupported group size.
    #[error("unsupported group size `{0}`: expected 32, 64 or 128")]
    GroupSize(u32),
    /// Unknown quantization scheme.
    #[error("unknown scheme `{0}`: expected sym or asym")]
    Scheme(String),
    /// K is not a multiple of the group size.
    #[error("K = {k} is not a positive multiple of the group size {group}")]
    KNotMultiple {
        /// The K asked for.
        k: u64,
        /// The group size it must be a multiple of.
        group: u32,
    },
    /// A shape is over what the target may assume.
    #[error("{what} = {value} is over the `{target}` limit of {limit} ({why})")]
    OverLimit {
        /// What was measured (`N`, `M`, `weight bytes`...).
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
        /// The target whose limit it is.
        target: String,
        /// Which device limit imposes it.
        why: &'static str,
    },
    /// A head dimension the KV kernels are not generated for.
    #[error("unsupported head_dim `{0}`: expected 64 or 128")]
    HeadDim(u32),
    /// A format or layout that is not a KV-cache format.
    #[error("invalid KV cache: {0}")]
    KvFormat(String),
    /// A zero dimension.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// Quantization input that cannot be encoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CodecError {
    /// NaN or infinity in the input.
    #[error("weight [{row}, {col}] is {value}: only finite values can be quantized")]
    NonFinite {
        /// Row (N index).
        row: usize,
        /// Column (K index).
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// The group's range does not fit an f16 scale.
    #[error("group {group} of row {row} spans {range:e}: its scale overflows f16 (max 65504)")]
    ScaleOverflow {
        /// Row.
        row: usize,
        /// Group index along K.
        group: usize,
        /// max - min (or the absolute maximum for symmetric groups).
        range: f32,
    },
    /// A value does not fit f16 (the f16 baseline or an asymmetric min).
    #[error("weight [{row}, {col}] = {value:e} does not fit f16 (max 65504)")]
    F16Overflow {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
        /// Value.
        value: f32,
    },
    /// The data length does not match the shape.
    #[error("expected {expected} values for a {n}x{k} matrix, found {found}")]
    Length {
        /// Rows.
        n: usize,
        /// Columns.
        k: usize,
        /// n*k.
        expected: usize,
        /// What was given.
        found: usize,
    },
    /// The shape is invalid for the format.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Emitted WGSL that failed to render, parse, validate or cross-compile.
#[derive(Debug, thiserror::Error)]
pub enum WgslError {
    /// askama failed to render the template.
    #[error("kernel `{kernel}`: template failed to render: {source}")]
    Template {
        /// Kernel name.
        kernel: String,
        /// askama's error.
        source: askama::Error,
    },
    /// naga rejected the text; `report` shows the offending line.
    #[error("`{kernel}`: naga {stage} failed:\n{report}")]
    Naga {
        /// Kernel name (or file name for `validate`).
        kernel: String,
        /// `parse` or `validation`.
        stage: &'static str,
        /// naga's report with the WGSL source line it points at.
        report: String,
    },
    /// A naga backend failed to translate a valid module.
    #[error("kernel `{kernel}`: naga {lang} backend failed: {message}")]
    Backend {
        /// Kernel name.
        kernel: String,
        /// `MSL`, `HLSL` or `SPIR-V`.
        lang: &'static str,
        /// The backend's message.
        message: String,
    },
    /// The spec cannot be emitted for this profile.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// A WebAssembly module that failed to render, assemble or validate.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// askama failed to render the template.
    #[error("kernel `{kernel}`: WAT template failed to render: {source}")]
    Template {
        /// Kernel name.
        kernel: String,
        /// askama's error.
        source: askama::Error,
    },
    /// The WAT text did not assemble.
    #[error("kernel `{kernel}` ({variant} module): WAT does not assemble: {message}")]
    Assemble {
        /// Kernel name.
        kernel: String,
        /// `simd` or `scalar`.
        variant: &'static str,
        /// The assembler's message, with the line.
        message: String,
    },
    /// wasmparser rejected the module.
    #[error("kernel `{kernel}` ({variant} module): wasmparser validation failed: {message}")]
    Validate {
        /// Kernel name.
        kernel: String,
        /// `simd` or `scalar`.
        variant: &'static str,
        /// wasmparser's message, with the byte offset.
        message: String,
    },
}

/// Writing a kernel package to disk failed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A kernel failed to emit or validate; nothing was written.
    #[error(transparent)]
    Wgsl(#[from] WgslError),
    /// A kernel's WebAssembly failed to emit or validate; nothing was written.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// The output folder could not be written; files already written were removed.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The output path exists and is not a folder.
    #[error("output `{}` exists and is not a folder", .0.display())]
    NotADir(PathBuf),
}

/// A KV-cache shape or an append that cannot be done.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KvError {
    /// The layout is invalid (head_dim, group, window...).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The cache would grow past its preallocated length.
    #[error("appending {new} tokens at position {len} overflows the cache's max_seq = {max_seq}")]
    Full {
        /// Tokens already in the cache.
        len: usize,
        /// Tokens being appended.
        new: usize,
        /// Capacity.
        max_seq: usize,
    },
    /// An input array has the wrong length.
    #[error("{what} has {found} values, expected {expected} ({shape})")]
    Length {
        /// Which input.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        found: usize,
        /// The shape that implies the length, in words.
        shape: String,
    },
    /// A new K or V value is NaN, infinite, or outside f16's range (the window's type).
    #[error(
        "{what}[token {token}, kv head {head}, dim {dim}] = {value:e}: K and V values must be finite and within f16's range (|v| <= 65504)"
    )]
    Value {
        /// `k` or `v`.
        what: &'static str,
        /// Token index within the appended ones.
        token: usize,
        /// KV head.
        head: usize,
        /// Element of the head vector.
        dim: usize,
        /// The value.
        value: f32,
    },
    /// Attention over an empty cache.
    #[error("the cache is empty: append at least one token before attending")]
    Empty,
}
