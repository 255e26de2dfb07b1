//! GPU benchmark (not a test): matvec and matmul kernels against ceilings measured in the
//! same run on the same device.
//!
//! - Ceiling for memory-bound kernels: a streaming read (`vec4<u32>` loads, grid-stride) of
//!   1 GiB, and of exactly the bytes each kernel moves (weights + scales + mins + x + y).
//! - Ceiling for matmul: an FMA loop (8 independent vec4 chains per invocation).
//! - Timing: timestamp queries around each dispatch, 300 ms of warm-up (clocks ramp up from
//!   idle), the median of many dispatches, weights rotated over copies totalling at least
//!   256 MiB so that the L2 cache cannot serve them.
//!
//! Writes a table and `bench/results.json` (or the path given): rows with `device`,
//! `driver`, `op`, `bits`, `shape`, `median_us`, `throughput`, `unit`, `ceiling`, `ratio`.
//!
//! cargo run --release -p shadergen-runtime --example gpu_bench [-- OUT.json [--quick]]

use codegen::{Format, KernelSpec, Op, Profile, Scheme, Target, Weights, wgsl};
use runtime::Gpu;
use std::time::{Duration, Instant};
use wgpu::util::DeviceExt;

const READ_WGSL: &str = "
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var acc = vec4<u32>(0u);
    let stride = nwg.x * 256u;
    let len = arrayLength(&src);
    for (var i = gid.x; i < len; i += stride) {
        acc ^= src[i];
    }
    dst[gid.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
";

const FMA_WGSL: &str = "
@group(0) @binding(0) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = f32(gid.x) * 1e-9;
    var a0 = vec4<f32>(s); var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0;
    var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0;
    let m = vec4<f32>(0.999999);
    let c = vec4<f32>(1e-7);
    for (var i = 0u; i < 1024u; i++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    dst[gid.x] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}
";
/// FLOPs of one FMA_WGSL invocation: 1024 iterations x 8 vec4 FMAs x 4 lanes x 2.
const FMA_FLOPS_PER_INVOCATION: f64 = 1024.0 * 8.0 * 4.0 * 2.0;

/// A timed job: the passes of one kernel run (each with its workgroup count) and the bind
/// groups its runs rotate over.
type Job<'j> = (&'j [(&'j wgpu::ComputePipeline, [u32; 3])], &'j [wgpu::BindGroup]);

/// One batch's timestamp queries and the buffers they are read back through.
struct Slot {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
}

struct Timer<'a> {
    gpu: &'a Gpu,
    slots: Vec<Slot>,
    period_ns: f64,
}

/// Timed dispatches per command buffer.
const BATCH: u32 = 32;
/// Batches in flight: the next ones are queued before the oldest is read back, so the card
/// never waits on the host between batches. Reading each batch back before submitting the
/// next (as until session 8) left it idle for the round trip, and some short rows of the
/// session 8 run came out 2x slow, their same-size read with them (a card clocking down).
const SLOTS: usize = 3;

impl<'a> Timer<'a> {
    fn new(gpu: &'a Gpu) -> Timer<'a> {
        let d = gpu.device();
        let size = 16 * BATCH as u64;
        let slots = (0..SLOTS)
            .map(|_| Slot {
                queries: d.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * BATCH,
                }),
                resolve: d.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("resolve"),
                    size,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                read: d.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps read"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            })
            .collect();
        Timer { gpu, slots, period_ns: gpu.queue().get_timestamp_period() as f64 }
    }

    /// Dispatches `runs` times (bind group `i % groups.len()` for run i), each in its own
    /// timed pass; returns the per-dispatch times in microseconds.
    fn time(&self, pipeline: &wgpu::ComputePipeline, groups: &[wgpu::BindGroup], wg: [u32; 3], runs: u32) -> Vec<f64> {
        self.time_stages(&[(pipeline, wg)], groups, runs)
    }

    /// As `time`, for a kernel of several passes (kv-attend: split, then combine), each its own
    /// compute pass; a run is timed from the start of its first pass to the end of its last.
    fn time_stages(
        &self,
        stages: &[(&wgpu::ComputePipeline, [u32; 3])],
        groups: &[wgpu::BindGroup],
        runs: u32,
    ) -> Vec<f64> {
        self.time_rounds(&[(stages, groups)], runs, 1).pop().expect("one job")
    }

    /// Times `jobs` in `rounds` rounds (each round `runs` dispatches of every job, in order)
    /// as one stream of batches, `SLOTS` in flight; returns each job's times in microseconds.
    fn time_rounds(&self, jobs: &[Job], runs: u32, rounds: u32) -> Vec<Vec<f64>> {
        // (job, first run, runs) of every batch, in submission order.
        let mut batches = Vec::new();
        for _ in 0..rounds {
            for (j, _) in jobs.iter().enumerate() {
                let mut start = 0;
                while start < runs {
                    let n = BATCH.min(runs - start);
                    batches.push((j, start, n));
                    start += n;
                }
            }
        }
        let mut out = vec![Vec::new(); jobs.len()];
        let mut in_flight = std::collections::VecDeque::new();
        // Rotation continues across rounds so that a job's runs keep cycling its copies.
        let mut offsets = vec![0u32; jobs.len()];
        for (b, &(j, _, n)) in batches.iter().enumerate() {
            let slot = &self.slots[b % SLOTS];
            let index = self.submit(slot, jobs[j], offsets[j], n);
            offsets[j] += n;
            in_flight.push_back((b % SLOTS, j, n, index));
            if in_flight.len() == SLOTS {
                let (s, j, n, index) = in_flight.pop_front().expect("in flight");
                out[j].extend(self.collect(&self.slots[s], n, index));
            }
        }
        while let Some((s, j, n, index)) = in_flight.pop_front() {
            out[j].extend(self.collect(&self.slots[s], n, index));
        }
        out
    }

    fn submit(&self, slot: &Slot, (stages, groups): Job, first: u32, n: u32) -> wgpu::SubmissionIndex {
        let mut enc = self.gpu.device().create_command_encoder(&Default::default());
        let last = stages.len() - 1;
        for i in 0..n {
            for (j, (pipeline, wg)) in stages.iter().enumerate() {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &slot.queries,
                        beginning_of_pass_write_index: (j == 0).then_some(2 * i),
                        end_of_pass_write_index: (j == last).then_some(2 * i + 1),
                    }),
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &groups[((first + i) as usize) % groups.len()], &[]);
                pass.dispatch_workgroups(wg[0], wg[1], wg[2]);
            }
        }
        enc.resolve_query_set(&slot.queries, 0..2 * n, &slot.resolve, 0);
        enc.copy_buffer_to_buffer(&slot.resolve, 0, &slot.read, 0, 16 * n as u64);
        self.gpu.queue().submit([enc.finish()])
    }

    /// Waits for one batch (only it: later ones stay queued) and reads its times.
    fn collect(&self, slot: &Slot, n: u32, index: wgpu::SubmissionIndex) -> Vec<f64> {
        let slice = slot.read.slice(..16 * n as u64);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.gpu.device().poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None }).expect("poll");
        let times = {
            let bytes = slice.get_mapped_range().expect("mapped");
            let ts: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
            (0..n as usize).map(|i| ts[2 * i + 1].saturating_sub(ts[2 * i]) as f64 * self.period_ns / 1e3).collect()
        };
        slot.read.unmap();
        times
    }

    /// Dispatches without timing until `wall` has passed (clocks ramp up from idle).
    fn warm(&self, pipeline: &wgpu::ComputePipeline, groups: &[wgpu::BindGroup], wg: [u32; 3], wall: Duration) {
        self.warm_stages(&[(pipeline, wg)], groups, wall);
    }

    /// Pipelined streams until `wall` has passed: the card idles only between streams, not
    /// between batches. The first stream is one batch; the next ones are sized from its
    /// times to what is left of `wall`, at most 16 batches.
    fn warm_stages(&self, stages: &[(&wgpu::ComputePipeline, [u32; 3])], groups: &[wgpu::BindGroup], wall: Duration) {
        let start = Instant::now();
        let run_us = median(self.time_stages(stages, groups, BATCH)).max(1.0);
        while start.elapsed() < wall {
            let left_us = wall.saturating_sub(start.elapsed()).as_secs_f64() * 1e6;
            let runs = ((left_us / run_us) as u32).clamp(1, 16 * BATCH);
            self.time_stages(stages, groups, runs);
        }
    }
}

