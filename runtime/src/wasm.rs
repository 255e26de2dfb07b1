//! The WebAssembly backend: runs a kernel's SIMD or scalar module in wasmtime, in-process.
//!
//! Buffers are laid out as the manifest's ABI says (`codegen::wasm::abi`): from byte 1024
//! on, 16-byte aligned, in argument order (matvec and matmul: weights, scales, mins, x, y;
//! kv-append: params, codes, scales, mins, window, kv_new; kv-attend: params, codes, scales,
//! mins, window, q, out); memory grows to fit. A dot4 matvec (`KernelSpec::uses_dot4`) also
//! gets its `xq` scratch (`K/32 · wasm::XQ_BLOCK_BYTES` bytes, after `y`), passed last.

use crate::RuntimeError;
use codegen::kv::{KvCache, default_split_len};
use codegen::{KernelSpec, Op, Weights, wasm};
use std::collections::HashMap;
use std::sync::Mutex;

/// Which of a kernel's two modules to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The simd128 module.
    Simd,
    /// The module without SIMD.
    Scalar,
}

impl Variant {
    /// `simd` or `scalar`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Simd => "simd",
            Variant::Scalar => "scalar",
        }
    }
}

/// A wasmtime engine with a module cache.
pub struct WasmRunner {
    engine: wasmtime::Engine,
    modules: Mutex<HashMap<(String, Variant), wasmtime::Module>>,
}

fn err(kernel: &str, message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Wasm { kernel: kernel.into(), message: message.to_string() }
}

impl WasmRunner {
    /// A wasmtime engine with SIMD enabled (and nothing nondeterministic: no relaxed SIMD).
    pub fn new() -> Result<WasmRunner, RuntimeError> {
        let mut config = wasmtime::Config::new();
        config.wasm_simd(true).wasm_relaxed_simd(false);
        let engine = wasmtime::Engine::new(&config).map_err(|e| err("(engine)", e))?;
        Ok(WasmRunner { engine, modules: Mutex::new(HashMap::new()) })
    }

    /// The engine (for validation probes).
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    fn module(&self, spec: &KernelSpec, variant: Variant) -> Result<wasmtime::Module, RuntimeError> {
        let key = (spec.name(), variant);
        if let Some(m) = self.modules.lock().expect("module cache lock").get(&key) {
            return Ok(m.clone());
        }
        let w = wasm::emit(spec)?;
        let bytes = match variant {
            Variant::Simd => &w.simd,
            Variant::Scalar => &w.scalar,
        };
        let module = wasmtime::Module::new(&self.engine, bytes).map_err(|e| err(&key.0, e))?;
        self.modules.lock().expect("module cache lock").insert(key, module.clone());
        Ok(module)
    }

    /// Runs `spec`'s `variant` module once: `Y[M x N] = X[M x K] · Wᵀ`.
    pub fn run(
        &self,
        spec: &KernelSpec,
        variant: Variant,
        w: &Weights,
        x: &[f32],
        m: usize,
    ) -> Result<Vec<f32>, RuntimeError> {
        crate::check_call(spec, w.format, w.n, w.k, x.len(), m)?;
        self.load(spec, variant, w, m)?.run(x)
    }

    /// Appends tokens (`k`, `v`: `[n][kv_heads][head_dim]` f32) to `cache` with the kv-append
    /// kernel `spec`'s `variant` module; the cache's bytes are rewritten by the module.
    pub fn kv_append(
        &self,
        spec: &KernelSpec,
        variant: Variant,
        cache: &mut KvCache,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), RuntimeError> {
        self.load_kv(spec, variant)?.kv_append(cache, k, v)
    }

    /// Decode attention of `n_heads` query heads (`q`: `[n_heads][head_dim]`) over `cache`
    /// with the kv-attend kernel `spec`'s `variant` module; returns `[n_heads][head_dim]`.
    pub fn kv_attend(
        &self,
        spec: &KernelSpec,
        variant: Variant,
        cache: &KvCache,
        q: &[f32],
        n_heads: usize,
    ) -> Result<Vec<f32>, RuntimeError> {
        self.load_kv(spec, variant)?.kv_attend(cache, q, n_heads)
    }

