//! `shadergen`: emits, lists and validates quantized WebGPU WGSL kernels, plans the memory
//! of a quantized KV cache, reports this machine's capabilities and selects a package's
//! variants for a capabilities report (`docs/CAPS.md`).
//!
//! Every value a user types (target, op, bits, group, scheme, tier, head_dim) is parsed by
//! `codegen`, so error messages name the bad value and the allowed ones in one place. Nothing
//! is written until every kernel has been emitted and validated in memory. `kv-plan` takes
//! every byte count from `codegen::kv` (the one place that knows the cache layout). `caps`
//! asks `runtime::caps` (wgpu and wasmtime), `select` runs `codegen::caps::select` over a
//! package's manifest.json: the rule lives in codegen, the CLI only reads files and prints.
//! `matrix` (cli/src/matrix.rs) writes the browser compatibility matrix from test results.

use clap::{Args, Parser, Subcommand};
use codegen::caps::{Caps, CapsError, Choice};
use codegen::kv::{KvPlan, KvPlanError};
use codegen::manifest::{self, Package};
use codegen::{Format, KernelSpec, Op, PackageError, Profile, Scheme, SpecError, Target, Tier, WgslError};
use std::error::Error;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

mod matrix;

/// Exit status when a WGSL text fails naga validation.
const EXIT_INVALID: u8 = 1;
/// Exit status for bad input (clap's own usage errors use it too).
const EXIT_USAGE: u8 = 2;
/// Exit status when a file or folder cannot be read or written.
const EXIT_IO: u8 = 3;

const AFTER_HELP: &str = "\
Exit status: 0 success, 1 WGSL failed validation, 2 usage error or unsupported value,
3 a file or folder could not be read or written.";

/// Generates quantized WGSL kernels for WebGPU browsers and native wgpu: matvec and matmul
/// over quantized weights, and kv-append and kv-attend over a quantized KV cache. Each is
/// validated by naga and cross-compiled to MSL, HLSL and SPIR-V, and has WebAssembly twins.
#[derive(Debug, Parser)]
#[command(name = "shadergen", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Emit a kernel package: one .wgsl per kernel plus manifest.json.
    ///
    /// Every kernel is emitted and validated in memory before anything is written; the
    /// folder is then written all or nothing. Without selection options the whole set for
    /// the target is emitted: every op (matvec, matmul, kv-append, kv-attend), bits 2, 3, 4,
    /// 8 and 16, groups 32, 64 and 128, both schemes, head dims 64 and 128, and every tier the
    /// target has. KV ops take the quantized bits only, groups up to the head dim, and are
    /// always asym (a scale and a min per group).
    #[command(after_help = AFTER_HELP)]
    Emit(EmitArgs),
    /// List the targets, tiers, ops, weight formats and KV-cache formats shadergen knows.
    #[command(after_help = AFTER_HELP)]
    List,
    /// Plan a quantized KV cache's memory: bytes per token, the context a budget holds, and
    /// the multiplier over an f16 cache.
    ///
    /// Byte counts are exact (docs/FORMAT.md §11.6): per token and layer the store takes
    /// 2·H·(D·bits/8 + 4·D/G) bytes (codes, plus an f16 scale and an f16 min per group of G,
    /// for keys and values), an f16 cache 2·H·D·2; the f16 window adds a fixed 2·H·R·D·2 per
    /// layer. The context is the largest even max_seq (§11) that fits with the window. The
    /// budget is in MB: 1 MB = 1,000,000 bytes (not MiB).
    #[command(name = "kv-plan", after_help = AFTER_HELP, allow_negative_numbers = true)]
    KvPlan(KvPlanArgs),
    /// Validate a WGSL file with naga as a target's compiler would see it, then
    /// cross-compile it to MSL, HLSL and SPIR-V.
    #[command(after_help = AFTER_HELP)]
    Validate(ValidateArgs),
    /// Print this machine's capabilities report (docs/CAPS.md section 1) as JSON.
    ///
    /// The WebGPU part describes the wgpu adapter the runtime would open (WGPU_BACKEND and
    /// WGPU_ADAPTER_NAME choose it): features by their WebGPU names (shader-f16, subgroups,
    /// timestamp-query...; wgpu's native-only features are left out), limits by their WebGPU
    /// names, adapter info (wgpu knows no architecture: null), wgpu's WGSL language features,
    /// and is_fallback_adapter for a CPU adapter (lavapipe). source is "shadergen caps (wgpu)",
    /// engine "wgpu-native" (the suggested target: native), user_agent null. The wasm part says
    /// what wasmtime in this build runs, by validating the report's probe modules: simd128
    /// true, relaxed_simd false (turned off: its results may differ between machines), threads
    /// false (built without them). Without an adapter the report has "webgpu": null, stderr
    /// says why, and the status is still 0.
    #[command(after_help = AFTER_HELP)]
    Caps,
    /// Choose, for a capabilities report, each kernel family's variant in a package.
    ///
    /// Applies docs/CAPS.md's one rule (section 3) to the package's manifest.json: per family
    /// (same op, bits, group size, scheme and KV head dim) the kernel of the richest tier the
    /// adapter runs, else the WebAssembly twin (SIMD when the report's wasm.simd128 is true).
    /// Prints a table of family, backend, tier, kernel and the deciding reason, the target the
    /// report suggests (section 2), and a note when the package was emitted for another one.
    #[command(after_help = AFTER_HELP)]
    Select(SelectArgs),
    /// Write the browser compatibility matrix (matrix.md and matrix.html) from test results.
    ///
    /// Rows are kernel families (op/bits/group/scheme[/head_dim], docs/CAPS.md); columns are
    /// Chrome/Edge, Firefox, Safari and a browser without WebGPU. Each cell gives the variant
    /// the browser gets (docs/CAPS.md section 3 over the package of its suggested target, built
    /// in memory: naga validation and cross-compilation included), Tint's verdict (tint.json,
    /// from node --test tests/dawn/) and whether it executed correctly in the real browser
    /// (chromium.json, firefox.json, from node --test tests/browser/). Capabilities come from
    /// the browser's result file where there is one, else from the recorded vectors in
    /// tests/caps. Missing result files are shown as "not run"; the output holds no date, so
    /// the same inputs give the same files.
    #[command(after_help = AFTER_HELP)]
    Matrix(matrix::MatrixArgs),
}

