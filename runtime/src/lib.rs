//! shadergen's runtime: runs emitted kernels on a wgpu device.
//!
//! ```text
//! codec::Weights ──upload once──► GpuWeights (storage buffers: words, scales, mins)
//! KernelSpec ──wgsl::emit──► naga-dialect text ──compile once──► pipeline cache (by name)
//! x: &[f32] ──► Gpu::run(spec, weights, x, m) ──dispatch (spec.workgroups)──► y: Vec<f32>
//! ```
//!
//! The runtime reads only what a manifest also says: bindings by number
//! (`codegen::wgsl::bindings`), the 16-byte `Params` uniform, and the dispatch rule. It asks
//! the adapter for `shader-f16` and `subgroups` when it has them and reports which tiers
//! it can therefore run ([`Gpu::supports`]). Errors are values, never panics: no adapter,
//! a tier the device lacks, a shape the kernel cannot take, or a wgpu validation error.

#![deny(missing_docs)]

pub mod caps;
pub mod kv;
pub mod wasm;

pub use codegen;
use codegen::{Format, Op, Profile, Target};

use codegen::{KernelSpec, Tier, Weights, wgsl};
use std::collections::HashMap;
use std::sync::Mutex;
use wgpu::util::DeviceExt;

/// What can go wrong when running a kernel.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No adapter was found.
    #[error("no GPU adapter found (backends: {0})")]
    NoAdapter(String),
    /// The adapter refused the device request.
    #[error("requesting a device failed: {0}")]
    Device(String),
    /// The device lacks a feature the kernel's tier needs.
    #[error("kernel `{kernel}` needs the `{feature}` feature, which adapter `{adapter}` does not have")]
    MissingFeature {
        /// Kernel name.
        kernel: String,
        /// WebGPU feature name.
        feature: &'static str,
        /// Adapter description.
        adapter: String,
    },
    /// The shape does not suit the kernel or the weights.
    #[error("kernel `{kernel}`: {message}")]
    Shape {
        /// Kernel name.
        kernel: String,
        /// What is wrong.
        message: String,
    },
    /// Emitting the kernel failed.
    #[error(transparent)]
    Wgsl(#[from] codegen::WgslError),
    /// Emitting the kernel's WebAssembly failed.
    #[error(transparent)]
    WasmEmit(#[from] codegen::WasmError),
    /// The WASM engine failed to compile, instantiate or run a module.
    #[error("kernel `{kernel}`: wasm engine: {message}")]
    Wasm {
        /// Kernel name.
        kernel: String,
        /// The engine's message.
        message: String,
    },
    /// wgpu reported a validation or out-of-memory error.
    #[error("kernel `{kernel}`: wgpu error: {message}")]
    Wgpu {
        /// Kernel name.
        kernel: String,
        /// wgpu's message.
        message: String,
    },
}

/// Which backend a [`Runtime`] runs kernels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// wgpu (Vulkan, Metal, DX12, or WebGPU in a browser) at the given tier.
    Gpu(Tier),
    /// The WebAssembly twin in wasmtime.
    Wasm(wasm::Variant),
}

/// What the user asks [`Runtime::with`] for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    /// The GPU when an adapter is found, else WASM SIMD.
    Auto,
    /// The GPU, or an error.
    Gpu,
    /// WASM (SIMD, or scalar for hosts that want the baseline).
    Wasm(wasm::Variant),
}

/// Runs shadergen kernels on the best backend at hand: one entry point for every op and
/// format, with pipelines and modules compiled once and weights uploaded once.
pub struct Runtime {
    gpu: Option<Gpu>,
    wasm: wasm::WasmRunner,
    backend: Backend,
}

/// Weights uploaded for a [`Runtime`]: on the GPU once, and kept for the WASM backend.
pub struct Uploaded {
    weights: Weights,
    gpu: Option<GpuWeights>,
}

impl Uploaded {
    /// The format of the weights.
    pub fn format(&self) -> Format {
        self.weights.format
    }
}

impl Runtime {
    /// The GPU when an adapter is found (at the richest f32 tier it supports), else WASM SIMD.
    pub fn new() -> Result<Runtime, RuntimeError> {
        Runtime::with(Prefer::Auto)
    }

