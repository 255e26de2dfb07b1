//! `shadergen matrix`: the browser compatibility matrix, generated from data and test results.
//!
//! ```text
//! KernelSpec::default_set(t) ──► manifest::build, one kernel at a time (naga + MSL/HLSL/SPIR-V,
//!   for every target t            wasmparser) ──► a manifest per target ──► PackageView
//! tests/caps/<browser>.json ─┐
//! <results>/<browser>.json ──┴─► Caps (the real browser's report when there is one)
//!                                 ──► suggest_target ──► codegen::caps::select_package ──► Choice
//! <results>/tint.json ──► Tint's verdict per target and kernel
//! <results>/<browser>.json ──► each op the browser ran: kernel, backend, tier, ok
//!                         ──► matrix.md and matrix.html (one document, two renderings)
//! ```
//!
//! Nothing in the output is typed by hand: variants come from the selection rule over packages
//! built in memory, "naga ok" from building them, Tint's and the browsers' verdicts from their
//! result files (`tests/dawn/tint.test.mjs`, `tests/browser/README.md`). Results are matched
//! by kernel name, backend and tier; an op the browser ran from another target's package
//! counts only when that package's code (this generator's build of it: WGSL text on WebGPU,
//! the module on WebAssembly) is byte-identical to the one the matrix shows. A result file
//! written by another generator version is noted. The output holds no date, path or timing, so the same inputs give
//! the same bytes; the inputs are listed at the top instead. Missing result files give
//! "not run" (with a note on stderr); a malformed one is an error naming the file and field.

use super::{CliError, check_out_dir, print, progress_line};
use clap::Args;
use codegen::caps::{Backend, Caps, CapsError, Choice, PackageView, select_package, suggest_target};
use codegen::{KernelSpec, PackageError, Target, Tier, manifest};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(crate) struct MatrixArgs {
    /// The test results: tint.json (written by `node --test tests/dawn/`) and the browser
    /// tests' chromium.json and firefox.json. Missing files (or a missing folder) are shown as
    /// "not run", with a note on stderr.
    #[arg(long, value_name = "DIR")]
    results: PathBuf,
    /// Where the browser tests' chromium.json and firefox.json are, when not in --results
    /// (tests/browser writes them to target/browser-results unless SHADERGEN_BROWSER_RESULTS
    /// names another folder).
    #[arg(long, value_name = "DIR")]
    browser_results: Option<PathBuf>,
    /// Output folder, created if missing: matrix.md and matrix.html are written all or nothing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Where the recorded capability vectors live (they are compiled in).
const VECTOR_DIR: &str = "tests/caps";

/// A recorded capabilities vector (`docs/CAPS.md` §4).
struct Vector {
    file: &'static str,
    text: &'static str,
}

/// One browser column of the matrix.
struct ColumnDef {
    title: &'static str,
    /// The recorded report used when no browser result gives a real one.
    vector: Vector,
    /// The browser test whose results fill the column (`chromium`, `firefox`); `None`: none
    /// runs this browser.
    browser: Option<&'static str>,
    /// The "no WebGPU" column: real reports come from the browsers' runs with `navigator.gpu`
    /// hidden, and so do the executions.
    without_webgpu: bool,
}

const COLUMNS: [ColumnDef; 4] = [
    ColumnDef {
        title: "Chrome/Edge",
        vector: Vector {
            file: "chromium-156-headless-swiftshader.json",
            text: include_str!("../../tests/caps/chromium-156-headless-swiftshader.json"),
        },
        browser: Some("chromium"),
        without_webgpu: false,
    },
    ColumnDef {
        title: "Firefox",
        vector: Vector {
            file: "firefox-esr-153-headless-lavapipe.json",
            text: include_str!("../../tests/caps/firefox-esr-153-headless-lavapipe.json"),
        },
        browser: Some("firefox"),
        without_webgpu: false,
    },
    ColumnDef {
        title: "Safari",
        vector: Vector { file: "safari-26-apple.json", text: include_str!("../../tests/caps/safari-26-apple.json") },
        browser: None,
        without_webgpu: false,
    },
    ColumnDef {
        title: "no WebGPU",
        vector: Vector { file: "no-webgpu.json", text: include_str!("../../tests/caps/no-webgpu.json") },
        browser: None,
        without_webgpu: true,
    },
];

/// The browser tests' result files, `<name>.json`, in the order they are read.
const BROWSERS: [&str; 2] = ["chromium", "firefox"];

/// The file `tests/dawn/tint.test.mjs` writes.
const TINT_FILE: &str = "tint.json";

/// Files written into `--out`.
const MD_FILE: &str = "matrix.md";
const HTML_FILE: &str = "matrix.html";

pub(crate) fn run(args: &MatrixArgs) -> Result<(), CliError> {
    let browser_dir = args.browser_results.clone().unwrap_or_else(|| args.results.clone());
    let results = Results::read(&args.results, &browser_dir)?;
    check_out_dir(&args.out)?;
    check_out_files(&args.out)?;
    let packages = Packages::build();
    let matrix = Matrix::new(&results, &packages);
    let doc = matrix.document();
    let files = [(MD_FILE, render_md(&doc)), (HTML_FILE, render_html(&doc))];
    write_all(&args.out, &files)?;
    print(&format!(
        "wrote {} and {} ({} kernel families x {} browsers; results: {})\n",
        args.out.join(MD_FILE).display(),
        args.out.join(HTML_FILE).display(),
        matrix.families.len(),
        COLUMNS.len(),
        results.found_summary()
    ))
}

// ---------------------------------------------------------------------------------------------
// Reading the result files

/// A result file's JSON with the file name, for errors that say where.
struct Doc<'a> {
    file: &'a Path,
}

/// A member of a JSON document: where it is and its value when present.
#[derive(Clone)]
struct Field<'v> {
    path: String,
    value: Option<&'v Value>,
}

impl<'v> Field<'v> {
    fn get(&self, key: &str) -> Field<'v> {
        let path = if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) };
        Field { path, value: self.value.and_then(|v| v.get(key)) }
    }

    fn is_null_or_missing(&self) -> bool {
        matches!(self.value, None | Some(Value::Null))
    }
}

impl Doc<'_> {
    fn error(&self, path: &str, expected: impl Into<String>, found: String) -> CliError {
        let field = if path.is_empty() { "(top level)".to_string() } else { path.to_string() };
        CliError::Results { file: self.file.to_path_buf(), field, expected: expected.into(), found }
    }

    fn typed<'v, T>(
        &self,
        f: &Field<'v>,
        expected: &str,
        convert: impl FnOnce(&'v Value) -> Option<T>,
    ) -> Result<T, CliError> {
        let Some(v) = f.value else {
            return Err(self.error(&f.path, expected, "nothing (the field is missing)".into()));
        };
        convert(v).ok_or_else(|| self.error(&f.path, expected, show(v)))
    }

    fn object<'v>(&self, f: &Field<'v>) -> Result<&'v serde_json::Map<String, Value>, CliError> {
        self.typed(f, "an object", Value::as_object)
    }

    fn array<'v>(&self, f: &Field<'v>, expected: &str) -> Result<Vec<Field<'v>>, CliError> {
        let list = self.typed(f, expected, Value::as_array)?;
        Ok(list.iter().enumerate().map(|(i, v)| Field { path: format!("{}[{i}]", f.path), value: Some(v) }).collect())
    }

    fn string(&self, f: &Field<'_>) -> Result<String, CliError> {
        self.typed(f, "a string", |v| v.as_str().map(str::to_string))
    }

    fn nullable_string(&self, f: &Field<'_>) -> Result<Option<String>, CliError> {
        self.typed(f, "a string or null", |v| match v {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s.clone())),
            _ => None,
        })
    }

    /// A string, null, or missing (JavaScript's `JSON.stringify` drops `undefined`).
    fn optional_string(&self, f: &Field<'_>) -> Result<Option<String>, CliError> {
        if f.value.is_none() { Ok(None) } else { self.nullable_string(f) }
    }

    fn boolean(&self, f: &Field<'_>) -> Result<bool, CliError> {
        self.typed(f, "true or false", Value::as_bool)
    }

    fn uint(&self, f: &Field<'_>) -> Result<u64, CliError> {
        self.typed(f, "a whole number >= 0", whole)
    }

    /// A whole number, null, or missing.
    fn optional_uint(&self, f: &Field<'_>) -> Result<Option<u64>, CliError> {
        if f.is_null_or_missing() { Ok(None) } else { self.uint(f).map(Some) }
    }

    /// A number, null, or missing (`JSON.stringify(NaN)` is null).
    fn optional_number(&self, f: &Field<'_>) -> Result<Option<f64>, CliError> {
        if f.is_null_or_missing() { Ok(None) } else { self.typed(f, "a number or null", Value::as_f64).map(Some) }
    }

    /// One of the named values, or null when `nullable`.
    fn choice<T: Copy>(&self, f: &Field<'_>, named: &[(&str, T)], nullable: bool) -> Result<Option<T>, CliError> {
        let names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
        let expected = if nullable {
            format!("one of {}, or null", names.join(", "))
        } else {
            format!("one of {}", names.join(", "))
        };
        self.typed(f, &expected, |v| match v {
            Value::Null if nullable => Some(None),
            Value::String(s) => named.iter().find(|(n, _)| n == s).map(|(_, t)| Some(*t)),
            _ => None,
        })
    }

    /// A capabilities report (docs/CAPS.md §1) or null; the report's own field paths are
    /// prefixed with this field's.
    fn caps(&self, f: &Field<'_>) -> Result<Option<Caps>, CliError> {
        match f.value {
            None => Err(self.error(&f.path, "a capabilities report or null", "nothing (the field is missing)".into())),
            Some(Value::Null) => Ok(None),
            Some(v) => Caps::from_json(v).map(Some).map_err(|e| match e {
                CapsError::Report { path, expected, found } | CapsError::Manifest { path, expected, found } => {
                    let inner = if path == "(top level)" { f.path.clone() } else { format!("{}.{path}", f.path) };
                    self.error(&inner, format!("{expected} (a capabilities report, docs/CAPS.md section 1)"), found)
                }
            }),
        }
    }
}