#[derive(Debug, Args)]
struct SelectArgs {
    /// The capabilities report: `shadergen caps` output, or what shadergen.mjs measured in a
    /// browser.
    #[arg(long, value_name = "FILE.json")]
    caps: PathBuf,
    /// The package: a folder written by `shadergen emit` (its manifest.json is read), or a
    /// manifest.json itself.
    #[arg(long, value_name = "DIR")]
    package: PathBuf,
    /// Let f16 tiers be chosen where the adapter has shader-f16: faster, but held to a
    /// tolerance of 1e-2 relative instead of 1e-5.
    #[arg(long)]
    allow_f16: bool,
    /// Let matvec over quantized weights use the dot4 tiers where the report's
    /// wgsl_language_features has packed_4x8_integer_dot_product: x is quantized to int8 per
    /// 32-block (docs/FORMAT.md section 12), so the result is W times the int8 values of x.
    /// shadergen.mjs calls it allowInt8.
    #[arg(long)]
    allow_int8: bool,
    /// Print one JSON object instead of the table: suggested_target, package_target,
    /// allow_f16, allow_int8, note (null when the package suits the report), and choices, one
    /// {family, kernel, backend, tier, reason} per family (tier null for WebAssembly).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EmitArgs {
    /// Target: generic, chrome, edge, firefox, safari or native.
    #[arg(long, value_name = "TARGET")]
    target: String,
    /// Output folder, created if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Ops, comma separated: matvec, matmul, kv-append, kv-attend [default: all four].
    #[arg(long, value_name = "OP,...", value_delimiter = ',')]
    ops: Vec<String>,
    /// Bit widths, comma separated: 2, 3, 4, 8, and 16 for the unquantized f16 baseline
    /// [default: all].
    #[arg(long, value_name = "BITS,...", value_delimiter = ',')]
    bits: Vec<u32>,
    /// Group sizes (codes per scale), comma separated: 32, 64, 128 [default: all].
    #[arg(long, value_name = "SIZE,...", value_delimiter = ',')]
    group: Vec<u32>,
    /// Quantization schemes, comma separated: sym, asym [default: both]. KV ops are always
    /// asym.
    #[arg(long, value_name = "SCHEME,...", value_delimiter = ',')]
    scheme: Vec<String>,
    /// Head dimensions of the KV ops (kv-append, kv-attend), comma separated: 64, 128
    /// [default: both]. matvec and matmul have none.
    #[arg(long, value_name = "D,...", value_delimiter = ',', value_parser = whole)]
    head_dim: Vec<u32>,
    /// Feature tiers, comma separated: base, f16, subgroups, f16-subgroups, dot4,
    /// dot4-subgroups, as the target has them (see `shadergen list`) [default: every tier of
    /// the target].
    #[arg(long, value_name = "TIER,...", value_delimiter = ',')]
    tier: Vec<String>,
    /// Print no progress lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct KvPlanArgs {
    /// L: transformer layers, each with its own cache.
    #[arg(long, value_name = "L", value_parser = whole)]
    layers: u32,
    /// H: KV heads per layer (query heads may be a multiple of them).
    #[arg(long, value_name = "H", value_parser = whole)]
    kv_heads: u32,
    /// D: elements per head vector: 64 or 128.
    #[arg(long, value_name = "D", value_parser = whole)]
    head_dim: u32,
    /// Bits per code: 2, 3, 4 or 8 (the f16 cache, 16 bits, is always shown for comparison).
    #[arg(long, value_name = "BITS", value_parser = whole)]
    bits: u32,
    /// G: codes per f16 scale and f16 min: 32, 64 or 128, at most the head dim.
    #[arg(long, value_name = "G", value_parser = whole)]
    group: u32,
    /// R: the most recent tokens kept in f16 per head (the residual window; 0 turns it off).
    #[arg(long, value_name = "R", value_parser = whole, default_value = "0")]
    window: u32,
    /// Memory for the caches of all layers, in MB (1 MB = 1,000,000 bytes; up to six
    /// decimals: 0.5 is 500000 bytes).
    #[arg(long, value_name = "MB", value_parser = megabytes)]
    budget_mb: Budget,
    /// Print one JSON object instead of text: the inputs, byte counts and token counts as
    /// integers (`bytes_per_token`, `window_bytes`, `context_tokens`, `fp16_context_tokens`...),
    /// `multiplier` and `asymptotic_ratio` as numbers (`multiplier` is null when an f16 cache
    /// holds no token).
    #[arg(long)]
    json: bool,
}