/// Copies `len` f32 values of `buffer` (STORAGE | COPY_SRC) back to the host.
fn read_back(gpu: &Gpu, buffer: &wgpu::Buffer, len: usize) -> Vec<f32> {
    let read = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: 4 * len as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buffer, 0, &read, 0, 4 * len as u64);
    gpu.queue().submit([enc.finish()]);
    let slice = read.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    gpu.device().poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let bytes = slice.get_mapped_range().expect("mapped");
    bytemuck::cast_slice(&bytes[..]).to_vec()
}

/// `len` values in [-0.5, 0.5) from a xorshift32 state.
fn random_values(seed: &mut u32, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 17;
            *seed ^= *seed << 5;
            (*seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn storage(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).div_ceil(16) * 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

fn compute_pipeline(gpu: &Gpu, src: &str) -> wgpu::ComputePipeline {
    let d = gpu.device();
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// Streaming read of `bytes` (rounded to 16), over copies rotating past the cache.
/// Returns GB/s.
fn read_ceiling(gpu: &Gpu, timer: &Timer, bytes: u64, runs: u32) -> f64 {
    let read = ReadSetup::new(gpu, bytes);
    timer.warm(&read.pipeline, &read.groups, read.wg, Duration::from_millis(100));
    read.gb_per_s(median(timer.time(&read.pipeline, &read.groups, read.wg, runs)))
}

/// The streaming read of one byte count, set up once so that it can be timed in rounds
/// alternating with a kernel's.
struct ReadSetup {
    pipeline: wgpu::ComputePipeline,
    groups: Vec<wgpu::BindGroup>,
    wg: [u32; 3],
    bytes: u64,
}

impl ReadSetup {
    fn new(gpu: &Gpu, bytes: u64) -> ReadSetup {
        let pipeline = compute_pipeline(gpu, READ_WGSL);
        let bytes = bytes.div_ceil(16) * 16;
        let copies = (256u64 << 20).div_ceil(bytes).clamp(1, 64);
        let workgroups = 132 * 16;
        let dst = storage(gpu, "read dst", 4 * 256 * workgroups as u64);
        let groups = (0..copies)
            .map(|_| {
                let src = storage(gpu, "read src", bytes);
                gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &[
                        wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 1, resource: dst.as_entire_binding() },
                    ],
                })
            })
            .collect();
        ReadSetup { pipeline, groups, wg: [workgroups, 1, 1], bytes }
    }

    fn gb_per_s(&self, us: f64) -> f64 {
        self.bytes as f64 / us / 1e3
    }
}