/// A JSON number that is a whole number >= 0 (JavaScript may write `3.0`).
fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=9.007_199_254_740_991e15).contains(f)).map(|f| f as u64)
    })
}

/// A JSON value, shortened for a message.
fn show(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Array(_) => "an array ",
        Value::Object(_) => "an object ",
        _ => "",
    };
    let text = v.to_string();
    let short: String = text.chars().take(60).collect();
    let ellipsis = if short.len() < text.len() { "..." } else { "" };
    format!("{kind}{short}{ellipsis}")
}

/// Reads and parses a JSON file; `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>, CliError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CliError::Read { path: path.to_path_buf(), source }),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| CliError::Results {
        file: path.to_path_buf(),
        field: "(top level)".into(),
        expected: "JSON".into(),
        found: format!("invalid JSON ({e})"),
    })
}

/// Tint's verdict on one kernel (`tint.json`).
#[derive(Debug, Clone, PartialEq)]
enum TintVerdict {
    Compiled,
    Rejected,
    /// `not compiled: <why>` (the adapter lacked a feature the kernel needs).
    NotCompiled(String),
}

/// `tint.json`: `{engine, adapter, results: {target: {kernel: verdict}}}`.
struct TintResults {
    engine: String,
    adapter: Option<String>,
    results: BTreeMap<Target, BTreeMap<String, TintVerdict>>,
}

impl TintResults {
    fn parse(file: &Path, value: &Value) -> Result<TintResults, CliError> {
        let d = Doc { file };
        let top = Field { path: String::new(), value: Some(value) };
        d.object(&top)?;
        let engine = d.string(&top.get("engine"))?;
        let adapter = d.nullable_string(&top.get("adapter"))?;
        let results_field = top.get("results");
        let mut results = BTreeMap::new();
        for (key, _) in d.object(&results_field)? {
            let field = results_field.get(key);
            let target: Target = key.parse().map_err(|_| {
                let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
                d.error(&field.path, format!("a target name as key: one of {}", names.join(", ")), format!("{key:?}"))
            })?;
            let mut kernels = BTreeMap::new();
            for (name, _) in d.object(&field)? {
                let f = field.get(name);
                let expected = "\"compiled\", \"rejected\" or \"not compiled: <why>\"";
                let verdict = d.typed(&f, expected, |v| match v.as_str()? {
                    "compiled" => Some(TintVerdict::Compiled),
                    "rejected" => Some(TintVerdict::Rejected),
                    s => s.strip_prefix("not compiled: ").map(|why| TintVerdict::NotCompiled(why.to_string())),
                })?;
                kernels.insert(name.clone(), verdict);
            }
            results.insert(target, kernels);
        }
        Ok(TintResults { engine, adapter, results })
    }
}

/// One op a browser test ran (`tests/browser/README.md`, "An op").
struct OpRun {
    case: u64,
    op: String,
    step: Option<u64>,
    kernel: Option<String>,
    backend: Option<Backend>,
    tier: Option<Tier>,
    check: String,
    tolerance: Option<f64>,
    worst: Option<f64>,
    ok: bool,
    error: Option<String>,
}

/// One entry of the page's own selection (`sg.select()` in shadergen.mjs).
struct Picked {
    family: String,
    kernel: String,
    backend: Backend,
    tier: Option<Tier>,
}

/// One run of the page.
struct Run {
    name: String,
    hide_gpu: bool,
    /// The browser gave no WebGPU adapter for this run.
    skipped: Option<String>,
    /// The run failed as a whole.
    error: Option<String>,
    selection: Option<Vec<Picked>>,
    ops: Vec<OpRun>,
}

/// A browser test's result file, `<browser>.json`.
struct BrowserResult {
    /// `chromium`, `firefox`.
    browser: &'static str,
    /// `chromium.json`.
    file: String,
    version: String,
    user_agent: Option<String>,
    target: Target,
    generator: String,
    caps: Option<Caps>,
    caps_without_webgpu: Option<Caps>,
    runs: Vec<Run>,
    ok: bool,
    failures: Vec<String>,
}

const BACKENDS: [(&str, Backend); 3] =
    [("webgpu", Backend::WebGpu), ("wasm-simd", Backend::WasmSimd), ("wasm-scalar", Backend::WasmScalar)];

impl BrowserResult {
    fn parse(file: &Path, browser: &'static str, value: &Value) -> Result<BrowserResult, CliError> {
        let d = Doc { file };
        let top = Field { path: String::new(), value: Some(value) };
        d.object(&top)?;
        let schema = d.uint(&top.get("schema"))?;
        if schema != 1 {
            return Err(d.error("schema", "1 (tests/browser/README.md)", schema.to_string()));
        }
        let name = d.string(&top.get("browser"))?;
        if name != browser {
            return Err(d.error("browser", format!("{browser:?} (the file's name)"), format!("{name:?}")));
        }
        let targets: Vec<(&str, Target)> = Target::ALL.iter().map(|&t| (t.name(), t)).collect();
        let tiers: Vec<(&str, Tier)> = Tier::ALL.iter().map(|&t| (t.name(), t)).collect();
        let target = d.choice(&top.get("target"), &targets, false)?.expect("not nullable");
        let generator = d.string(&top.get("package").get("generator"))?;
        let mut runs = Vec::new();
        for r in d.array(&top.get("runs"), "an array of runs")? {
            d.object(&r)?;
            let name = d.string(&r.get("name"))?;
            if r.get("skipped").value.is_some() {
                let skipped = Some(d.string(&r.get("skipped"))?);
                runs.push(Run { name, hide_gpu: false, skipped, error: None, selection: None, ops: Vec::new() });
                continue;
            }
            let selection = if r.get("selection").is_null_or_missing() {
                None
            } else {
                let mut picked = Vec::new();
                for s in d.array(&r.get("selection"), "an array of {family, kernel, backend, tier} or null")? {
                    picked.push(Picked {
                        family: d.string(&s.get("family"))?,
                        kernel: d.string(&s.get("kernel"))?,
                        backend: d.choice(&s.get("backend"), &BACKENDS, false)?.expect("not nullable"),
                        tier: d.choice(&s.get("tier"), &tiers, true)?,
                    });
                }
                Some(picked)
            };
            let mut ops = Vec::new();
            for o in d.array(&r.get("ops"), "an array of ops")? {
                d.object(&o)?;
                ops.push(OpRun {
                    case: d.uint(&o.get("case"))?,
                    op: d.string(&o.get("op"))?,
                    step: d.optional_uint(&o.get("step"))?,
                    kernel: d.nullable_string(&o.get("kernel"))?,
                    backend: d.choice(&o.get("backend"), &BACKENDS, true)?,
                    tier: d.choice(&o.get("tier"), &tiers, true)?,
                    check: d.string(&o.get("check"))?,
                    tolerance: d.optional_number(&o.get("tolerance"))?,
                    worst: d.optional_number(&o.get("worst_relative_error"))?,
                    ok: d.boolean(&o.get("ok"))?,
                    error: d.optional_string(&o.get("error"))?,
                });
            }
            runs.push(Run {
                name,
                hide_gpu: d.boolean(&r.get("hide_gpu"))?,
                skipped: None,
                error: d.optional_string(&r.get("error"))?,
                selection,
                ops,
            });
        }
        let mut failures = Vec::new();
        for f in d.array(&top.get("failures"), "an array of strings")? {
            failures.push(d.string(&f)?);
        }
        Ok(BrowserResult {
            browser,
            file: format!("{browser}.json"),
            version: d.string(&top.get("version"))?,
            user_agent: d.nullable_string(&top.get("user_agent"))?,
            target,
            generator,
            caps: d.caps(&top.get("caps"))?,
            caps_without_webgpu: d.caps(&top.get("caps_without_webgpu"))?,
            runs,
            ok: d.boolean(&top.get("ok"))?,
            failures,
        })
    }
}