/// A budget as typed (`MB`) and in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Budget {
    mb: String,
    bytes: u64,
}

/// Bytes in one MB, the unit of `--budget-mb`.
const MB: u64 = 1_000_000;
/// The largest budget taken, in MB (an exabyte): every byte count of a plan then fits a u64.
const MAX_BUDGET_MB: u64 = 1_000_000_000_000;

/// Parses a whole number (clap names the option and the value around the message).
fn whole(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("expected a whole number from 0 to {}", u32::MAX))
}

/// Parses a positive number of MB with up to six decimals into exact bytes.
fn megabytes(s: &str) -> Result<Budget, String> {
    let bad = || {
        format!(
            "expected a positive number of MB (1 MB = 1000000 bytes) with at most six decimals, up to {MAX_BUDGET_MB}"
        )
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || frac.len() > 6 {
        return Err(bad());
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
    let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    if int > MAX_BUDGET_MB || (int == MAX_BUDGET_MB && frac > 0) {
        return Err(bad());
    }
    let bytes = int * MB + frac;
    if bytes == 0 {
        return Err(bad());
    }
    Ok(Budget { mb: s.to_string(), bytes })
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The WGSL file to check.
    #[arg(value_name = "FILE.wgsl")]
    file: PathBuf,
    /// Target whose compiler's view is checked: generic, chrome, edge, firefox, safari or
    /// native.
    #[arg(long, value_name = "TARGET", default_value = "native")]
    target: String,
}

/// Everything that makes a command fail, with the exit status it maps to.
#[derive(Debug)]
enum CliError {
    /// A value codegen does not accept.
    Spec(SpecError),
    /// The output folder cannot be created: one of its ancestors is not a folder.
    OutDir { dir: PathBuf, blocker: PathBuf },
    /// Writing the package failed (or a generated kernel failed validation).
    Package(PackageError),
    /// An input file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// A WGSL text failed naga validation or cross-compilation; `hint` says what may fix it.
    Invalid { error: WgslError, hint: Option<String> },
    /// Standard output could not be written.
    Stdout(io::Error),
    /// A selection that asks for an op but yields no kernel of it.
    NoKernels(String),
    /// `kv-plan`: the budget holds no cache.
    Plan { budget_mb: String, error: KvPlanError },
    /// A capabilities report or manifest that is not what docs/CAPS.md reads.
    Malformed { path: PathBuf, error: CapsError },
    /// The runtime could not say what this machine runs.
    Runtime(runtime::RuntimeError),
    /// A test result file (`shadergen matrix`) that is not in its documented format.
    Results { file: PathBuf, field: String, expected: String, found: String },
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Spec(_)
            | CliError::NoKernels(_)
            | CliError::Plan { .. }
            | CliError::Malformed { .. }
            | CliError::Results { .. } => EXIT_USAGE,
            CliError::Invalid { .. } | CliError::Package(PackageError::Wgsl(_)) => EXIT_INVALID,
            CliError::OutDir { .. }
            | CliError::Package(_)
            | CliError::Read { .. }
            | CliError::Stdout(_)
            | CliError::Runtime(_) => EXIT_IO,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Spec(e) => fmt::Display::fmt(e, f),
            CliError::OutDir { dir, blocker } => {
                write!(f, "cannot write `{}`: `{}` is not a folder", dir.display(), blocker.display())
            }
            CliError::Package(e) => fmt::Display::fmt(e, f),
            CliError::Read { path, .. } => write!(f, "cannot read `{}`", path.display()),
            CliError::Invalid { error, .. } => fmt::Display::fmt(error, f),
            CliError::Stdout(_) => f.write_str("cannot write to standard output"),
            CliError::NoKernels(why) => f.write_str(why),
            CliError::Plan { budget_mb, error } => write!(f, "--budget-mb {budget_mb}: {error}"),
            CliError::Malformed { path, error } => write!(f, "`{}`: {error}", path.display()),
            CliError::Runtime(e) => fmt::Display::fmt(e, f),
            CliError::Results { file, field, expected, found } => {
                write!(f, "`{}`: `{field}`: expected {expected}, found {found}", file.display())
            }
        }
    }
}