    /// A runtime on the backend asked for. `Prefer::Gpu` without an adapter is an error.
    pub fn with(prefer: Prefer) -> Result<Runtime, RuntimeError> {
        let wasm = wasm::WasmRunner::new()?;
        let gpu = match prefer {
            Prefer::Wasm(_) => None,
            Prefer::Gpu => Some(Gpu::new()?),
            Prefer::Auto => Gpu::new().ok(),
        };
        let backend = match (&gpu, prefer) {
            (Some(g), _) => Backend::Gpu(Profile::select_tier(
                Target::Native,
                g.features.contains(wgpu::Features::SHADER_F16),
                g.features.contains(wgpu::Features::SUBGROUP),
                false,
            )),
            (None, Prefer::Wasm(v)) => Backend::Wasm(v),
            (None, _) => Backend::Wasm(wasm::Variant::Simd),
        };
        Ok(Runtime { gpu, wasm, backend })
    }

    /// The backend kernels run on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The backend in words, for logs.
    pub fn describe(&self) -> String {
        match (&self.gpu, self.backend) {
            (Some(g), Backend::Gpu(tier)) => format!("wgpu on {} at tier {tier}", g.describe()),
            (_, Backend::Wasm(v)) => format!("wasmtime ({} module)", v.name()),
            _ => "unknown".into(),
        }
    }

    /// Uploads weights once for every later call.
    pub fn upload(&self, w: &Weights) -> Uploaded {
        Uploaded { weights: w.clone(), gpu: self.gpu.as_ref().map(|g| g.upload(w)) }
    }

    /// The kernel this runtime runs for `op` over weights of `format`.
    pub fn spec(&self, op: Op, format: Format) -> KernelSpec {
        let tier = match self.backend {
            Backend::Gpu(t) => t,
            Backend::Wasm(_) => Tier::Base,
        };
        let spec = KernelSpec::new(op, format, Target::Native, tier).expect("native has every tier");
        match (&self.backend, &self.gpu) {
            (Backend::Gpu(_), Some(g)) => g.native_limits(spec),
            _ => spec,
        }
    }

    /// `y[N] = W · x`.
    pub fn matvec(&self, w: &Uploaded, x: &[f32]) -> Result<Vec<f32>, RuntimeError> {
        self.run(Op::Matvec, w, x, 1)
    }

    /// `Y[M x N] = X[M x K] · Wᵀ`.
    pub fn matmul(&self, w: &Uploaded, x: &[f32], m: usize) -> Result<Vec<f32>, RuntimeError> {
        self.run(Op::Matmul, w, x, m)
    }

    /// Runs `op` over uploaded weights.
    pub fn run(&self, op: Op, w: &Uploaded, x: &[f32], m: usize) -> Result<Vec<f32>, RuntimeError> {
        let spec = self.spec(op, w.format());
        match (self.backend, &self.gpu, &w.gpu) {
            (Backend::Gpu(_), Some(g), Some(gw)) => g.run(&spec, gw, x, m),
            (Backend::Wasm(v), _, _) => self.wasm.run(&spec, v, &w.weights, x, m),
            _ => Err(RuntimeError::Shape {
                kernel: spec.name(),
                message: "these weights were uploaded for another runtime".into(),
            }),
        }
    }
}

/// A wgpu device with a pipeline cache.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    features: wgpu::Features,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
}

/// The adapter every part of the runtime uses: the first one wgpu offers, honouring
/// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.
pub(crate) fn open_adapter() -> Result<(wgpu::Instance, wgpu::Adapter), RuntimeError> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&instance, None))
        .map_err(|e| RuntimeError::NoAdapter(format!("{e}")))?;
    Ok((instance, adapter))
}

/// Weights uploaded once and reused by every run.
pub struct GpuWeights {
    words: wgpu::Buffer,
    scales: Option<wgpu::Buffer>,
    mins: Option<wgpu::Buffer>,
    format: codegen::Format,
    n: usize,
    k: usize,
}

impl Gpu {
    /// Opens the first adapter (honouring `WGPU_BACKEND`, `WGPU_ADAPTER_NAME`) and requests a
    /// device with `shader-f16` and `subgroups` where the adapter has them.
    pub fn new() -> Result<Gpu, RuntimeError> {
        let (_, adapter) = open_adapter()?;
        let info = adapter.get_info();
        // Timestamp queries only serve the benchmark; asking for them changes no kernel.
        let features = adapter.features()
            & (wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("shadergen"),
            required_features: features,
            // Everything the adapter offers: the kernels' own shape checks keep to the profile.
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| RuntimeError::Device(e.to_string()))?;
        Ok(Gpu { device, queue, info, features, pipelines: Mutex::new(HashMap::new()) })
    }