/// Every result file found, checked.
struct Results {
    tint: Option<TintResults>,
    browsers: Vec<BrowserResult>,
    /// The files looked for and not found (names).
    missing: Vec<String>,
}

impl Results {
    fn read(dir: &Path, browser_dir: &Path) -> Result<Results, CliError> {
        let mut missing = Vec::new();
        for d in [dir, browser_dir] {
            if !d.exists() {
                progress_line(&format!(
                    "note: results folder `{}` not found: its results are shown as \"not run\"",
                    d.display()
                ));
            }
        }
        let tint_path = dir.join(TINT_FILE);
        let tint = match read_json(&tint_path)? {
            Some(v) => Some(TintResults::parse(&tint_path, &v)?),
            None => {
                if dir.exists() {
                    progress_line(&format!(
                        "note: no `{}`: Tint is shown as \"not run\" (`node --test tests/dawn/` writes it to \
                         target/test-results)",
                        tint_path.display()
                    ));
                }
                missing.push(TINT_FILE.to_string());
                None
            }
        };
        let mut browsers = Vec::new();
        for name in BROWSERS {
            let path = browser_dir.join(format!("{name}.json"));
            match read_json(&path)? {
                Some(v) => browsers.push(BrowserResult::parse(&path, name, &v)?),
                None => {
                    if browser_dir.exists() {
                        progress_line(&format!(
                            "note: no `{}`: {name}'s executions are shown as \"not run\" (`node --test \
                             tests/browser/` writes it to target/browser-results, or to \
                             $SHADERGEN_BROWSER_RESULTS; --browser-results reads from there)",
                            path.display()
                        ));
                    }
                    missing.push(format!("{name}.json"));
                }
            }
        }
        Ok(Results { tint, browsers, missing })
    }

    fn browser(&self, name: &str) -> Option<&BrowserResult> {
        self.browsers.iter().find(|b| b.browser == name)
    }

    fn found_summary(&self) -> String {
        let mut found: Vec<String> = Vec::new();
        if self.tint.is_some() {
            found.push(TINT_FILE.into());
        }
        found.extend(self.browsers.iter().map(|b| b.file.clone()));
        let found = if found.is_empty() { "none".to_string() } else { found.join(", ") };
        if self.missing.is_empty() { found } else { format!("{found}; not found: {}", self.missing.join(", ")) }
    }
}

// ---------------------------------------------------------------------------------------------
// The packages, built in memory

/// Whether a kernel's code passed validation.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    Ok,
    Failed(String),
    /// Not tried: the WGSL failed first.
    NotBuilt,
}

/// One kernel of a target's default set, as built.
struct BuiltKernel {
    name: String,
    family: String,
    tier: Tier,
    /// naga validation and MSL/HLSL/SPIR-V cross-compilation.
    wgsl: Check,
    /// wasmparser validation of both twins.
    wasm: Check,
    /// Fingerprints of the WGSL text and the SIMD and scalar modules, to match results to code.
    wgsl_hash: Option<u64>,
    simd_hash: Option<u64>,
    scalar_hash: Option<u64>,
}

impl BuiltKernel {
    fn code_hash(&self, backend: Backend) -> Option<u64> {
        match backend {
            Backend::WebGpu => self.wgsl_hash,
            Backend::WasmSimd => self.simd_hash,
            Backend::WasmScalar => self.scalar_hash,
        }
    }
}

/// A target's package.
struct Package {
    target: Target,
    generator: String,
    kernels: Vec<BuiltKernel>,
    /// What the selection rule reads, from the manifest of every kernel that built.
    view: PackageView,
}

impl Package {
    fn build(target: Target) -> Package {
        let specs = KernelSpec::default_set(target);
        let mut kernels = Vec::with_capacity(specs.len());
        let mut entries = Vec::with_capacity(specs.len());
        let mut template = None;
        for spec in &specs {
            let (name, family, tier) = (spec.name(), spec_family(spec), spec.profile.tier);
            let mut k = BuiltKernel {
                name,
                family,
                tier,
                wgsl: Check::Ok,
                wasm: Check::Ok,
                wgsl_hash: None,
                simd_hash: None,
                scalar_hash: None,
            };
            // One kernel at a time, so that one failure does not hide the others' results.
            match manifest::build(target, std::slice::from_ref(spec), |_, _, _| {}) {
                Ok(package) => {
                    let mut m = package.manifest;
                    let entry = m.kernels.pop().expect("one kernel built");
                    let file = |name: &str| package.files.iter().find(|(n, _)| n == name).map(|(_, b)| fnv1a(b));
                    k.wgsl_hash = file(&entry.wgsl);
                    k.simd_hash = file(&entry.wasm.simd);
                    k.scalar_hash = file(&entry.wasm.scalar);
                    entries.push(entry);
                    template.get_or_insert(m);
                }
                Err(PackageError::Wasm(e)) => k.wasm = Check::Failed(e.to_string()),
                Err(e) => (k.wgsl, k.wasm) = (Check::Failed(e.to_string()), Check::NotBuilt),
            }
            kernels.push(k);
        }
        let (generator, view) = match template {
            Some(mut m) => {
                m.kernels = entries;
                let json = serde_json::to_value(&m).expect("a manifest serializes");
                let view = PackageView::from_json(&json).expect("a manifest codegen built reads back");
                (m.generator, view)
            }
            None => (format!("shadergen {}", env!("CARGO_PKG_VERSION")), PackageView { target, kernels: Vec::new() }),
        };
        Package { target, generator, kernels, view }
    }

    fn kernel(&self, name: &str) -> Option<&BuiltKernel> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// The family's kernel at `tier`.
    fn at(&self, family: &str, tier: Tier) -> Option<&BuiltKernel> {
        self.kernels.iter().find(|k| k.family == family && k.tier == tier)
    }

    /// The family's lowest-tier kernel: the one whose twin stands for the family on
    /// WebAssembly (docs/CAPS.md §3).
    fn lowest(&self, family: &str) -> Option<&BuiltKernel> {
        self.kernels.iter().filter(|k| k.family == family).min_by_key(|k| k.tier)
    }

    /// Families in the order they first appear.
    fn families(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for k in &self.kernels {
            if !out.contains(&k.family.as_str()) {
                out.push(&k.family);
            }
        }
        out
    }
}

/// The family key of a spec, as `codegen::caps::KernelView::family` makes it from the
/// manifest (`op/bits/group_size/scheme`, `/head_dim` for KV ops); used for kernels that did
/// not build, which have no manifest entry.
fn spec_family(spec: &KernelSpec) -> String {
    let f = &spec.format;
    let mut key = format!("{}/{}/{}/{}", spec.op.name(), f.bits(), f.group_size(), f.scheme().name());
    if spec.op.is_kv() {
        key.push_str(&format!("/{}", spec.head_dim));
    }
    key
}