impl Error for CliError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        // The wrapped codegen errors are shown as themselves (their Display), so the chain
        // continues with *their* sources.
        match self {
            CliError::Spec(e) => e.source(),
            CliError::OutDir { .. }
            | CliError::NoKernels(_)
            | CliError::Malformed { .. }
            | CliError::Results { .. } => None,
            CliError::Runtime(e) => e.source(),
            CliError::Plan { error, .. } => error.source(),
            CliError::Package(e) => e.source(),
            CliError::Read { source, .. } | CliError::Stdout(source) => Some(source),
            CliError::Invalid { error, .. } => error.source(),
        }
    }
}

impl From<SpecError> for CliError {
    fn from(e: SpecError) -> Self {
        CliError::Spec(e)
    }
}

/// The error and its causes on one line, each cause shown once: codegen's messages
/// already include their source's text, so a cause whose text is already there is skipped.
fn report(err: &dyn Error) -> String {
    let mut msg = err.to_string().trim_end().to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        let text = text.trim_end();
        if !text.is_empty() && !msg.contains(text) {
            msg.push_str(": ");
            msg.push_str(text);
        }
        cause = e.source();
    }
    msg
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Emit(args) => emit(&args),
        Command::List => list(),
        Command::KvPlan(args) => kv_plan(&args),
        Command::Validate(args) => validate(&args),
        Command::Caps => caps(),
        Command::Select(args) => select_variants(&args),
        Command::Matrix(args) => matrix::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr may be closed: nothing more can be said then, the status still tells.
            let mut stderr = io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", report(&e));
            if let CliError::Invalid { hint: Some(hint), .. } = &e {
                let _ = writeln!(stderr, "hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Writes `text` to stdout. A closed pipe (`shadergen list | head -1`) is not an error.
fn print(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Stdout(e)),
        _ => Ok(()),
    }
}