    /// Instantiates a kv-append or kv-attend kernel's `variant` module, for any number of calls
    /// on any caches of its format and head dimension.
    pub fn load_kv(&self, spec: &KernelSpec, variant: Variant) -> Result<WasmKvKernel, RuntimeError> {
        let name = spec.name();
        if !spec.op.is_kv() {
            return Err(RuntimeError::Shape { kernel: name, message: format!("{} is not a KV op", spec.op.name()) });
        }
        let module = self.module(spec, variant)?;
        let mut store = wasmtime::Store::new(&self.engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).map_err(|e| err(&name, e))?;
        let memory =
            instance.get_memory(&mut store, "memory").ok_or_else(|| err(&name, "module exports no `memory`"))?;
        let func =
            instance.get_func(&mut store, &name).ok_or_else(|| err(&name, "module exports no kernel function"))?;
        let want = wasm::abi(spec).args.len();
        if func.ty(&store).params().len() != want {
            return Err(err(&name, format!("the kernel function does not take the ABI's {want} arguments")));
        }
        Ok(WasmKvKernel { spec: *spec, name, store, memory, func })
    }

    /// Instantiates `spec`'s `variant` module with the weights copied in once, for `m` rows
    /// of activations per call.
    pub fn load(&self, spec: &KernelSpec, variant: Variant, w: &Weights, m: usize) -> Result<WasmKernel, RuntimeError> {
        let name = spec.name();
        crate::check_call(spec, w.format, w.n, w.k, m * w.k, m)?;
        let module = self.module(spec, variant)?;
        let mut store = wasmtime::Store::new(&self.engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).map_err(|e| err(&name, e))?;
        let memory =
            instance.get_memory(&mut store, "memory").ok_or_else(|| err(&name, "module exports no `memory`"))?;
        let func = if spec.uses_dot4() {
            Func::Dot4(instance.get_typed_func::<Dot4Args, ()>(&mut store, &name).map_err(|e| err(&name, e))?)
        } else {
            Func::Plain(instance.get_typed_func::<Args, ()>(&mut store, &name).map_err(|e| err(&name, e))?)
        };

        // Lay the buffers out from the scratch boundary on, 16-byte aligned.
        let mut next = wasm::SCRATCH_BYTES as u64;
        let mut place = |bytes: u64| {
            let at = next;
            next = (next + bytes).div_ceil(16) * 16;
            at
        };
        let words_at = place(4 * w.words.len() as u64);
        let scales_at = place(4 * w.scales.len() as u64);
        let mins_at = place(4 * w.mins.len() as u64);
        let x_at = place(4 * (m * w.k) as u64);
        let y_at = place(4 * (m * w.n) as u64);
        let xq_at = place(if spec.uses_dot4() { (w.k / 32) as u64 * wasm::XQ_BLOCK_BYTES as u64 } else { 0 });
        if next > u32::MAX as u64 {
            return Err(RuntimeError::Shape {
                kernel: name,
                message: format!("buffers need {next} bytes, over the 4 GiB a wasm32 memory can hold"),
            });
        }
        let pages = next.div_ceil(65536);
        let have = memory.size(&store);
        if pages > have {
            memory
                .grow(&mut store, pages - have)
                .map_err(|e| err(&name, format!("growing memory to {pages} pages: {e}")))?;
        }
        let mem = memory.data_mut(&mut store);
        let mut put = |at: u64, data: &[u8]| mem[at as usize..at as usize + data.len()].copy_from_slice(data);
        put(words_at, bytemuck::cast_slice(&w.words));
        put(scales_at, bytemuck::cast_slice(&w.scales));
        put(mins_at, bytemuck::cast_slice(&w.mins));
        // Offsets fit u32 (checked above); wasm passes them as i32 bit patterns.
        let o = |v: u64| v as u32 as i32;
        let args = (o(words_at), o(scales_at), o(mins_at), o(x_at), o(y_at), m as i32, w.n as i32, w.k as i32);
        Ok(WasmKernel { name, store, memory, func, args, xq: o(xq_at), x_len: m * w.k, y_len: m * w.n })
    }
}