/// FNV-1a, 64 bits: a fingerprint to tell whether two kernels' code is the same.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Every target's package.
struct Packages(Vec<Package>);

impl Packages {
    /// Builds every target's default set, the targets in parallel.
    fn build() -> Packages {
        let packages = std::thread::scope(|s| {
            let handles: Vec<_> = Target::ALL.iter().map(|&t| s.spawn(move || Package::build(t))).collect();
            handles.into_iter().map(|h| h.join().expect("a package build does not panic")).collect()
        });
        Packages(packages)
    }

    fn of(&self, target: Target) -> &Package {
        self.0.iter().find(|p| p.target == target).expect("every target is built")
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix

/// What the browsers' runs say about one kernel on one backend.
#[derive(Default)]
struct Exec {
    /// Ops that ran it.
    ops: usize,
    /// The failed ones, described.
    failed: Vec<String>,
    /// The browsers they ran in, in file order.
    browsers: Vec<&'static str>,
}

impl Exec {
    fn add(&mut self, browser: &BrowserResult, run: &Run, op: &OpRun) {
        self.ops += 1;
        if !self.browsers.contains(&browser.browser) {
            self.browsers.push(browser.browser);
        }
        if !op.ok {
            self.failed.push(describe_failure(browser, run, op));
        }
    }
}

/// `chromium, run webgpu, case 1 matvec: worst relative error 3.1e-2 > tolerance 1e-5`.
fn describe_failure(browser: &BrowserResult, run: &Run, op: &OpRun) -> String {
    let step = op.step.map(|s| format!(" step {s}")).unwrap_or_default();
    let why = if let Some(e) = &op.error {
        format!("threw {e}")
    } else if op.check == "bytes" {
        "cache bytes differ from the reference".to_string()
    } else {
        match (op.worst, op.tolerance) {
            (Some(w), Some(t)) => format!("worst relative error {w:.2e} > tolerance {t:e}"),
            (None, Some(t)) => format!("outputs not within tolerance {t:e} (no worst error: NaN or wrong length)"),
            _ => "outputs not checked (no tolerance)".to_string(),
        }
    };
    let kernel = op.kernel.as_deref().unwrap_or("no kernel");
    let backend = op.backend.map_or("no backend", Backend::name);
    format!("{}, run {}, case {} {}{step} ({kernel} on {backend}): {why}", browser.browser, run.name, op.case, op.op)
}

/// One column, resolved: the report used, the package and the choices.
struct Column<'a> {
    def: &'a ColumnDef,
    caps: Caps,
    /// Where the report came from: a result file's name, or the vector's path.
    caps_file: String,
    /// For the inputs list: which report, from whom.
    caps_note: String,
    target: Target,
    choices: Vec<Choice>,
    /// The browser runs whose ops count for this column's cells.
    runs: Vec<(&'a BrowserResult, &'a Run)>,
    /// The page's own selection (shadergen.mjs) on the same report, when there is one.
    page_selection: Option<(&'a BrowserResult, &'a Run)>,
}

struct Matrix<'a> {
    results: &'a Results,
    packages: &'a Packages,
    columns: Vec<Column<'a>>,
    families: Vec<String>,
}