/// Progress goes to stderr; failing to show it never fails the command.
fn progress_line(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Keeps the first occurrence of each value, in order.
fn dedup<T: PartialEq>(values: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// What `emit` will generate, every value checked by codegen.
#[derive(Debug)]
struct Selection {
    target: Target,
    specs: Vec<KernelSpec>,
}

fn select(args: &EmitArgs) -> Result<Selection, CliError> {
    let target: Target = args.target.parse()?;
    let ops: Vec<Op> = if args.ops.is_empty() {
        Op::ALL.to_vec()
    } else {
        args.ops.iter().map(|s| s.parse()).collect::<Result<_, _>>()?
    };
    let bits: Vec<u32> =
        if args.bits.is_empty() { Format::QUANT_BITS.iter().copied().chain([16]).collect() } else { args.bits.clone() };
    // Each value is checked on its own, so a bad group is reported even when only the f16
    // baseline (which ignores groups and schemes) is selected.
    for &b in &bits {
        Format::from_bits(b, Format::GROUP_SIZES[0], Scheme::Sym)?;
    }
    let groups: Vec<u32> = if args.group.is_empty() { Format::GROUP_SIZES.to_vec() } else { args.group.clone() };
    for &g in &groups {
        Format::quant(Format::QUANT_BITS[0], g, Scheme::Sym)?;
    }
    let schemes: Vec<Scheme> = if args.scheme.is_empty() {
        Scheme::ALL.to_vec()
    } else {
        args.scheme.iter().map(|s| s.parse()).collect::<Result<_, _>>()?
    };
    let tiers: Vec<Tier> = if args.tier.is_empty() {
        target.info().tiers.to_vec()
    } else {
        args.tier.iter().map(|t| Profile::parse_tier(target, t)).collect::<Result<_, _>>()?
    };
    let head_dims: Vec<u32> =
        if args.head_dim.is_empty() { codegen::kv::HEAD_DIMS.to_vec() } else { args.head_dim.clone() };
    let (ops, bits, groups, head_dims) = (dedup(ops), dedup(bits), dedup(groups), dedup(head_dims));
    let specs = KernelSpec::select(target, &ops, &bits, &groups, &dedup(schemes), &head_dims, &dedup(tiers))?;
    // Only a KV op can come out empty: every bit width 16, or every group over every head dim.
    if let Some(op) = ops.iter().find(|&&op| !specs.iter().any(|s| s.op == op)) {
        return Err(CliError::NoKernels(format!(
            "--ops {} selects no kernel: KV ops take bits {} (not 16) and groups no larger than the head dim, \
             but the selection has bits {}, groups {} and head dims {}",
            op.name(),
            join(Format::QUANT_BITS),
            join(&bits),
            join(&groups),
            join(&head_dims)
        )));
    }
    Ok(Selection { target, specs })
}

/// Fails early, before the kernels are built, when the output folder can certainly not be
/// created: it, or its nearest existing ancestor, is not a folder. Anything else (such as
/// permissions) is left to the package writer, which reports it and cleans up.
fn check_out_dir(dir: &Path) -> Result<(), CliError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::Package(PackageError::NotADir(dir.to_path_buf())));
    }
    for ancestor in dir.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(ancestor) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(CliError::OutDir { dir: dir.to_path_buf(), blocker: ancestor.to_path_buf() });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => break,
        }
    }
    Ok(())
}

/// `.wgsl` files in `dir` that the package does not list (left by an earlier run).
fn stray_kernels(dir: &Path, package: &Package) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".wgsl") && !package.manifest.kernels.iter().any(|k| k.wgsl == name)
        })
        .count()
}

fn emit(args: &EmitArgs) -> Result<(), CliError> {
    let start = Instant::now();
    let Selection { target, specs } = select(args)?;
    check_out_dir(&args.out)?;

    let total = specs.len();
    let width = total.to_string().len();
    let quiet = args.quiet;
    let package = manifest::build(target, &specs, |done, total, name| {
        // The first kernel, then about every tenth of the way, then the last.
        let step = done == 1 || done == total || done * 10 / total != (done - 1) * 10 / total;
        if !quiet && step {
            progress_line(&format!("[{done:>width$}/{total}] {name}"));
        }
    })
    .map_err(CliError::Package)?;
    package.write(&args.out).map_err(CliError::Package)?;

    let stray = stray_kernels(&args.out, &package);
    if stray > 0 {
        progress_line(&format!(
            "warning: `{}` also holds {stray} .wgsl file(s) that manifest.json does not list (from an earlier run?)",
            args.out.display()
        ));
    }
    let count = package.manifest.kernels.len();
    print(&format!(
        "wrote {count} kernel{} for {} to {} (manifest.json) in {:.2}s\n",
        if count == 1 { "" } else { "s" },
        target,
        args.out.display(),
        start.elapsed().as_secs_f64()
    ))
}

fn describe_op(op: Op) -> &'static str {
    match op {
        Op::Matvec => "decode: y[N] = W[N x K] . x[K]",
        Op::Matmul => "prefill: Y[M x N] = X[M x K] . W[N x K]^T",
        Op::KvAppend => "quantize new tokens' K and V into a KV cache (f16 residual window)",
        Op::KvAttend => "decode attention over a quantized KV cache (GQA, flash-decoding splits)",
    }
}