/// Times a kernel and the streaming read of the same bytes in alternating rounds (after
/// warming both), so that both medians see the same clocks and the same neighbours: on a
/// shared card, back-to-back measurements minutes apart differed by 2x. Returns the kernel's
/// median in microseconds and the read's in GB/s.
fn time_against_read(
    gpu: &Gpu,
    timer: &Timer,
    stages: &[(&wgpu::ComputePipeline, [u32; 3])],
    groups: &[wgpu::BindGroup],
    bytes: u64,
    runs: u32,
    quick: bool,
) -> (f64, f64) {
    const ROUNDS: u32 = 5;
    let read = ReadSetup::new(gpu, bytes);
    let warm = Duration::from_millis(if quick { 50 } else { 300 });
    timer.warm(&read.pipeline, &read.groups, read.wg, warm / 3);
    timer.warm_stages(stages, groups, warm);
    let read_stages = [(&read.pipeline, read.wg)];
    let mut times = timer.time_rounds(&[(&read_stages, &read.groups), (stages, groups)], runs.div_ceil(ROUNDS), ROUNDS);
    let kernel = times.pop().expect("kernel times");
    let reads = times.pop().expect("read times");
    (median(kernel), read.gb_per_s(median(reads)))
}

fn fma_ceiling(gpu: &Gpu, timer: &Timer, quick: bool) -> f64 {
    let pipeline = compute_pipeline(gpu, FMA_WGSL);
    // Enough invocations to fill an H100 (132 SMs) many times over; --quick for CPU adapters.
    let workgroups = if quick { 4 } else { 132 * 64 };
    let dst = storage(gpu, "fma dst", 16 * 256 * workgroups as u64);
    let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: dst.as_entire_binding() }],
    });
    let wg = [workgroups, 1, 1];
    if !quick {
        timer.warm(&pipeline, std::slice::from_ref(&group), wg, Duration::from_millis(100));
    }
    let us = median(timer.time(&pipeline, std::slice::from_ref(&group), wg, if quick { 5 } else { 50 }));
    FMA_FLOPS_PER_INVOCATION * 256.0 * workgroups as f64 / us / 1e3
}