impl<'a> Matrix<'a> {
    fn new(results: &'a Results, packages: &'a Packages) -> Matrix<'a> {
        let columns: Vec<Column<'a>> = COLUMNS.iter().map(|def| Self::column(def, results, packages)).collect();
        let mut families: Vec<String> = Vec::new();
        for c in &columns {
            for f in packages.of(c.target).families() {
                if !families.iter().any(|g| g == f) {
                    families.push(f.to_string());
                }
            }
        }
        Matrix { results, packages, columns, families }
    }

    fn column(def: &'a ColumnDef, results: &'a Results, packages: &'a Packages) -> Column<'a> {
        let vector: Value = serde_json::from_str(def.vector.text).expect("a shared vector is JSON");
        let recorded = Caps::from_json(&vector["caps"]).expect("a shared vector's report reads");
        // The real browser's report: the browser's own file, or (no WebGPU) the first browser
        // whose run with navigator.gpu hidden reported one.
        let real: Option<(&BrowserResult, Caps, &str)> = if def.without_webgpu {
            results
                .browsers
                .iter()
                .find_map(|b| b.caps_without_webgpu.clone().map(|c| (b, c, "the run with navigator.gpu hidden")))
        } else {
            def.browser
                .and_then(|name| results.browser(name))
                .and_then(|b| b.caps.clone().map(|c| (b, c, "the WebGPU run")))
        };
        let (caps, caps_file, caps_note, real_browser) = match real {
            Some((b, caps, which)) => {
                let note = format!(
                    "the report shadergen.mjs made in {} ({which}); the recorded {VECTOR_DIR}/{} is not used",
                    b.version, def.vector.file
                );
                (caps, b.file.clone(), note, Some(b))
            }
            None => {
                let why = match def.browser {
                    Some(name) => format!("no {name}.json report"),
                    None if def.without_webgpu => "no browser result with navigator.gpu hidden".to_string(),
                    None => "no browser test runs this browser".to_string(),
                };
                let note = format!("recorded vector ({why}): {}", recorded.source);
                (recorded, format!("{VECTOR_DIR}/{}", def.vector.file), note, None)
            }
        };
        let target = suggest_target(&caps);
        let choices = select_package(&caps, &packages.of(target).view, false);
        let runs: Vec<(&BrowserResult, &Run)> = results
            .browsers
            .iter()
            .filter(|b| def.without_webgpu || Some(b.browser) == def.browser)
            .flat_map(|b| b.runs.iter().map(move |r| (b, r)))
            .filter(|(_, r)| r.skipped.is_none() && r.hide_gpu == def.without_webgpu)
            .collect();
        let page_selection = real_browser.and_then(|b| {
            let wanted = if def.without_webgpu { "no-webgpu" } else { "webgpu" };
            b.runs.iter().find(|r| r.name == wanted && r.selection.is_some()).map(|r| (b, r))
        });
        Column { def, caps, caps_file, caps_note, target, choices, runs, page_selection }
    }

    /// The ops of `runs` that ran `kernel` of `package` on `backend` (at `tier` on WebGPU)
    /// with byte-identical code.
    fn executed<'r>(
        &self,
        package: &Package,
        kernel: &BuiltKernel,
        backend: Backend,
        runs: impl IntoIterator<Item = (&'r BrowserResult, &'r Run)>,
    ) -> Exec {
        let mut exec = Exec::default();
        let Some(hash) = kernel.code_hash(backend) else {
            return exec;
        };
        let tier = (backend == Backend::WebGpu).then_some(kernel.tier);
        for (b, r) in runs {
            let ran = self.packages.of(b.target);
            let same_code =
                b.target == package.target || ran.kernel(&kernel.name).and_then(|k| k.code_hash(backend)) == Some(hash);
            if !same_code {
                continue;
            }
            for op in &r.ops {
                if op.kernel.as_deref() == Some(kernel.name.as_str()) && op.backend == Some(backend) && op.tier == tier
                {
                    exec.add(b, r, op);
                }
            }
        }
        exec
    }

    /// Every run of every browser file that ran `target`'s package.
    fn runs_of_target(&self, target: Target) -> Vec<(&'a BrowserResult, &'a Run)> {
        self.results
            .browsers
            .iter()
            .filter(|b| b.target == target)
            .flat_map(|b| b.runs.iter().map(move |r| (b, r)))
            .collect()
    }

    fn tint(&self, target: Target, kernel: &str) -> Option<&TintVerdict> {
        self.results.tint.as_ref()?.results.get(&target)?.get(kernel)
    }

    // -----------------------------------------------------------------------------------------
    // The document

    fn document(&self) -> Vec<Block> {
        let mut doc = vec![
            Block::Heading(1, "Browser compatibility matrix".into()),
            Block::Para(vec![
                Span::Text("Generated by ".into()),
                Span::Code("shadergen matrix".into()),
                Span::Text(
                    " from the recorded capability vectors, the packages it builds in memory and the test \
                     results listed below; do not edit by hand. "
                        .into(),
                ),
                Span::Code("scripts/test-all.sh".into()),
                Span::Text(" writes a fresh one to ".into()),
                Span::Code("target/matrix/".into()),
                Span::Text(".".into()),
            ]),
        ];
        doc.push(Block::Heading(2, "Inputs".into()));
        doc.push(Block::List(self.inputs()));
        doc.push(Block::Heading(2, "How to read it".into()));
        doc.push(Block::List(legend()));
        doc.push(Block::Heading(2, "Summary by target and tier".into()));
        doc.push(self.summary());
        doc.push(Block::Heading(2, "Kernel families by browser".into()));
        doc.push(Block::Para(vec![Span::Text(
            "Each cell: the variant the browser gets (docs/CAPS.md section 3, allow_f16 false), whether its \
             code validated, whether Tint compiled it, whether it executed correctly in the real browser."
                .into(),
        )]));
        doc.push(self.families_table());
        for c in self.columns.iter().filter(|c| !c.def.without_webgpu) {
            doc.push(Block::Heading(2, format!("Tiers: {} (package {})", c.def.title, c.target)));
            doc.push(self.tier_table(c));
        }
        doc.push(Block::Heading(2, "Failures and notes".into()));
        let notes = self.notes();
        if notes.is_empty() {
            doc.push(Block::Para(vec![Span::Good(
                "None: every kernel validated, nothing was rejected or failed.".into(),
            )]));
        } else {
            doc.push(Block::List(notes));
        }
        doc
    }

    fn inputs(&self) -> Vec<Vec<Span>> {
        let mut items = Vec::new();
        let sizes: Vec<String> =
            self.packages.0.iter().map(|p| format!("{} {}", p.target, count(p.kernels.len(), "kernel"))).collect();
        items.push(vec![
            Span::Strong("Packages: ".into()),
            Span::Text(format!(
                "built in memory by {} (each target's default set, what ",
                self.packages.0.first().map_or("shadergen", |p| p.generator.as_str())
            )),
            Span::Code("shadergen emit --target <target>".into()),
            Span::Text(format!(" writes): {}.", sizes.join(", "))),
        ]);
        for c in &self.columns {
            let mut line = vec![
                Span::Strong(format!("{} caps: ", c.def.title)),
                Span::Code(c.caps_file.clone()),
                Span::Text(format!(
                    ": {}. Engine {}, {}; suggested target {}.",
                    c.caps_note,
                    c.caps.engine,
                    describe_adapter(&c.caps),
                    c.target
                )),
            ];
            line.push(Span::Text(format!(" Selection: {}.", summarize_choices(&c.choices))));
            items.push(line);
        }
        match &self.results.tint {
            Some(t) => {
                let kernels: usize = t.results.values().map(BTreeMap::len).sum();
                let targets: Vec<&str> = t.results.keys().map(|t| t.name()).collect();
                items.push(vec![
                    Span::Strong("Tint: ".into()),
                    Span::Code(TINT_FILE.into()),
                    Span::Text(format!(
                        ": engine {}, adapter {}; {} over {} ({}).",
                        t.engine,
                        t.adapter.as_deref().unwrap_or("unknown"),
                        count(kernels, "kernel"),
                        count(targets.len(), "target"),
                        targets.join(", ")
                    )),
                ]);
            }
            None => items.push(vec![
                Span::Strong("Tint: ".into()),
                Span::Code(TINT_FILE.into()),
                Span::Off(" not found: every Tint cell says \"not run\" (node --test tests/dawn/ writes it).".into()),
            ]),
        }
        for name in BROWSERS {
            match self.results.browser(name) {
                Some(b) => {
                    let adapter = b.caps.as_ref().map_or("no report".to_string(), describe_adapter);
                    let runs: Vec<String> = b
                        .runs
                        .iter()
                        .map(|r| match &r.skipped {
                            Some(_) => format!("{} (skipped)", r.name),
                            None => format!("{} ({})", r.name, count(r.ops.len(), "op")),
                        })
                        .collect();
                    items.push(vec![
                        Span::Strong(format!("Browser test {name}: ")),
                        Span::Code(b.file.clone()),
                        Span::Text(format!(
                            ": {}, user agent {}; {}; package {} by {}; runs {}; {}.",
                            b.version,
                            b.user_agent.as_deref().unwrap_or("unknown"),
                            adapter,
                            b.target,
                            b.generator,
                            runs.join(", "),
                            if b.ok { "the test passed".to_string() } else { count(b.failures.len(), "failure") }
                        )),
                    ]);
                }
                None => items.push(vec![
                    Span::Strong(format!("Browser test {name}: ")),
                    Span::Code(format!("{name}.json")),
                    Span::Off(
                        " not found: its executions say \"not run\" (node --test tests/browser/ writes it).".into(),
                    ),
                ]),
            }
        }
        items
    }

    fn summary(&self) -> Block {
        let header = [
            "target",
            "tier",
            "kernels",
            "naga ok (twins: wasmparser ok)",
            "Tint compiled",
            "Tint rejected",
            "Tint not compiled",
            "Tint not run",
            "executed ok",
            "executed failed",
            "executed not run",
        ]
        .map(|h| vec![vec![Span::Text(h.into())]])
        .to_vec();
        let mut rows = Vec::new();
        for p in &self.packages.0 {
            let runs = self.runs_of_target(p.target);
            for &tier in p.target.info().tiers {
                let kernels: Vec<&BuiltKernel> = p.kernels.iter().filter(|k| k.tier == tier).collect();
                let (mut compiled, mut rejected, mut not_compiled, mut tint_not_run) = (0, 0, 0, 0);
                let (mut ok, mut failed, mut not_run) = (0, 0, 0);
                for k in &kernels {
                    match self.tint(p.target, &k.name) {
                        Some(TintVerdict::Compiled) => compiled += 1,
                        Some(TintVerdict::Rejected) => rejected += 1,
                        Some(TintVerdict::NotCompiled(_)) => not_compiled += 1,
                        None => tint_not_run += 1,
                    }
                    let e = self.executed(p, k, Backend::WebGpu, runs.iter().copied());
                    tally(&e, &mut ok, &mut failed, &mut not_run);
                }
                let valid = kernels.iter().filter(|k| k.wgsl == Check::Ok).count();
                rows.push(vec![
                    text_cell(p.target.name()),
                    text_cell(tier.name()),
                    text_cell(&kernels.len().to_string()),
                    count_cell(valid, kernels.len() - valid),
                    good_cell(compiled),
                    bad_cell(rejected),
                    text_cell(&not_compiled.to_string()),
                    text_cell(&tint_not_run.to_string()),
                    good_cell(ok),
                    bad_cell(failed),
                    text_cell(&not_run.to_string()),
                ]);
            }
            for backend in [Backend::WasmSimd, Backend::WasmScalar] {
                let twins: Vec<&BuiltKernel> = p.families().into_iter().filter_map(|f| p.lowest(f)).collect();
                let (mut ok, mut failed, mut not_run) = (0, 0, 0);
                for k in &twins {
                    let e = self.executed(p, k, backend, runs.iter().copied());
                    tally(&e, &mut ok, &mut failed, &mut not_run);
                }
                let valid = twins.iter().filter(|k| k.wasm == Check::Ok).count();
                let na = || text_cell("n/a");
                rows.push(vec![
                    text_cell(p.target.name()),
                    text_cell(&format!("{backend} twins")),
                    text_cell(&twins.len().to_string()),
                    count_cell(valid, twins.len() - valid),
                    na(),
                    na(),
                    na(),
                    na(),
                    good_cell(ok),
                    bad_cell(failed),
                    text_cell(&not_run.to_string()),
                ]);
            }
        }
        Block::Table { header, rows }
    }

    fn families_table(&self) -> Block {
        let mut header = vec![vec![vec![Span::Text("family".into())]]];
        for c in &self.columns {
            header.push(vec![
                vec![Span::Strong(c.def.title.into())],
                vec![Span::Text("caps: ".into()), Span::Code(c.caps_file.clone())],
                vec![Span::Text(format!("package: {}", c.target))],
            ]);
        }
        let mut rows = Vec::new();
        for family in &self.families {
            let mut row = vec![text_cell(family)];
            for c in &self.columns {
                row.push(self.choice_cell(c, family));
            }
            rows.push(row);
        }
        Block::Table { header, rows }
    }

    fn choice_cell(&self, c: &Column<'_>, family: &str) -> Cell {
        let package = self.packages.of(c.target);
        let Some(choice) = c.choices.iter().find(|ch| ch.family == family) else {
            return vec![vec![Span::Off(format!("not in the {} package", c.target))]];
        };
        let Some(kernel) = package.kernel(&choice.kernel) else {
            return vec![vec![Span::Bad(format!("{}: not built", choice.kernel))]];
        };
        let variant = match choice.tier {
            Some(tier) => format!("{}, tier {tier}", choice.backend),
            None => format!("{} (WebAssembly twin)", choice.backend),
        };
        let mut cell = vec![vec![Span::Code(choice.kernel.clone())], vec![Span::Text(variant)]];
        if choice.backend == Backend::WebGpu {
            cell.push(vec![check_span("naga", &kernel.wgsl)]);
            cell.push(vec![self.tint_span(c.target, &kernel.name)]);
        } else {
            cell.push(vec![check_span("wasmparser", &kernel.wasm)]);
            cell.push(vec![Span::Off("Tint: n/a (WebAssembly)".into())]);
        }
        let exec = self.executed(package, kernel, choice.backend, c.runs.iter().copied());
        cell.push(vec![exec_span(&exec, c.def.without_webgpu)]);
        cell
    }

    fn tint_span(&self, target: Target, kernel: &str) -> Span {
        match self.tint(target, kernel) {
            Some(TintVerdict::Compiled) => Span::Good("Tint: compiled".into()),
            Some(TintVerdict::Rejected) => Span::Bad("Tint: rejected".into()),
            Some(TintVerdict::NotCompiled(why)) => Span::Off(format!("Tint: not compiled ({why})")),
            None => Span::Off("Tint: not run".into()),
        }
    }

    fn tier_table(&self, c: &Column<'_>) -> Block {
        let package = self.packages.of(c.target);
        let tiers = c.target.info().tiers;
        let mut header = vec![text_cell("family")];
        header.extend(tiers.iter().map(|t| text_cell(&format!("webgpu {t}"))));
        header.push(text_cell("wasm-simd"));
        header.push(text_cell("wasm-scalar"));
        let runs: Vec<(&BrowserResult, &Run)> = c
            .def
            .browser
            .and_then(|name| self.results.browser(name))
            .into_iter()
            .flat_map(|b| b.runs.iter().map(move |r| (b, r)))
            .collect();
        let mut rows = Vec::new();
        for family in package.families() {
            let choice = c.choices.iter().find(|ch| ch.family == family);
            let selected = |kernel: &BuiltKernel, backend: Backend| {
                choice.is_some_and(|ch| ch.kernel == kernel.name && ch.backend == backend)
            };
            let mut row = vec![text_cell(family)];
            for &tier in tiers {
                let Some(k) = package.at(family, tier) else {
                    row.push(vec![vec![Span::Off("none".into())]]);
                    continue;
                };
                let mut cell = Vec::new();
                if selected(k, Backend::WebGpu) {
                    cell.push(vec![Span::Strong("selected".into())]);
                }
                cell.push(vec![check_span("naga", &k.wgsl)]);
                cell.push(vec![self.tint_span(c.target, &k.name)]);
                cell.push(vec![exec_span(&self.executed(package, k, Backend::WebGpu, runs.iter().copied()), false)]);
                row.push(cell);
            }
            for backend in [Backend::WasmSimd, Backend::WasmScalar] {
                let Some(k) = package.lowest(family) else {
                    row.push(vec![vec![Span::Off("none".into())]]);
                    continue;
                };
                let mut cell = Vec::new();
                if selected(k, backend) {
                    cell.push(vec![Span::Strong("selected".into())]);
                }
                cell.push(vec![check_span("wasmparser", &k.wasm)]);
                cell.push(vec![exec_span(&self.executed(package, k, backend, runs.iter().copied()), false)]);
                row.push(cell);
            }
            rows.push(row);
        }
        Block::Table { header, rows }
    }

    fn notes(&self) -> Vec<Vec<Span>> {
        let mut notes = Vec::new();
        for p in &self.packages.0 {
            for k in &p.kernels {
                for (what, check) in [("WGSL (naga)", &k.wgsl), ("WebAssembly (wasmparser)", &k.wasm)] {
                    if let Check::Failed(why) = check {
                        notes.push(vec![
                            Span::Bad(format!("{} {} failed validation: ", p.target, what)),
                            Span::Code(k.name.clone()),
                            Span::Text(format!(": {why}")),
                        ]);
                    }
                }
            }
        }
        if let Some(t) = &self.results.tint {
            for (target, kernels) in &t.results {
                let rejected: Vec<&str> =
                    kernels.iter().filter(|(_, v)| **v == TintVerdict::Rejected).map(|(k, _)| k.as_str()).collect();
                if !rejected.is_empty() {
                    notes.push(vec![Span::Bad(format!(
                        "Tint rejected {} of {target}: {}",
                        count(rejected.len(), "kernel"),
                        rejected.join(", ")
                    ))]);
                }
                let mut why_counts: BTreeMap<&str, usize> = BTreeMap::new();
                for v in kernels.values() {
                    if let TintVerdict::NotCompiled(why) = v {
                        *why_counts.entry(why).or_default() += 1;
                    }
                }
                for (why, n) in why_counts {
                    notes.push(vec![Span::Off(format!(
                        "Tint did not compile {} of {target} ({why}: the Dawn adapter lacks it).",
                        count(n, "kernel")
                    ))]);
                }
                let package = self.packages.of(*target);
                let unknown: Vec<&str> =
                    kernels.keys().filter(|k| package.kernel(k).is_none()).map(String::as_str).collect();
                if !unknown.is_empty() {
                    notes.push(vec![Span::Text(format!(
                        "tint.json lists {} of {target} that this generator does not emit: {}",
                        count(unknown.len(), "kernel"),
                        unknown.join(", ")
                    ))]);
                }
            }
        }
        for b in &self.results.browsers {
            let package = self.packages.of(b.target);
            if b.generator != package.generator {
                notes.push(vec![Span::Text(format!(
                    "{} ran a package by {}; this matrix is built by {}: its kernels may differ from the ones shown.",
                    b.file, b.generator, package.generator
                ))]);
            }
            if let Some(caps) = &b.caps {
                let suggested = suggest_target(caps);
                if suggested != b.target {
                    notes.push(vec![Span::Text(format!(
                        "{}: the browser's report suggests {suggested} but the test ran the {} package.",
                        b.file, b.target
                    ))]);
                }
            }
            for r in &b.runs {
                if let Some(why) = &r.skipped {
                    notes.push(vec![Span::Off(format!("{}: run {} skipped: {why}", b.file, r.name))]);
                }
                if let Some(e) = &r.error {
                    notes.push(vec![Span::Bad(format!("{}: run {} failed as a whole: {e}", b.file, r.name))]);
                }
                let mut foreign: Vec<&str> = Vec::new();
                for op in &r.ops {
                    if !op.ok {
                        notes.push(vec![Span::Bad(format!("executed, failed: {}", describe_failure(b, r, op)))]);
                    }
                    if let Some(k) = op.kernel.as_deref().filter(|k| package.kernel(k).is_none())
                        && !foreign.contains(&k)
                    {
                        foreign.push(k);
                    }
                }
                if !foreign.is_empty() {
                    notes.push(vec![Span::Text(format!(
                        "{}: run {} ran kernels this generator does not emit for {}: {}",
                        b.file,
                        r.name,
                        b.target,
                        foreign.join(", ")
                    ))]);
                }
            }
            for f in &b.failures {
                notes.push(vec![Span::Bad(format!("{} test failure: ", b.browser)), Span::Text(shorten(f, 400))]);
            }
        }
        for c in &self.columns {
            let Some((b, r)) = c.page_selection else { continue };
            let picked = r.selection.as_deref().unwrap_or_default();
            let differs: Vec<String> = c
                .choices
                .iter()
                .filter(|ch| {
                    !picked.iter().any(|p| {
                        p.family == ch.family && p.kernel == ch.kernel && p.backend == ch.backend && p.tier == ch.tier
                    })
                })
                .map(|ch| ch.family.clone())
                .collect();
            if differs.is_empty() && picked.len() == c.choices.len() {
                notes.push(vec![Span::Good(format!(
                    "{}: shadergen.mjs in {} (run {}) chose the same variant as codegen::caps for all {} families.",
                    c.def.title,
                    b.browser,
                    r.name,
                    c.choices.len()
                ))]);
            } else {
                notes.push(vec![Span::Bad(format!(
                    "{}: shadergen.mjs in {} (run {}) chose differently from codegen::caps for {} ({} entries in \
                     its selection): {}",
                    c.def.title,
                    b.browser,
                    r.name,
                    count(differs.len(), "family"),
                    picked.len(),
                    differs.join(", ")
                ))]);
            }
        }
        notes
    }
}