fn join<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Lays `rows` out in columns two spaces apart, under a title; the last column is not padded.
fn table(out: &mut String, title: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    out.push_str(title);
    out.push('\n');
    for row in rows {
        let mut line = String::from(" ");
        for (c, cell) in row.iter().enumerate() {
            line.push(' ');
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 1));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn list() -> Result<(), CliError> {
    let mut out = String::new();
    let header = |cells: &[&str]| cells.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let mut rows = vec![header(&["TARGET", "DIALECT", "TIERS", "DESCRIPTION"])];
    rows.extend(Target::ALL.iter().map(|&t| {
        let info = t.info();
        vec![
            t.name().into(),
            info.dialect.name().into(),
            join(info.tiers.iter().map(|t| t.name())),
            t.info().description.into(),
        ]
    }));
    table(&mut out, "Targets:", &rows);

    let mut rows = vec![header(&["TIER", "FEATURES", "TOLERANCE"])];
    rows.extend(Tier::ALL.iter().map(|&t| {
        let mut features = t.features();
        if t.dot4() {
            // A WGSL language feature (navigator.gpu.wgslLanguageFeatures), not a GPUFeatureName.
            features.push("WGSL packed_4x8_integer_dot_product");
        }
        let features = if features.is_empty() { "(core WebGPU only)".into() } else { join(features) };
        vec![t.name().into(), features, format!("{:e} relative", t.tolerance())]
    }));
    out.push('\n');
    table(&mut out, "Tiers:", &rows);
    out.push_str(
        "  dot4 tiers: matvec over quantized weights quantizes x to int8 per 32-block and sums with\n  \
         dot4I8Packed (its tolerance is against the reference over those int8 values); other ops\n  \
         compute as in base (subgroups). Never selected automatically: a host opts in (shadergen.mjs:\n  \
         allowInt8; shadergen select --allow-int8).\n",
    );

    let mut rows = vec![header(&["OP", "COMPUTES"])];
    rows.extend(Op::ALL.iter().map(|&op| vec![op.name().into(), describe_op(op).into()]));
    out.push('\n');
    table(&mut out, "Ops:", &rows);

    let rows = vec![
        vec!["--bits".into(), format!("{}, 16 (the unquantized f16 baseline)", join(Format::QUANT_BITS))],
        vec!["--group".into(), join(Format::GROUP_SIZES)],
        vec!["--scheme".into(), join(Scheme::ALL.iter().map(|s| s.name()))],
    ];
    out.push('\n');
    table(&mut out, "Formats:", &rows);

    let kv_ops = join(Op::ALL.iter().filter(|op| op.is_kv()).map(|op| op.name()));
    let rows = vec![
        vec!["--head-dim".into(), join(codegen::kv::HEAD_DIMS)],
        vec![
            "format".into(),
            format!(
                "always asym (an f16 scale and an f16 min per group); bits {}; group {} with group <= head_dim",
                join(Format::QUANT_BITS),
                join(Format::GROUP_SIZES)
            ),
        ],
        vec!["gqa".into(), format!("query heads = KV heads x 1 to {}", codegen::kv::MAX_GQA)],
        vec!["memory".into(), "shadergen kv-plan (bytes per token, context in a budget, vs an f16 cache)".into()],
    ];
    out.push('\n');
    table(&mut out, &format!("KV cache ({kv_ops}; docs/FORMAT.md section 11):"), &rows);
    print(&out)
}

/// `1 layer`, `32 layers`.
fn count(n: u64, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// A ratio for people: at most three decimals, trailing zeros dropped (`8`, `5.333`, `7.111`).
fn times(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn kv_plan(args: &KvPlanArgs) -> Result<(), CliError> {
    let format = codegen::kv::format_of(args.bits, args.group, args.head_dim)?;
    let plan = KvPlan::new(format, args.head_dim, args.kv_heads, args.window, args.layers, args.budget_mb.bytes)
        .map_err(|error| match error {
            KvPlanError::Spec(e) => CliError::Spec(e),
            error => CliError::Plan { budget_mb: args.budget_mb.mb.clone(), error },
        })?;
    // Bits per element with the scale and min (bits + 32/G), and the same from the byte
    // counts: an element of an f16 cache is 16 bits.
    let element_bits = format.bits_per_weight();
    let overhead = element_bits - format.bits() as f64;
    let naive = 16.0 / format.bits() as f64;
    let per_layer = plan.per_token_bytes / plan.layers as u64;
    let fp16_per_layer = plan.fp16_per_token_bytes / plan.layers as u64;
    if args.json {
        let json = serde_json::json!({
            "layers": plan.layers,
            "kv_heads": plan.kv_heads,
            "head_dim": plan.head_dim,
            "bits": format.bits(),
            "group": format.group_size(),
            "scheme": format.scheme().name(),
            "format": format.tag(),
            "window": plan.window,
            "budget_mb": plan.budget as f64 / MB as f64,
            "budget_bytes": plan.budget,
            "bytes_per_token": plan.per_token_bytes,
            "bytes_per_token_per_layer": per_layer,
            "window_bytes": plan.window_bytes,
            "context_tokens": plan.max_seq,
            "used_bytes": plan.used_bytes(),
            "fp16_bytes_per_token": plan.fp16_per_token_bytes,
            "fp16_context_tokens": plan.fp16_max_seq,
            "multiplier": plan.multiplier(),
            "asymptotic_ratio": plan.asymptotic_ratio(),
            "bits_per_element": element_bits,
        });
        return print(&format!("{}\n", serde_json::to_string_pretty(&json).expect("a plan serializes")));
    }
    let window_note = if plan.window > 0 {
        format!("the f16 window's fixed {} bytes lower this budget's multiplier further", plan.window_bytes)
    } else {
        "there is no f16 window".to_string()
    };
    let multiplier = match plan.multiplier() {
        Some(m) => format!("{}x the f16 context ({} / {} tokens)", times(m), plan.max_seq, plan.fp16_max_seq),
        None => "none: an f16 cache holds no token in this budget".to_string(),
    };
    let rows = [
        ["budget".to_string(), format!("{} MB = {} bytes (1 MB = 1000000 bytes)", args.budget_mb.mb, plan.budget)],
        [
            "per token".into(),
            format!(
                "{} bytes ({per_layer} per layer: codes, scales and mins of K and V); f16: {} ({fp16_per_layer} per layer)",
                plan.per_token_bytes, plan.fp16_per_token_bytes
            ),
        ],
        [
            "window".into(),
            if plan.window > 0 {
                format!("{} bytes, fixed ({} f16 tokens per head and layer)", plan.window_bytes, plan.window)
            } else {
                "0 bytes (no f16 window)".into()
            },
        ],
        [
            "context".into(),
            format!("{} tokens (max_seq, even; the caches take {} bytes)", plan.max_seq, plan.used_bytes()),
        ],
        ["f16 context".into(), format!("{} tokens", plan.fp16_max_seq)],
        ["multiplier".into(), multiplier],
        [
            "asymptotic".into(),
            format!(
                "{}x (f16 / quantized bytes per token: {} / {})",
                times(plan.asymptotic_ratio()),
                plan.fp16_per_token_bytes,
                plan.per_token_bytes
            ),
        ],
    ];
    let mut out = format!(
        "KV cache: {} x {} x head_dim {}, {} ({}), window {}\n",
        count(plan.layers as u64, "layer"),
        count(plan.kv_heads as u64, "KV head"),
        plan.head_dim,
        format.tag(),
        format.describe(),
        plan.window
    );
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    for [label, value] in &rows {
        out.push_str(&format!("  {:<width$}  {value}\n", format!("{label}:"), width = width + 1));
    }
    out.push_str(&format!(
        "Not {}x: each group of {g} elements also stores an f16 scale and an f16 min (32/{g} = {overhead} bit per \
         element), so an element takes {element_bits} bits, 16/{element_bits} = {}x; {window_note}.\n",
        times(naive),
        times(16.0 / element_bits),
        g = format.group_size(),
    ));
    print(&out)
}

fn validate(args: &ValidateArgs) -> Result<(), CliError> {
    let target: Target = args.target.parse()?;
    let text =
        std::fs::read_to_string(&args.file).map_err(|source| CliError::Read { path: args.file.clone(), source })?;
    let name = args.file.display().to_string();
    codegen::wgsl::validate_for_target(&name, &text, target).map_err(|error| {
        // Kernels emitted for Tint (chrome, edge) enable subgroups with a directive naga rejects.
        let is_tint = |t: Target| t.info().dialect == codegen::Dialect::Tint;
        let tint: Vec<&str> = Target::ALL.into_iter().filter(|&t| is_tint(t)).map(Target::name).collect();
        let hint = (!is_tint(target) && !tint.is_empty() && text.lines().any(|l| l.trim() == "enable subgroups;"))
            .then(|| {
                format!("`enable subgroups;` is Tint's dialect: validate with --target {}", tint.join(" or --target "))
            });
        CliError::Invalid { error, hint }
    })?;
    print(&format!("{name}: ok (naga {target}, MSL/HLSL/SPIR-V)\n"))
}

fn caps() -> Result<(), CliError> {
    let local = runtime::caps::local().map_err(CliError::Runtime)?;
    if let Some(e) = &local.no_adapter {
        progress_line(&format!("note: no WebGPU adapter ({}): the report has \"webgpu\": null", report(e)));
    }
    print(&format!("{}\n", serde_json::to_string_pretty(&local.caps).expect("a report serializes")))
}

/// Reads a JSON file: unreadable is an IO error (3), not JSON a usage error (2) naming the
/// file, line and column.
fn read_json(path: &Path, malformed: fn(serde_json::Error) -> CapsError) -> Result<serde_json::Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| CliError::Malformed { path: path.to_path_buf(), error: malformed(e) })
}

fn not_json(e: serde_json::Error) -> (String, String, String) {
    ("(top level)".into(), "JSON".into(), format!("invalid JSON ({e})"))
}

fn select_variants(args: &SelectArgs) -> Result<(), CliError> {
    let report_value = read_json(&args.caps, |e| {
        let (path, expected, found) = not_json(e);
        CapsError::Report { path, expected, found }
    })?;
    let caps =
        Caps::from_json(&report_value).map_err(|error| CliError::Malformed { path: args.caps.clone(), error })?;
    let manifest_path = if args.package.is_dir() { args.package.join("manifest.json") } else { args.package.clone() };
    let manifest = read_json(&manifest_path, |e| {
        let (path, expected, found) = not_json(e);
        CapsError::Manifest { path, expected, found }
    })?;
    let malformed = |error| CliError::Malformed { path: manifest_path.clone(), error };
    let package = codegen::caps::PackageView::from_json(&manifest).map_err(malformed)?;
    let allow = codegen::caps::Allow { f16: args.allow_f16, int8: args.allow_int8 };
    let choices = codegen::caps::select_package_with(&caps, &package, allow);
    let suggested = codegen::caps::suggest_target(&caps);
    let note = (suggested != package.target).then(|| {
        format!(
            "the package is for {} but the report suggests {suggested}: load the {suggested} package \
             (`shadergen emit --target {suggested}`) for text suited to that browser; the choices below \
             hold for this package",
            package.target
        )
    });
    if args.json {
        let json = serde_json::json!({
            "suggested_target": suggested,
            "package_target": package.target,
            "allow_f16": args.allow_f16,
            "allow_int8": args.allow_int8,
            "note": note,
            "choices": choices,
        });
        return print(&format!("{}\n", serde_json::to_string_pretty(&json).expect("choices serialize")));
    }
    print(&select_table(&caps, &manifest_path, package.target, suggested, allow, &choices, note.as_deref()))
}

fn select_table(
    caps: &Caps,
    manifest: &Path,
    package_target: Target,
    suggested: Target,
    allow: codegen::caps::Allow,
    choices: &[Choice],
    note: Option<&str>,
) -> String {
    let mut out = String::new();
    let adapter = match &caps.webgpu {
        None => "none (no WebGPU)".to_string(),
        Some(gpu) => {
            let a = &gpu.adapter;
            let known: Vec<&str> = [&a.vendor, &a.architecture, &a.description]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .filter(|s| !s.is_empty())
                .collect();
            let name = if known.is_empty() { "(no adapter info)".to_string() } else { known.join(", ") };
            let features = if gpu.features.is_empty() { "none".to_string() } else { gpu.features.join(", ") };
            format!(
                "{name}; features: {features}; workgroup storage {} bytes, {} invocations",
                gpu.limits.max_compute_workgroup_storage_size, gpu.limits.max_compute_invocations_per_workgroup
            )
        }
    };
    let wasm = &caps.wasm;
    let rows: [(&str, String); 7] = [
        ("report", format!("{} (engine {})", caps.source, caps.engine)),
        ("adapter", adapter),
        ("wasm", format!("simd128 {}, relaxed_simd {}, threads {}", wasm.simd128, wasm.relaxed_simd, wasm.threads)),
        ("package", format!("{} ({}), {} families", manifest.display(), package_target, choices.len())),
        ("suggested", format!("{suggested} (docs/CAPS.md section 2)")),
        ("allow_f16", format!("{}", allow.f16)),
        ("allow_int8", format!("{}", allow.int8)),
    ];
    for (label, value) in &rows {
        out.push_str(&format!("{:<10} {value}\n", format!("{label}:")));
    }
    if let Some(note) = note {
        out.push_str(&format!("note:      {note}\n"));
    }
    let mut table_rows = vec![["FAMILY", "BACKEND", "TIER", "KERNEL", "REASON"].map(String::from).to_vec()];
    table_rows.extend(choices.iter().map(|c| {
        vec![
            c.family.clone(),
            c.backend.name().to_string(),
            c.tier.map_or("-".to_string(), |t| t.name().to_string()),
            c.kernel.clone(),
            c.reason.clone(),
        ]
    }));
    out.push('\n');
    table(&mut out, "Choices:", &table_rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn report_shows_each_cause_once() {
        let err = CliError::Read { path: "x.wgsl".into(), source: io::Error::from(io::ErrorKind::NotFound) };
        assert_eq!(report(&err), format!("cannot read `x.wgsl`: {}", io::Error::from(io::ErrorKind::NotFound)));
        let err = CliError::Package(PackageError::Io {
            path: "out".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
        let text = report(&err);
        let cause = io::Error::from(io::ErrorKind::NotFound).to_string();
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
    }
}