type Args = (i32, i32, i32, i32, i32, i32, i32, i32);
/// A dot4 matvec's arguments: [`Args`], then `xq`.
type Dot4Args = (i32, i32, i32, i32, i32, i32, i32, i32, i32);

enum Func {
    Plain(wasmtime::TypedFunc<Args, ()>),
    Dot4(wasmtime::TypedFunc<Dot4Args, ()>),
}

/// An instantiated kernel with its weights in memory.
pub struct WasmKernel {
    name: String,
    store: wasmtime::Store<()>,
    memory: wasmtime::Memory,
    func: Func,
    args: Args,
    /// The `xq` scratch's offset (dot4 kernels; otherwise unused).
    xq: i32,
    x_len: usize,
    y_len: usize,
}

impl WasmKernel {
    /// Copies `x` in, calls the kernel and returns `y`.
    pub fn run(&mut self, x: &[f32]) -> Result<Vec<f32>, RuntimeError> {
        if x.len() != self.x_len {
            return Err(RuntimeError::Shape {
                kernel: self.name.clone(),
                message: format!("x has {} values, the kernel was loaded for {}", x.len(), self.x_len),
            });
        }
        let (x_at, y_at) = (self.args.3 as u32 as usize, self.args.4 as u32 as usize);
        self.memory.data_mut(&mut self.store)[x_at..x_at + 4 * x.len()].copy_from_slice(bytemuck::cast_slice(x));
        let a = self.args;
        match &self.func {
            Func::Plain(f) => f.call(&mut self.store, a),
            Func::Dot4(f) => f.call(&mut self.store, (a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7, self.xq)),
        }
        .map_err(|e| err(&self.name, e))?;
        let y = &self.memory.data(&self.store)[y_at..y_at + 4 * self.y_len];
        Ok(y.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

/// An instantiated kv-append or kv-attend module. Each call copies the cache in (and, for
/// kv-append, back out): the host's [`KvCache`] stays the one copy of the cache.
pub struct WasmKvKernel {
    spec: KernelSpec,
    name: String,
    store: wasmtime::Store<()>,
    memory: wasmtime::Memory,
    func: wasmtime::Func,
}

impl WasmKvKernel {
    fn shape(&self, message: impl Into<String>) -> RuntimeError {
        RuntimeError::Shape { kernel: self.name.clone(), message: message.into() }
    }

    /// Lays `buffers` out (bytes each, in argument order) from the scratch boundary on,
    /// 16-byte aligned, grows memory to fit, copies them in (a `None` is the kernel's output)
    /// and returns their byte offsets.
    fn place(&mut self, buffers: &[(usize, Option<&[u8]>)]) -> Result<Vec<u64>, RuntimeError> {
        let mut next = wasm::SCRATCH_BYTES as u64;
        let mut at = Vec::with_capacity(buffers.len());
        for &(bytes, _) in buffers {
            at.push(next);
            next = (next + bytes as u64).div_ceil(16) * 16;
        }
        if next > u32::MAX as u64 {
            return Err(self.shape(format!("buffers need {next} bytes, over the 4 GiB a wasm32 memory can hold")));
        }
        let pages = next.div_ceil(65536);
        let have = self.memory.size(&self.store);
        if pages > have {
            self.memory
                .grow(&mut self.store, pages - have)
                .map_err(|e| err(&self.name, format!("growing memory to {pages} pages: {e}")))?;
        }
        let mem = self.memory.data_mut(&mut self.store);
        for (&(_, data), &a) in buffers.iter().zip(&at) {
            if let Some(data) = data {
                mem[a as usize..a as usize + data.len()].copy_from_slice(data);
            }
        }
        Ok(at)
    }

    fn call(&mut self, at: &[u64]) -> Result<(), RuntimeError> {
        // Offsets fit u32 (checked by `place`); wasm passes them as i32 bit patterns.
        let args: Vec<wasmtime::Val> = at.iter().map(|&a| wasmtime::Val::I32(a as u32 as i32)).collect();
        self.func.call(&mut self.store, &args, &mut []).map_err(|e| err(&self.name, e))
    }

    fn words(&self, at: u64, n: usize) -> Vec<u32> {
        let bytes = &self.memory.data(&self.store)[at as usize..at as usize + 4 * n];
        bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    /// Appends tokens (`k`, `v`: `[n][kv_heads][head_dim]` f32, finite and within f16's range)
    /// at `cache.len`; on success the cache holds exactly the bytes `KvCache::append` writes.
    pub fn kv_append(&mut self, cache: &mut KvCache, k: &[f32], v: &[f32]) -> Result<(), RuntimeError> {
        if self.spec.op != Op::KvAppend {
            return Err(self.shape(format!("{} is not a kv-append kernel", self.name)));
        }
        let l = cache.layout;
        let n = l.check_new(k, v).map_err(|e| self.shape(e.to_string()))?;
        if n == 0 {
            return Err(self.shape("nothing to append: k and v are empty"));
        }
        self.spec.check_kv(&l, cache.len as u64, n as u64, 0, 0).map_err(|e| self.shape(e.to_string()))?;
        let params = l.params(cache.len as u32, n as u32, 0, 0, 0);
        let new: Vec<f32> = k.iter().chain(v).copied().collect();
        let store = &cache.store;
        let at = self.place(&[
            (32, Some(bytemuck::cast_slice(&params))),
            (4 * store.words.len(), Some(bytemuck::cast_slice(&store.words))),
            (4 * store.scales.len(), Some(bytemuck::cast_slice(&store.scales))),
            (4 * store.mins.len(), Some(bytemuck::cast_slice(&store.mins))),
            (4 * cache.window.len(), Some(bytemuck::cast_slice(&cache.window))),
            (4 * new.len(), Some(bytemuck::cast_slice(&new))),
        ])?;
        self.call(&at)?;
        let words = self.words(at[1], cache.store.words.len());
        let scales = self.words(at[2], cache.store.scales.len());
        let mins = self.words(at[3], cache.store.mins.len());
        let window = self.words(at[4], cache.window.len());
        cache.store.words = words;
        cache.store.scales = scales;
        cache.store.mins = mins;
        cache.window = window;
        cache.len += n;
        Ok(())
    }

    /// Decode attention of `n_heads` query heads (`q`: `[n_heads][head_dim]`) over the
    /// `cache.len` tokens of `cache`; returns `[n_heads][head_dim]`.
    pub fn kv_attend(&mut self, cache: &KvCache, q: &[f32], n_heads: usize) -> Result<Vec<f32>, RuntimeError> {
        if self.spec.op != Op::KvAttend {
            return Err(self.shape(format!("{} is not a kv-attend kernel", self.name)));
        }
        let l = cache.layout;
        let d = l.head_dim as usize;
        if q.len() != n_heads * d {
            return Err(self.shape(format!("q has {} values, expected n_heads {n_heads} x head_dim {d}", q.len())));
        }
        // The module runs no splits; the check takes the split length the GPU would use.
        let split_len = default_split_len(cache.len as u32, l.kv_heads, self.spec.tuning.chunk);
        self.spec
            .check_kv(&l, cache.len as u64, 0, n_heads as u64, split_len as u64)
            .map_err(|e| self.shape(e.to_string()))?;
        let params = l.params(cache.len as u32, 0, n_heads as u32, 0, 0);
        let store = &cache.store;
        let at = self.place(&[
            (32, Some(bytemuck::cast_slice(&params))),
            (4 * store.words.len(), Some(bytemuck::cast_slice(&store.words))),
            (4 * store.scales.len(), Some(bytemuck::cast_slice(&store.scales))),
            (4 * store.mins.len(), Some(bytemuck::cast_slice(&store.mins))),
            (4 * cache.window.len(), Some(bytemuck::cast_slice(&cache.window))),
            (4 * q.len(), Some(bytemuck::cast_slice(q))),
            (4 * n_heads * d, None),
        ])?;
        self.call(&at)?;
        Ok(self.words(at[6], n_heads * d).into_iter().map(f32::from_bits).collect())
    }
}