fn tally(e: &Exec, ok: &mut usize, failed: &mut usize, not_run: &mut usize) {
    match (e.ops, e.failed.len()) {
        (0, _) => *not_run += 1,
        (_, 0) => *ok += 1,
        _ => *failed += 1,
    }
}

fn check_span(what: &str, check: &Check) -> Span {
    match check {
        Check::Ok => Span::Good(format!("{what}: ok")),
        Check::Failed(_) => Span::Bad(format!("{what}: FAILED")),
        Check::NotBuilt => Span::Off(format!("{what}: not built")),
    }
}

/// `executed: ok (2 ops)`, `executed: failed (1 of 2 ops)`, `executed: not run`; with
/// `name_browsers`, the browsers that ran it.
fn exec_span(e: &Exec, name_browsers: bool) -> Span {
    let r#in =
        if name_browsers && !e.browsers.is_empty() { format!(" in {}", e.browsers.join(", ")) } else { String::new() };
    match (e.ops, e.failed.len()) {
        (0, _) => Span::Off("executed: not run".into()),
        (n, 0) => Span::Good(format!("executed: ok ({}{})", count(n, "op"), r#in)),
        (n, f) => Span::Bad(format!("executed: failed ({f} of {}{})", count(n, "op"), r#in)),
    }
}

/// `adapter google swiftshader; features subgroups, ...; workgroup storage 16384`.
fn describe_adapter(caps: &Caps) -> String {
    let Some(gpu) = &caps.webgpu else {
        return format!("no WebGPU, wasm simd128 {}", caps.wasm.simd128);
    };
    let a = &gpu.adapter;
    let known: Vec<&str> = [&a.vendor, &a.architecture, &a.device, &a.description]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    let name = if known.is_empty() { "no adapter info".to_string() } else { format!("adapter {}", known.join(" ")) };
    let wanted: Vec<&str> = ["shader-f16", "subgroups"].into_iter().filter(|f| gpu.has(f)).collect();
    let features =
        if wanted.is_empty() { "neither shader-f16 nor subgroups".to_string() } else { wanted.join(" and ") };
    format!(
        "{name}{}; {features}; workgroup storage {} bytes",
        if gpu.is_fallback_adapter { " (fallback adapter)" } else { "" },
        gpu.limits.max_compute_workgroup_storage_size
    )
}

/// `90 families on webgpu/subgroups (adapter has subgroups; no shader-f16)`, one part per
/// distinct (backend, tier, reason), in order of first appearance.
fn summarize_choices(choices: &[Choice]) -> String {
    let mut groups: Vec<(String, String, usize)> = Vec::new();
    for c in choices {
        let variant = match c.tier {
            Some(t) => format!("{}/{t}", c.backend),
            None => c.backend.to_string(),
        };
        match groups.iter_mut().find(|(v, r, _)| *v == variant && *r == c.reason) {
            Some(g) => g.2 += 1,
            None => groups.push((variant, c.reason.clone(), 1)),
        }
    }
    let parts: Vec<String> =
        groups.iter().map(|(v, r, n)| format!("{} on {v} ({})", count(*n, "family"), shorten(r, 200))).collect();
    parts.join("; ")
}

fn legend() -> Vec<Vec<Span>> {
    [
        "Families: kernels of the same op, bits, group size, scheme and (KV ops) head dim, as docs/CAPS.md names \
         them (matvec/4/32/sym, kv-attend/4/32/asym/128); bits 16 is the f16 baseline.",
        "Variant: what codegen::caps::select (docs/CAPS.md section 3) picks for the column's capabilities report \
         from the package of the target the report suggests (section 2), with allow_f16 false: a WebGPU kernel \
         and its tier, or the family's WebAssembly twin (wasm-simd, wasm-scalar).",
        "Caps: the report the real browser made (shadergen.mjs in the browser test) where a result file holds \
         one, else the recorded vector in tests/caps; each column header names the one used.",
        "naga / wasmparser: the package was built in memory by codegen::manifest::build, one kernel at a time: \
         ok means the WGSL passed naga validation and MSL, HLSL and SPIR-V cross-compilation (wasmparser \
         validated both WebAssembly twins, for wasm cells).",
        "Tint: Chrome's compiler in Dawn for Node, from tint.json per target and kernel: compiled, rejected, not \
         compiled (the Dawn adapter lacks a feature the kernel needs), or not run (no tint.json, or the kernel \
         is not in it).",
        "Executed: the browser tests' runs in real headless browsers: ok when every op that ran this kernel on \
         this backend (same name and tier; from another target's package only with byte-identical code) matched the reference within the manifest's tolerance \
         (kv-append: bytes equal); failed when one did not; not run when no op ran it (the tests cover a few \
         formats of each op, and no browser test runs Safari). The no-WebGPU column counts the runs with \
         navigator.gpu hidden.",
        "Tier tables: every tier of the browser's package, the selected kernel marked; f16 tiers are chosen only \
         when the host allows f16 (allow_f16), so they show what such a host would get.",
    ]
    .into_iter()
    .map(|s| vec![Span::Text(s.into())])
    .collect()
}

/// `1 kernel`, `3 kernels`, `2 families`.
fn count(n: usize, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, "family") => format!("{n} families"),
        _ => format!("{n} {what}s"),
    }
}

/// At most `max` characters, with `...` when cut; on one line.
fn shorten(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}...", one_line.chars().take(max).collect::<String>())
    }
}

