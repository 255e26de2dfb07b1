//! The WebAssembly backend: runs a kernel's SIMD or scalar module in wasmtime, in-process.
//!
//! Buffers are laid out as the manifest's ABI says (`codegen::wasm::abi`): from byte 1024
//! on, 16-byte aligned, in the order weights, scales, mins, x, y; memory grows to fit.

use crate::RuntimeError;
use codegen::{KernelSpec, Weights, wasm};
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
        let func = instance.get_typed_func::<Args, ()>(&mut store, &name).map_err(|e| err(&name, e))?;

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
        Ok(WasmKernel { name, store, memory, func, args, x_len: m * w.k, y_len: m * w.n })
    }
}

type Args = (i32, i32, i32, i32, i32, i32, i32, i32);

/// An instantiated kernel with its weights in memory.
pub struct WasmKernel {
    name: String,
    store: wasmtime::Store<()>,
    memory: wasmtime::Memory,
    func: wasmtime::TypedFunc<Args, ()>,
    args: Args,
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
        self.func.call(&mut self.store, self.args).map_err(|e| err(&self.name, e))?;
        let y = &self.memory.data(&self.store)[y_at..y_at + 4 * self.y_len];
        Ok(y.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}