    /// The adapter's name, driver and backend, for reports.
    pub fn describe(&self) -> String {
        format!("{} ({}, {:?})", self.info.name, self.info.driver_info, self.info.backend)
    }

    /// The wgpu device (for benchmarks and hosts that add their own passes).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The device's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Whether the device was given timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The compiled pipeline (cached) that runs `spec` on `n` output rows of `k` columns: the
    /// kernel's entry point, or a matvec's tall or wide one (`KernelSpec::matvec_entry`).
    pub fn kernel_pipeline(&self, spec: &KernelSpec, n: u32, k: u32) -> Result<wgpu::ComputePipeline, RuntimeError> {
        self.pass_pipeline(spec, &spec.matvec_entry(n, k).0)
    }

    /// The buffers of uploaded weights, by binding name (`weights`, `scales`, `mins`).
    pub fn weight_buffer<'a>(&self, w: &'a GpuWeights, name: &str) -> Option<&'a wgpu::Buffer> {
        match name {
            "weights" => Some(&w.words),
            "scales" => w.scales.as_ref(),
            "mins" => w.mins.as_ref(),
            _ => None,
        }
    }

    /// `spec` as this device runs it: a `native` kernel (wgpu outside a browser) may use the
    /// device's own limits instead of the WebGPU spec defaults the profile table assumes, so
    /// that, for example, a 256 MiB weight matrix binds on a GPU that allows it. Browser targets
    /// keep their profile's limits: a package must run on every browser of its target.
    pub fn native_limits(&self, mut spec: KernelSpec) -> KernelSpec {
        if spec.profile.target == Target::Native {
            let l = self.device.limits();
            spec.profile.limits = codegen::profile::Limits {
                workgroup_storage: l.max_compute_workgroup_storage_size,
                invocations: l.max_compute_invocations_per_workgroup,
                workgroups_per_dim: l.max_compute_workgroups_per_dimension,
                storage_binding: l.max_storage_buffer_binding_size,
                max_buffer: l.max_buffer_size,
                storage_buffers_per_stage: l.max_storage_buffers_per_shader_stage,
            };
            // A device below the spec's 256 invocations keeps the default shape.
            if spec.tuning.wide.is_some_and(|w| w.workgroup_size > l.max_compute_invocations_per_workgroup) {
                spec.tuning.wide = None;
            }
        }
        spec
    }

    /// Whether this device can run kernels of `tier`.
    pub fn supports(&self, tier: Tier) -> bool {
        (!tier.shader_f16() || self.features.contains(wgpu::Features::SHADER_F16))
            && (!tier.subgroups() || self.features.contains(wgpu::Features::SUBGROUP))
    }

    /// Uploads quantized (or f16) weights.
    pub fn upload(&self, w: &Weights) -> GpuWeights {
        let buf = |label, data: &[u32]| {
            // Storage bindings cannot be empty; pad to one word.
            let data: &[u32] = if data.is_empty() { &[0] } else { data };
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: as_bytes(data),
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        GpuWeights {
            words: buf("weights", &w.words),
            scales: (!w.format.is_f16()).then(|| buf("scales", &w.scales)),
            mins: w.format.has_min().then(|| buf("mins", &w.mins)),
            format: w.format,
            n: w.n,
            k: w.k,
        }
    }

    /// The pipeline of one entry point of a kernel's module (kv-attend has two), cached by
    /// entry point. Its layout is explicit and built from `wgsl::bindings`, so every pass of a
    /// kernel shares one bind group, as the manifest says.
    pub fn pass_pipeline(&self, spec: &KernelSpec, entry: &str) -> Result<wgpu::ComputePipeline, RuntimeError> {
        // The name does not say the tuning (a benchmark may vary it): the key does.
        let key = format!("{entry} {:?}", spec.tuning);
        if let Some(p) = self.pipelines.lock().expect("pipeline cache lock").get(&key) {
            return Ok(p.clone());
        }
        let name = spec.name();
        let text = wgsl::emit(spec)?.naga_text;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&name),
            source: wgpu::ShaderSource::Wgsl(text.into()),
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = wgsl::bindings(spec)
            .iter()
            .map(|b| wgpu::BindGroupLayoutEntry {
                binding: b.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b.access {
                        "uniform" => wgpu::BufferBindingType::Uniform,
                        access => wgpu::BufferBindingType::Storage { read_only: access == "read" },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let bgl = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&name), entries: &entries });
        let layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&name),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(RuntimeError::Wgpu { kernel: name, message: e.to_string() });
        }
        self.pipelines.lock().expect("pipeline cache lock").insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Checks that the device has every feature `spec` needs.
    pub(crate) fn check_features(&self, spec: &KernelSpec) -> Result<(), RuntimeError> {
        for feature in spec.features() {
            let have = match feature {
                "shader-f16" => self.features.contains(wgpu::Features::SHADER_F16),
                _ => self.features.contains(wgpu::Features::SUBGROUP),
            };
            if !have {
                return Err(RuntimeError::MissingFeature { kernel: spec.name(), feature, adapter: self.describe() });
            }
        }
        Ok(())
    }

    /// Copies `bytes` bytes of `buffer` (which has COPY_SRC) back to the host as words.
    pub(crate) fn read_words(&self, name: &str, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u32>, RuntimeError> {
        let read = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(name) });
        enc.copy_buffer_to_buffer(buffer, 0, &read, 0, bytes);
        self.queue.submit([enc.finish()]);
        let slice = read.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| RuntimeError::Wgpu { kernel: name.into(), message: e.to_string() })?;
        let data =
            slice.get_mapped_range().map_err(|e| RuntimeError::Wgpu { kernel: name.into(), message: e.to_string() })?;
        Ok(bytemuck::cast_slice(&data[..]).to_vec())
    }

    /// Runs `spec` on uploaded weights: `Y[M x N] = X[M x K] · Wᵀ` (matvec: `m = 1`).
    pub fn run(&self, spec: &KernelSpec, w: &GpuWeights, x: &[f32], m: usize) -> Result<Vec<f32>, RuntimeError> {
        let name = spec.name();
        self.check_features(spec)?;
        check_call(spec, w.format, w.n, w.k, x.len(), m)?;
        let pipeline = self.kernel_pipeline(spec, w.n as u32, w.k as u32)?;

        let d = &self.device;
        let params = [m as u32, w.n as u32, w.k as u32, 0];
        let params = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: as_bytes(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let xb = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("x"),
            contents: as_bytes(x),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let out_bytes = (m * w.n * 4) as u64;
        let yb = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("y"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let mut entries = Vec::new();
        for b in wgsl::bindings(spec) {
            let buffer = match b.name {
                "params" => &params,
                "weights" => &w.words,
                "scales" => w.scales.as_ref().expect("quantized weights have scales"),
                "mins" => w.mins.as_ref().expect("asym weights have mins"),
                "x" => &xb,
                _ => &yb,
            };
            entries.push(wgpu::BindGroupEntry { binding: b.binding, resource: buffer.as_entire_binding() });
        }
        let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(&name) });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&name), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            let [gx, gy, gz] = spec.workgroups(m as u32, w.n as u32);
            pass.dispatch_workgroups(gx, gy, gz);
        }
        enc.copy_buffer_to_buffer(&yb, 0, &read, 0, out_bytes);
        self.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(RuntimeError::Wgpu { kernel: name, message: e.to_string() });
        }
        let slice = read.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        d.poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| RuntimeError::Wgpu { kernel: name.clone(), message: e.to_string() })?;
        let bytes = slice
            .get_mapped_range()
            .map_err(|e| RuntimeError::Wgpu { kernel: name.clone(), message: e.to_string() })?;
        let y = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(y)
    }
}

/// Checks a call's weights and shapes against the kernel, for every backend alike.
pub(crate) fn check_call(
    spec: &KernelSpec,
    format: codegen::Format,
    n: usize,
    k: usize,
    x_len: usize,
    m: usize,
) -> Result<(), RuntimeError> {
    let shape = |message: String| RuntimeError::Shape { kernel: spec.name(), message };
    if format != spec.format {
        return Err(shape(format!("weights are {format} but the kernel reads {}", spec.format)));
    }
    if spec.op == codegen::Op::Matvec && m != 1 {
        return Err(shape(format!("matvec takes one activation row, got M = {m}")));
    }
    if x_len != m * k {
        return Err(shape(format!("x has {x_len} values, expected M x K = {m} x {k}")));
    }
    spec.check_shape(m as u64, n as u64, k as u64).map_err(|e| shape(e.to_string()))
}

/// The bytes of a slice of 4-byte values, as WebGPU buffers hold them (little-endian hosts).
fn as_bytes<T: bytemuck::Pod>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}