fn text_cell(s: &str) -> Cell {
    vec![vec![Span::Text(s.into())]]
}

fn good_cell(n: usize) -> Cell {
    vec![vec![if n > 0 { Span::Good(n.to_string()) } else { Span::Text("0".into()) }]]
}

fn bad_cell(n: usize) -> Cell {
    vec![vec![if n > 0 { Span::Bad(n.to_string()) } else { Span::Text("0".into()) }]]
}

/// `90`, or `89 (1 FAILED)`.
fn count_cell(ok: usize, failed: usize) -> Cell {
    let mut line = vec![Span::Text(ok.to_string())];
    if failed > 0 {
        line.push(Span::Bad(format!(" ({failed} FAILED)")));
    }
    vec![line]
}

// ---------------------------------------------------------------------------------------------
// One document, rendered as Markdown and as HTML

/// A piece of text.
#[derive(Clone)]
enum Span {
    Text(String),
    Code(String),
    Strong(String),
    /// A good result (green in HTML).
    Good(String),
    /// A bad result (bold; red in HTML).
    Bad(String),
    /// Nothing to say: not run, n/a (grey in HTML).
    Off(String),
}

/// A table cell: lines of spans.
type Cell = Vec<Vec<Span>>;

enum Block {
    Heading(u8, String),
    Para(Vec<Span>),
    List(Vec<Vec<Span>>),
    Table { header: Vec<Cell>, rows: Vec<Vec<Cell>> },
}

/// Markdown text with every character that could start markup escaped.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(ch);
            }
            '&' => out.push_str("&amp;"),
            '\n' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

fn md_spans(spans: &[Span]) -> String {
    let mut out = String::new();
    for s in spans {
        match s {
            Span::Text(t) | Span::Good(t) | Span::Off(t) => out.push_str(&md_escape(t)),
            Span::Code(t) => {
                // In a table a `|` ends the cell even inside code: GitHub takes `\|` there.
                let _ = write!(out, "`{}`", t.replace('`', "'").replace('|', "\\|"));
            }
            Span::Strong(t) | Span::Bad(t) => {
                let _ = write!(out, "**{}**", md_escape(t.trim_end()));
                if t.ends_with(' ') {
                    out.push(' ');
                }
            }
        }
    }
    out
}