struct Row {
    tier: codegen::Tier,
    op: &'static str,
    bits: u32,
    shape: String,
    median_us: f64,
    throughput: f64,
    unit: &'static str,
    ceiling: f64,
}

impl Row {
    /// A memory-bound kernel's row: `bytes` moved in `us`, against a read ceiling in GB/s.
    fn memory(
        tier: codegen::Tier,
        op: &'static str,
        bits: u32,
        shape: String,
        us: f64,
        bytes: u64,
        ceiling: f64,
    ) -> Row {
        Row { tier, op, bits, shape, median_us: us, throughput: bytes as f64 / us / 1e3, unit: "GB/s", ceiling }
    }

    /// The row as a line of the printed table (its columns are the header's).
    fn line(&self) -> String {
        format!(
            "{:<9} {:>4} {:>18} {:>11.1} {:>8.1} {:<7} {:>8.1} {:>7.3}",
            self.op,
            self.bits,
            self.shape,
            self.median_us,
            self.throughput,
            self.unit,
            self.ceiling,
            self.throughput / self.ceiling
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or("bench/results.json".into());
    let quick = args.iter().any(|a| a == "--quick");
    let gpu = Gpu::new().expect("a wgpu adapter");
    assert!(gpu.has_timestamps(), "the adapter has no timestamp queries");
    let timer = Timer::new(&gpu);
    let device = gpu.describe();
    println!("device: {device}");
    // The device's own f32 tier: subgroups where it has them.
    let tier = Profile::select_tier(
        Target::Native,
        gpu.supports(codegen::Tier::F16),
        gpu.supports(codegen::Tier::Subgroups),
        false,
    );
    let runs = if quick { 20 } else { 200 };

    // Warm the clocks on a long read before anything is timed. (--quick: 64 MiB, for CPU
    // adapters.)
    let big: u64 = if quick { 64 << 20 } else { 1 << 30 };
    let gib = read_ceiling(&gpu, &timer, big, 5);
    let start = Instant::now();
    let mut gib_runs = Vec::new();
    while start.elapsed() < Duration::from_millis(300) {
        gib_runs.push(read_ceiling(&gpu, &timer, big, 5));
    }
    let gib = gib.max(median(gib_runs));
    let fma = fma_ceiling(&gpu, &timer, quick);
    println!("ceilings: streaming read of {} MiB {gib:.1} GB/s; FMA {fma:.1} GFLOP/s; tier {tier}", big >> 20);

    if std::env::var("KV_ONLY").is_ok() {
        kv_attend_rows(&gpu, &timer, quick, runs);
        return;
    }
    let mut rows = vec![
        Row {
            tier,
            op: "read",
            bits: 0,
            shape: format!("{}MiB", big >> 20),
            median_us: big as f64 / gib / 1e3,
            throughput: gib,
            unit: "GB/s",
            ceiling: gib,
        },
        Row {
            tier,
            op: "fma",
            bits: 32,
            shape: "-".into(),
            median_us: 0.0,
            throughput: fma,
            unit: "GFLOP/s",
            ceiling: fma,
        },
    ];
    let matvec_shapes: &[(usize, usize)] =
        if quick { &[(4096, 4096)] } else { &[(4096, 4096), (4096, 14336), (14336, 4096), (16384, 16384)] };
    let matmul_ms: &[usize] = if quick { &[16] } else { &[16, 128, 512] };
    let mut cases: Vec<(Op, usize, usize, usize)> = matvec_shapes.iter().map(|&(n, k)| (Op::Matvec, 1, n, k)).collect();
    cases.extend(matmul_ms.iter().map(|&m| (Op::Matmul, m, 4096, 4096)));
    println!(
        "{:<9} {:>4} {:>18} {:>11} {:>12} {:>10} {:>7}",
        "op", "bits", "shape", "median us", "throughput", "ceiling", "ratio"
    );
    // The int8-activation tier (opt-in for users, measured here beside the f32 one).
    let dot4 = if tier.subgroups() { codegen::Tier::Dot4Subgroups } else { codegen::Tier::Dot4 };
    let mut variants: Vec<(Op, usize, usize, usize, u32, codegen::Tier)> = Vec::new();
    // matmul also at the f16 tier where the device has shader-f16 (an opt-in for users: it
    // computes in f16, tolerance 1e-2).
    let f16 = gpu.supports(codegen::Tier::F16).then_some(codegen::Tier::F16);
    for &(op, m, n, k) in &cases {
        for bits in [2, 3, 4, 8, 16] {
            variants.push((op, m, n, k, bits, tier));
            if op == Op::Matvec && bits != 16 {
                variants.push((op, m, n, k, bits, dot4));
            }
            if let (Op::Matmul, Some(f16)) = (op, f16) {
                variants.push((op, m, n, k, bits, f16));
            }
        }
    }
    // BENCH_ONLY="op:tier,...": only those (e.g. "matvec:subgroups,matmul:f16"); BENCH_BITS
    // ="2,4": only those bit widths. For tuning sweeps, with MV_CONFIGS ("wg:rows,...": the
    // workgroup sizes and rows per workgroup to time each matvec at).
    let configs: Vec<(u32, u32)> = std::env::var("MV_CONFIGS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|c| {
                    let (a, b) = c.split_once(':').expect("MV_CONFIGS is wg:rows,...");
                    (a.parse().expect("wg"), b.parse().expect("rows"))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        let only: Vec<&str> = only.split(',').collect();
        variants.retain(|v| only.contains(&format!("{}:{}", v.0.name(), v.5.name()).as_str()));
    }
    if let Ok(bits) = std::env::var("BENCH_BITS") {
        let bits: Vec<u32> = bits.split(',').map(|b| b.parse().expect("BENCH_BITS is a list of bit widths")).collect();
        variants.retain(|v| bits.contains(&v.4));
    }
    let tunings: Vec<Option<(u32, u32)>> =
        if configs.is_empty() { vec![None] } else { configs.iter().map(|&c| Some(c)).collect() };
    for &(op, m, n, k, bits, tier) in &variants {
        // MV_CONFIGS tunes matvec only: other ops run once, at their default.
        let tunings = if op == Op::Matvec { &tunings[..] } else { &[None][..] };
        for &tuning in tunings {
            let format = Format::from_bits(bits, 32, Scheme::Sym).unwrap();
            // The device's own limits (the native profile assumes the spec defaults).
            let mut spec = gpu.native_limits(KernelSpec::new(op, format, Target::Native, tier).unwrap());
            if let (Some((wg, rows)), Op::Matvec) = (tuning, op) {
                spec.tuning.workgroup_size = wg;
                spec.tuning.rows_per_workgroup = rows;
                // A sweep times one shape at every height and width.
                spec.tuning.tall = None;
                spec.tuning.wide = None;
            }
            let shape = format!("{m}x{n}x{k}");
            if let Err(e) = spec.check_shape(m as u64, n as u64, k as u64) {
                println!("{:<7} {:>4} {:>18}  skipped: {e}", op.name(), bits, shape);
                continue;
            }
            // Random data; the kernels' work does not depend on the values.
            let mut seed = 0x9e37_79b9u32 ^ (bits * 7919) ^ (n as u32);
            let data = random_values(&mut seed, n * k);
            let w = Weights::quantize(format, n, k, &data).unwrap();
            drop(data);
            let bytes = (w.bytes() + 4 * m * k + 4 * m * n) as u64;
            let copies = (256u64 << 20).div_ceil(w.bytes() as u64).clamp(1, 32) as usize;
            let pipeline = gpu.kernel_pipeline(&spec, n as u32, k as u32).unwrap();
            let uploads: Vec<_> = (0..copies).map(|_| gpu.upload(&w)).collect();
            let params = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&[m as u32, n as u32, k as u32, 0]),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            // Random activations, so that the result can be checked against the reference.
            let xs = random_values(&mut seed, m * k);
            let x = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("x"),
                contents: bytemuck::cast_slice(&xs),
                usage: wgpu::BufferUsages::STORAGE,
            });
            let y = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("y"),
                size: 4 * (m * n) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let groups: Vec<_> = uploads
                .iter()
                .map(|u| {
                    bind_group(&gpu, &spec, &pipeline, |name| match name {
                        "params" => &params,
                        "x" => &x,
                        "y" => &y,
                        other => gpu.weight_buffer(u, other).expect("weight buffer"),
                    })
                })
                .collect();
            let wg = spec.workgroups(m as u32, n as u32);
            let (us, ceiling) = if op == Op::Matvec {
                time_against_read(&gpu, &timer, &[(&pipeline, wg)], &groups, bytes, runs, quick)
            } else {
                timer.warm(&pipeline, &groups, wg, Duration::from_millis(if quick { 50 } else { 300 }));
                (median(timer.time(&pipeline, &groups, wg, runs)), fma)
            };
            // The last run's output against the reference (every copy holds the same weights):
            // a fast kernel that skips work must not pass. matmul beyond M = 16 is left to the
            // test suite (its f64 reference takes minutes here).
            let verified = if op == Op::Matvec || m <= 16 {
                let got = read_back(&gpu, &y, m * n);
                let want = codegen::reference::matmul(&w, &spec.kernel_activations(&xs), m);
                if let Err(e) = want.compare(&got, spec.tolerance()) {
                    panic!("{} {m}x{n}x{k} is wrong on this device: {e}", spec.name());
                }
                "checked"
            } else {
                "-"
            };
            if let Some((wg, rows)) = tuning {
                print!("wg {wg:>3} rows {rows:>2}  ");
            }
            let row = if op == Op::Matvec {
                Row::memory(tier, op.name(), bits, shape, us, bytes, ceiling)
            } else {
                let flops = 2.0 * (m * n * k) as f64;
                Row {
                    tier,
                    op: op.name(),
                    bits,
                    shape,
                    median_us: us,
                    throughput: flops / us / 1e3,
                    unit: "GFLOP/s",
                    ceiling,
                }
            };
            // matvec: the workgroup shape that ran (invocations x rows; tall or wide by N and K).
            let entry = if op == Op::Matvec {
                let (_, wg, rows) = spec.matvec_entry(n as u32, k as u32);
                format!(" {wg}x{rows}")
            } else {
                String::new()
            };
            println!("{}  {}{entry} {verified}", row.line(), row.tier);
            rows.push(row);
        }
    }
    // KV_SKIP=1: matvec and matmul only (tuning sweeps).
    if std::env::var("KV_SKIP").is_err() {
        rows.extend(kv_attend_rows(&gpu, &timer, quick, runs));
    }
    let (name, driver) = device.split_once(" (").unwrap_or((&device, ""));
    let json_rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"device\": {:?}, \"driver\": {:?}, \"tier\": \"{}\", \"op\": \"{}\", \"bits\": {}, \"shape\": \"{}\", \"median_us\": {:.2}, \"throughput\": {:.2}, \"unit\": \"{}\", \"ceiling\": {:.2}, \"ratio\": {:.4}}}",
                name,
                driver.trim_end_matches(')'),
                r.tier,
                r.op,
                r.bits,
                r.shape,
                r.median_us,
                r.throughput,
                r.unit,
                r.ceiling,
                r.throughput / r.ceiling
            )
        })
        .collect();
    let json = format!("{{\n  \"tier\": \"{tier}\",\n  \"rows\": [\n{}\n  ]\n}}\n", json_rows.join(",\n"));
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("writing {out}: {e}"));
    println!("wrote {out}");
}

