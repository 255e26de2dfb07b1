//! The KV cache on the GPU: buffers that stay on the device, kv-append that writes into them,
//! kv-attend that reads them (split pass, then combine pass, in one submission).
//!
//! ```text
//! KvCache (host, codec) ──upload_kv──► GpuKvCache {codes, scales, mins, window}
//! k, v: &[f32] ──kv_append──► the same buffers (len advances)
//! q: &[f32] ──kv_attend──► partials ──combine──► out [n_heads][D]
//! GpuKvCache ──download_kv──► KvCache (for checks against the codec)
//! ```

use crate::{Gpu, RuntimeError, as_bytes};
use codegen::kv::{KvCache, KvLayout, default_split_len};
use codegen::{KernelSpec, Op, Weights, wgsl};
use wgpu::util::DeviceExt;

/// One layer's cache resident on the device.
pub struct GpuKvCache {
    layout: KvLayout,
    len: usize,
    codes: wgpu::Buffer,
    scales: wgpu::Buffer,
    mins: wgpu::Buffer,
    window: wgpu::Buffer,
}

impl GpuKvCache {
    /// The cache's shape.
    pub fn layout(&self) -> KvLayout {
        self.layout
    }
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Gpu {
    /// Uploads a cache (usually [`KvCache::new`]'s empty one) to the device.
    pub fn upload_kv(&self, cache: &KvCache) -> GpuKvCache {
        let buf = |label, data: &[u32]| {
            let data: &[u32] = if data.is_empty() { &[0] } else { data };
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: as_bytes(data),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            })
        };
        GpuKvCache {
            layout: cache.layout,
            len: cache.len,
            codes: buf("kv codes", &cache.store.words),
            scales: buf("kv scales", &cache.store.scales),
            mins: buf("kv mins", &cache.store.mins),
            window: buf("kv window", &cache.window),
        }
    }

    /// The device buffer of a cache by binding name (`codes`, `scales`, `mins`, `window`), for
    /// benchmarks and hosts that record their own passes.
    pub fn kv_buffer<'a>(&self, cache: &'a GpuKvCache, name: &str) -> Option<&'a wgpu::Buffer> {
        match name {
            "codes" => Some(&cache.codes),
            "scales" => Some(&cache.scales),
            "mins" => Some(&cache.mins),
            "window" => Some(&cache.window),
            _ => None,
        }
    }

    /// Reads the device's cache back into a host [`KvCache`].
    pub fn download_kv(&self, cache: &GpuKvCache) -> Result<KvCache, RuntimeError> {
        let host = KvCache::new(cache.layout);
        let word_bytes = |v: &Vec<u32>| 4 * v.len().max(1) as u64;
        let mut words = self.read_words("kv codes", &cache.codes, word_bytes(&host.store.words))?;
        words.truncate(host.store.words.len());
        let mut scales = self.read_words("kv scales", &cache.scales, word_bytes(&host.store.scales))?;
        scales.truncate(host.store.scales.len());
        let mut mins = self.read_words("kv mins", &cache.mins, word_bytes(&host.store.mins))?;
        mins.truncate(host.store.mins.len());
        let window = self.read_words("kv window", &cache.window, 4 * host.window.len() as u64)?;
        let store = Weights { words, scales, mins, ..host.store };
        Ok(KvCache { layout: cache.layout, len: cache.len, store, window })
    }

    /// Appends tokens (`k`, `v`: `[n][kv_heads][head_dim]` f32) with the kv-append kernel
    /// `spec`. Values must be finite and fit f16, as [`KvCache::append`] requires.
    pub fn kv_append(
        &self,
        spec: &KernelSpec,
        cache: &mut GpuKvCache,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), RuntimeError> {
        let l = cache.layout;
        let shape = |message: String| RuntimeError::Shape { kernel: spec.name(), message };
        if spec.op != Op::KvAppend {
            return Err(shape(format!("{} is not a kv-append kernel", spec.name())));
        }
        let n = l.check_new(k, v).map_err(|e| shape(e.to_string()))?;
        if n == 0 {
            return Err(shape("nothing to append: k and v are empty".into()));
        }
        spec.check_kv(&l, cache.len as u64, n as u64, 0, 0).map_err(|e| shape(e.to_string()))?;
        self.check_features(spec)?;
        let mut new = Vec::with_capacity(2 * k.len());
        new.extend_from_slice(k);
        new.extend_from_slice(v);
        let params = l.params(cache.len as u32, n as u32, 0, 0, 0);
        let kv_new = self.storage("kv_new", &new);
        self.dispatch(spec, &params, cache, &[("kv_new", &kv_new)], |_| [l.kv_heads, 2, 1])?;
        cache.len += n;
        Ok(())
    }

    /// Decode attention of `n_heads` query heads (`q`: `[n_heads][head_dim]`) over the cache
    /// with the kv-attend kernel `spec`; returns `[n_heads][head_dim]`.
    pub fn kv_attend(
        &self,
        spec: &KernelSpec,
        cache: &GpuKvCache,
        q: &[f32],
        n_heads: usize,
    ) -> Result<Vec<f32>, RuntimeError> {
        let split_len = default_split_len(cache.len as u32, cache.layout.kv_heads, spec.tuning.chunk);
        self.kv_attend_split(spec, cache, q, n_heads, split_len)
    }

    /// [`Gpu::kv_attend`] with the split length chosen by the caller instead of the runtimes'
    /// rule ([`default_split_len`]): a positive multiple of the kernel's chunk (tokens per
    /// step), as the manifest's `split_len` host value requires.
    pub fn kv_attend_split(
        &self,
        spec: &KernelSpec,
        cache: &GpuKvCache,
        q: &[f32],
        n_heads: usize,
        split_len: u32,
    ) -> Result<Vec<f32>, RuntimeError> {
        let l = cache.layout;
        let shape = |message: String| RuntimeError::Shape { kernel: spec.name(), message };
        if spec.op != Op::KvAttend {
            return Err(shape(format!("{} is not a kv-attend kernel", spec.name())));
        }
        if q.len() != n_heads * l.head_dim as usize {
            return Err(shape(format!(
                "q has {} values, expected n_heads {n_heads} x head_dim {}",
                q.len(),
                l.head_dim
            )));
        }
        spec.check_kv(&l, cache.len as u64, 0, n_heads as u64, split_len as u64).map_err(|e| shape(e.to_string()))?;
        self.check_features(spec)?;
        let n_splits = (cache.len as u32).div_ceil(split_len);
        let params = l.params(cache.len as u32, 0, n_heads as u32, split_len, n_splits);
        let d = l.head_dim as usize;
        let qb = self.storage("q", q);
        let out_bytes = (n_heads * d * 4) as u64;
        let out = self.scratch("out", out_bytes);
        let partials = self.scratch("partials", (n_heads * n_splits as usize * (d + 2) * 4) as u64);
        let nh = n_heads as u32;
        self.dispatch(spec, &params, cache, &[("q", &qb), ("out", &out), ("partials", &partials)], |pass| {
            if pass == 0 { [l.kv_heads, n_splits, 1] } else { [nh, 1, 1] }
        })?;
        let words = self.read_words(&spec.name(), &out, out_bytes)?;
        Ok(words.into_iter().map(f32::from_bits).collect())
    }

    fn storage(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: as_bytes(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    fn scratch(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// Binds the cache and `extra` buffers by name and runs every pass of the kernel in one
    /// submission (`workgroups(i)` for pass `i`).
    fn dispatch(
        &self,
        spec: &KernelSpec,
        params: &[u32; 8],
        cache: &GpuKvCache,
        extra: &[(&str, &wgpu::Buffer)],
        workgroups: impl Fn(usize) -> [u32; 3],
    ) -> Result<(), RuntimeError> {
        let name = spec.name();
        let passes = spec.dispatch().passes;
        let pipelines =
            passes.iter().map(|p| self.pass_pipeline(spec, &p.entry_point)).collect::<Result<Vec<_>, _>>()?;
        let d = &self.device;
        let ub = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: as_bytes(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = Vec::new();
        for b in wgsl::bindings(spec) {
            let buffer = match b.name {
                "params" => &ub,
                "codes" => &cache.codes,
                "scales" => &cache.scales,
                "mins" => &cache.mins,
                "window" => &cache.window,
                other => extra.iter().find(|(n, _)| *n == other).map(|(_, b)| *b).expect("every binding supplied"),
            };
            entries.push(wgpu::BindGroupEntry { binding: b.binding, resource: buffer.as_entire_binding() });
        }
        let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&name),
            layout: &pipelines[0].get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(&name) });
        for (i, pipeline) in pipelines.iter().enumerate() {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&name), timestamp_writes: None });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            let [x, y, z] = workgroups(i);
            pass.dispatch_workgroups(x, y, z);
        }
        self.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(RuntimeError::Wgpu { kernel: name, message: e.to_string() });
        }
        Ok(())
    }
}