fn md_cell(cell: &Cell) -> String {
    cell.iter().map(|line| md_spans(line)).collect::<Vec<_>>().join("<br>")
}

fn render_md(doc: &[Block]) -> String {
    let mut out = String::new();
    for block in doc {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {}\n", "#".repeat(usize::from(*level)), md_escape(text));
            }
            Block::Para(spans) => {
                let _ = writeln!(out, "{}\n", md_spans(spans));
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {}", md_spans(item));
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let line =
                    |cells: &[Cell]| format!("| {} |", cells.iter().map(md_cell).collect::<Vec<_>>().join(" | "));
                let _ = writeln!(out, "{}", line(header));
                let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
                for row in rows {
                    let _ = writeln!(out, "{}", line(row));
                }
                out.push('\n');
            }
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(ch),
        }
    }
    out
}

fn html_spans(spans: &[Span]) -> String {
    let mut out = String::new();
    for s in spans {
        let (tag, class, text) = match s {
            Span::Text(t) => ("", "", t),
            Span::Code(t) => ("code", "", t),
            Span::Strong(t) => ("strong", "", t),
            Span::Good(t) => ("span", "ok", t),
            Span::Bad(t) => ("strong", "bad", t),
            Span::Off(t) => ("span", "off", t),
        };
        match (tag, class) {
            ("", _) => out.push_str(&html_escape(text)),
            (tag, "") => {
                let _ = write!(out, "<{tag}>{}</{tag}>", html_escape(text));
            }
            (tag, class) => {
                let _ = write!(out, "<{tag} class=\"{class}\">{}</{tag}>", html_escape(text));
            }
        }
    }
    out
}

fn html_cell(cell: &Cell) -> String {
    cell.iter().map(|line| html_spans(line)).collect::<Vec<_>>().join("<br>")
}

const HTML_STYLE: &str = "\
body { font: 14px/1.45 system-ui, -apple-system, \"Segoe UI\", sans-serif; margin: 1.5em; color: #1b1b1b; \
background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #c8c8c8; padding: 0.3em 0.55em; vertical-align: top; text-align: left; }
thead th { background: #eef0f3; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #f8f9fa; }
tbody td:first-child { white-space: nowrap; font-weight: 600; }
code { font: 12px ui-monospace, \"SFMono-Regular\", Menlo, Consolas, monospace; }
li { margin: 0.25em 0; }
.ok { color: #116329; }
.bad { color: #b3261e; }
.off { color: #6b6b6b; }
";

fn render_html(doc: &[Block]) -> String {
    let title = doc
        .iter()
        .find_map(|b| match b {
            Block::Heading(1, t) => Some(t.as_str()),
            _ => None,
        })
        .unwrap_or("Browser compatibility matrix");
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>shadergen: {}</title>\n<style>\n{HTML_STYLE}</style>\n</head>\n<body>\n",
        html_escape(title)
    );
    for block in doc {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", html_escape(text));
            }
            Block::Para(spans) => {
                let _ = writeln!(out, "<p>{}</p>", html_spans(spans));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", html_spans(item));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<thead>\n<tr>");
                for h in header {
                    let _ = write!(out, "<th>{}</th>", html_cell(h));
                }
                out.push_str("</tr>\n</thead>\n<tbody>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for cell in row {
                        let _ = write!(out, "<td>{}</td>", html_cell(cell));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Writing, all or nothing

/// Fails before anything is built when a file to write is blocked by a folder of its name.
fn check_out_files(dir: &Path) -> Result<(), CliError> {
    for name in [MD_FILE, HTML_FILE] {
        let path = dir.join(name);
        if path.is_dir() {
            return Err(CliError::Package(PackageError::Io {
                path,
                source: io::Error::other("a folder of that name is in the way"),
            }));
        }
    }
    Ok(())
}

/// Writes `files` into `dir` (created if missing), all or nothing: each goes to a temporary
/// name first; only when all are written are they renamed into place, the files they replace
/// kept aside until every rename has succeeded. On failure every file is as it was before,
/// and folders this call created are removed.
fn write_all(dir: &Path, files: &[(&str, String)]) -> Result<(), CliError> {
    let io_error = |path: &Path, source| CliError::Package(PackageError::Io { path: path.to_path_buf(), source });
    check_out_files(dir)?;
    let first_created =
        dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).last().map(Path::to_path_buf);
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let staged = |name: &str| dir.join(format!(".{name}.partial"));
    let kept = |name: &str| dir.join(format!(".{name}.previous"));
    let mut written: Vec<PathBuf> = Vec::new();
    // (destination, its previous version kept aside, if any)
    let mut placed: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let mut result = Ok(());
    for (name, text) in files {
        let tmp = staged(name);
        if let Err(e) = std::fs::write(&tmp, text) {
            result = Err(io_error(&tmp, e));
            break;
        }
        written.push(tmp);
    }
    if result.is_ok() {
        for (name, _) in files {
            let dst = dir.join(name);
            let previous = if dst.exists() {
                if let Err(e) = std::fs::rename(&dst, kept(name)) {
                    result = Err(io_error(&dst, e));
                    break;
                }
                Some(kept(name))
            } else {
                None
            };
            let renamed = std::fs::rename(staged(name), &dst);
            placed.push((dst.clone(), previous));
            if let Err(e) = renamed {
                result = Err(io_error(&dst, e));
                break;
            }
        }
    }
    if result.is_err() {
        for (dst, previous) in placed.iter().rev() {
            match previous {
                Some(p) => {
                    let _ = std::fs::rename(p, dst);
                }
                None => {
                    let _ = std::fs::remove_file(dst);
                }
            }
        }
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = first_created {
            let _ = std::fs::remove_dir_all(d);
        }
    } else {
        for (_, previous) in &placed {
            if let Some(p) = previous {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_markup() {
        assert_eq!(md_escape("a|b *c* <d> _e_"), "a\\|b \\*c\\* \\<d\\> \\_e\\_");
        assert_eq!(md_spans(&[Span::Code("x|y".into())]), "`x\\|y`");
        assert_eq!(md_spans(&[Span::Bad("Tint: rejected".into())]), "**Tint: rejected**");
    }

    #[test]
    fn html_escapes_text() {
        assert_eq!(html_spans(&[Span::Text("<a & \"b\">".into())]), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(html_spans(&[Span::Bad("x".into())]), "<strong class=\"bad\">x</strong>");
    }

    #[test]
    fn spec_family_matches_the_manifest_family() {
        let package = Package::build(Target::Safari);
        for view in &package.view.kernels {
            let built = package.kernel(&view.name).expect("every kernel of the view was built");
            assert_eq!(built.family, view.family(), "{}", view.name);
        }
        assert_eq!(package.view.kernels.len(), package.kernels.len());
    }

    #[test]
    fn a_failed_write_leaves_the_files_as_they_were() {
        let dir = std::env::temp_dir().join(format!("shadergen-matrix-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".matrix.html.partial")).unwrap();
        std::fs::write(dir.join(MD_FILE), "old").unwrap();
        let files = [(MD_FILE, "new md".to_string()), (HTML_FILE, "new html".to_string())];
        assert!(write_all(&dir, &files).is_err());
        assert_eq!(std::fs::read_to_string(dir.join(MD_FILE)).unwrap(), "old");
        assert!(!dir.join(".matrix.md.partial").exists() && !dir.join(HTML_FILE).exists());
        std::fs::remove_dir_all(dir.join(".matrix.html.partial")).unwrap();
        write_all(&dir, &files).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(MD_FILE)).unwrap(), "new md");
        assert_eq!(std::fs::read_to_string(dir.join(HTML_FILE)).unwrap(), "new html");
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [HTML_FILE, MD_FILE]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_vectors_suggest_the_targets_they_pin() {
        for c in &COLUMNS {
            let v: Value = serde_json::from_str(c.vector.text).unwrap();
            let caps = Caps::from_json(&v["caps"]).unwrap();
            assert_eq!(suggest_target(&caps).name(), v["package_target"].as_str().unwrap(), "{}", c.vector.file);
        }
    }
}