/// A bind group of `spec`'s bindings (the manifest's names) for `pipeline`, each buffer chosen
/// by name.
fn bind_group<'a>(
    gpu: &Gpu,
    spec: &KernelSpec,
    pipeline: &wgpu::ComputePipeline,
    buffer: impl Fn(&str) -> &'a wgpu::Buffer,
) -> wgpu::BindGroup {
    let entries: Vec<_> = wgsl::bindings(spec)
        .iter()
        .map(|b| wgpu::BindGroupEntry { binding: b.binding, resource: buffer(b.name).as_entire_binding() })
        .collect();
    gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// kv-attend over a cache of 8 KV heads (32 query heads, head_dim 128) at 1k, 8k and 32k
/// tokens, every bit width at group 32, and the f16 baseline: the same kernel over a cache whose
/// window holds every token (so every K and V element is read as f16). Memory-bound: judged
/// against a streaming read of the bytes it moves (cache + q + partials + out).
fn kv_attend_rows(gpu: &Gpu, timer: &Timer, quick: bool, runs: u32) -> Vec<Row> {
    use codegen::kv::{KvCache, KvLayout, default_split_len};
    let (h, heads, d) = (8usize, 32usize, 128usize);
    // KV_LENS="1024,32768": only those cache lengths; KV_CONFIGS="wg:chunk,...": the
    // workgroup sizes and tokens per step to time each length and bit width at (tuning sweeps).
    let lens: Vec<usize> = match std::env::var("KV_LENS") {
        Ok(v) => v.split(',').map(|l| l.parse().expect("KV_LENS is a list of token counts")).collect(),
        Err(_) if quick => vec![1024],
        Err(_) => vec![1024, 8192, 32768],
    };
    // An entry may name a split length too ("wg:chunk:split_len"; else the runtimes' rule).
    let configs: Vec<Option<(u32, u32, Option<u32>)>> = match std::env::var("KV_CONFIGS") {
        Ok(v) => v
            .split(',')
            .map(|c| {
                let n: Vec<u32> =
                    c.split(':').map(|x| x.parse().expect("KV_CONFIGS is wg:chunk[:split_len],...")).collect();
                assert!(n.len() == 2 || n.len() == 3, "KV_CONFIGS is wg:chunk[:split_len],...");
                Some((n[0], n[1], n.get(2).copied()))
            })
            .collect(),
        Err(_) => vec![None],
    };
    let mut rows = Vec::new();
    for &len in &lens {
        // BENCH_BITS="2,16" limits the bit widths here too.
        let widths =
            std::env::var("BENCH_BITS").map(|v| v.split(',').map(|b| b.parse().expect("BENCH_BITS")).collect());
        for bits in widths.unwrap_or_else(|_| vec![2u32, 3, 4, 8, 16]) {
            for &config in &configs {
                let format = Format::quant(if bits == 16 { 4 } else { bits }, 32, Scheme::Asym).unwrap();
                let window = if bits == 16 { len as u32 } else { 0 };
                let mut spec = gpu.native_limits(
                    KernelSpec::kv(Op::KvAttend, format, d as u32, Target::Native, codegen::Tier::Base).unwrap(),
                );
                if let Some((wg, chunk, _)) = config {
                    spec.tuning.workgroup_size = wg;
                    spec.tuning.chunk = chunk;
                    print!("wg {wg:>3} chunk {chunk:>3}  ");
                }
                let layout = KvLayout::new(format, d as u32, h as u32, len as u32, window).unwrap();
                let shape = format!("L{len}xH{h}xQ{heads}xD{d}");
                let split_len = config
                    .and_then(|c| c.2)
                    .unwrap_or_else(|| default_split_len(len as u32, h as u32, spec.tuning.chunk));
                if let Err(e) = spec.check_kv(&layout, len as u64, 0, heads as u64, split_len as u64) {
                    println!("{:<9} {:>4} {:>18}  skipped: {e}", "kv-attend", bits, shape);
                    continue;
                }
                let mut cache = KvCache::new(layout);
                let mut seed = 0x2545_f491u32 ^ (bits * 7919) ^ len as u32;
                let (k, v) = (random_values(&mut seed, len * h * d), random_values(&mut seed, len * h * d));
                cache.append(&k, &v).unwrap();
                let n_splits = (len as u32).div_ceil(split_len);
                let cache_bytes =
                    if bits == 16 { (2 * h * len * d * 2) as u64 } else { layout.memory().per_token * len as u64 };
                let partial_bytes = (heads * n_splits as usize * (d + 2) * 4) as u64;
                // Useful bytes: the cache once, q and the output. The partials (written by the
                // split pass, read by the combine pass) cost time but are not counted.
                let bytes = cache_bytes + (heads * d * 4) as u64 * 2;
                let copies = (256u64 << 20).div_ceil(cache_bytes).clamp(1, 16) as usize;
                let caches: Vec<_> = (0..copies).map(|_| gpu.upload_kv(&cache)).collect();
                let params = layout.params(len as u32, 0, heads as u32, split_len, n_splits);
                let params = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(&params),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
                let q = storage(gpu, "q", (heads * d * 4) as u64);
                let out = storage(gpu, "out", (heads * d * 4) as u64);
                let partials = storage(gpu, "partials", partial_bytes);
                let passes = spec.dispatch().passes;
                let pipelines: Vec<_> =
                    passes.iter().map(|p| gpu.pass_pipeline(&spec, &p.entry_point).unwrap()).collect();
                let groups: Vec<_> = caches
                    .iter()
                    .map(|c| {
                        bind_group(gpu, &spec, &pipelines[0], |name| match name {
                            "params" => &params,
                            "q" => &q,
                            "out" => &out,
                            "partials" => &partials,
                            other => gpu.kv_buffer(c, other).expect("cache buffer"),
                        })
                    })
                    .collect();
                let stages = [(&pipelines[0], [h as u32, n_splits, 1]), (&pipelines[1], [heads as u32, 1, 1])];
                // KV_SPLIT_PASS_ONLY=1 times the split pass alone (to see what the combine pass
                // and the barrier between the passes cost).
                let passes = if std::env::var("KV_SPLIT_PASS_ONLY").is_ok() { 1 } else { 2 };
                let (us, ceiling) = time_against_read(gpu, timer, &stages[..passes], &groups, bytes, runs, quick);
                // The same kernel through the runtime on random queries, against the reference: a
                // fast kernel that skips work must not pass.
                // The reference takes seconds per query head at 32k tokens: there, one quantized
                // width and the f16 cache, at the first configuration.
                let check = len <= 8192 || (config == configs[0] && (bits == 4 || bits == 16));
                if check && split_len == default_split_len(len as u32, h as u32, spec.tuning.chunk) {
                    let qs = random_values(&mut seed, heads * d);
                    let got = gpu.kv_attend(&spec, &caches[0], &qs, heads).unwrap();
                    let want = codegen::reference::kv_attention(&cache, &qs, heads);
                    if let Err(e) = want.compare(&got, spec.tolerance()) {
                        panic!("{} {shape} is wrong on this device: {e}", spec.name());
                    }
                }
                let row = Row::memory(spec.profile.tier, "kv-attend", bits, shape, us, bytes, ceiling);
                println!("{}  ({n_splits} splits of {split_len})", row.line());
                rows.push(row);
            }
        }
    }
    rows
}
