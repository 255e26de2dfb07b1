//! The KV kernels on wgpu (lavapipe in CI): kv-append writes the bytes the codec writes
//! (`docs/FORMAT.md` §11.3, codes allowed to differ only at division near-ties), and
//! kv-attend matches the f64 reference over the same cache, for every distinct KV kernel
//! text, GQA ratios 1/4/8, ragged lengths, several splits, with and without a window.

use crate::exec::{Rng, distinct_kernels, gpu};
use codegen::kv::{KvCache, KvLayout};
use codegen::{KernelSpec, Op, reference};
use half::f16;

/// Random K/V tokens `[n][H][D]`: per-token magnitudes differ so scales vary, and one
/// channel in eight is an outlier (10x), as real keys have. One head vector in four starts
/// with 32 signed zeros of mixed signs, then 16 more among positive values, so the sign rule
/// for a zero min (`docs/FORMAT.md` §5) and the zero-scale path are exercised.
pub fn tokens(rng: &mut Rng, n: usize, h: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * h * d);
    for _ in 0..n * h {
        let scale = 0.25 + 2.0 * rng.unit();
        let zeros = rng.next().is_multiple_of(4);
        out.extend((0..d).map(|j| {
            let v = rng.value(if j % 8 == 3 { 10.0 * scale } else { scale });
            let sign = if rng.next() & 1 == 0 { 0.0 } else { -0.0 };
            match (zeros, j) {
                (true, 0..32) => sign,
                (true, 32..48) => {
                    if j % 2 == 0 {
                        sign
                    } else {
                        v.abs()
                    }
                }
                _ => v,
            }
        }));
    }
    out
}

/// Compares a device cache with the codec's: exact except codes that sit on a division
/// near-tie, which may be the neighbouring code (§11.3). `src` holds every token's K and V
/// inputs (`[t][H][D]`) from token 0; only rows of tokens `>= from` are examined for ties.
/// Returns the number of such codes.
pub fn compare_caches(
    name: &str,
    got: &KvCache,
    want: &KvCache,
    src: &[Vec<f32>],
    from: usize,
) -> Result<usize, String> {
    if got.window != want.window {
        let i = got.window.iter().zip(&want.window).position(|(a, b)| a != b).unwrap();
        return Err(format!("{name}: window word {i}: {:#x} != {:#x}", got.window[i], want.window[i]));
    }
    if got.store.scales != want.store.scales || got.store.mins != want.store.mins {
        return Err(format!("{name}: scales or mins differ"));
    }
    let (gc, wc) = (got.store.codes(), want.store.codes());
    let l = want.layout;
    let d = l.head_dim as usize;
    let g = l.format.group_size() as usize;
    let mut near = 0;
    for (i, (&a, &b)) in gc.iter().zip(&wc).enumerate() {
        if a == b {
            continue;
        }
        let (row, col) = (i / d, i % d);
        if row % (l.max_seq as usize) < from {
            return Err(format!("{name}: code {i} of a token that was already stored changed ({b} -> {a})"));
        }
        // The f16 input the code came from: rows are (kv, h, t) of the appended stream.
        let (kv, h, t) = (
            row / (l.kv_heads as usize * l.max_seq as usize),
            row / l.max_seq as usize % l.kv_heads as usize,
            row % l.max_seq as usize,
        );
        let x = f16::from_f32(src[kv][(t * l.kv_heads as usize + h) * d + col]).to_f32() as f64;
        let (s, m) = (want.store.scale(row, col / g) as f64, want.store.min(row, col / g) as f64);
        let quotient = (x - m) / s + 0.5;
        let frac = quotient.fract();
        let tie = frac.min(1.0 - frac);
        // docs/FORMAT.md §11.3: within 4 ULP of the quotient's magnitude.
        if a.abs_diff(b) == 1 && tie <= 4.0 * f32::EPSILON as f64 * quotient.abs().max(1.0) {
            near += 1;
        } else {
            return Err(format!(
                "{name}: code {i} (row {row}, col {col}) is {a}, the codec's {b}; input {x}, not a near-tie ({tie:e})"
            ));
        }
    }
    Ok(near)
}

/// kv-append on the device, several calls (one token, a burst longer than the window,
/// ragged sizes up to max_seq), for every distinct kv-append kernel and windows 0 and 5.
#[test]
fn kv_append_writes_the_codecs_bytes_on_wgpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0x4b56_a99e_0000_0001);
    let (mut ran, mut near, mut failures) = (0, 0, Vec::new());
    for ((name, _), specs) in distinct_kernels(true) {
        let spec: KernelSpec = specs[0];
        // Other tiers' KV kernels are this text under another name (codegen's tests check it).
        if spec.op != Op::KvAppend || spec.profile.tier != codegen::Tier::Base {
            continue;
        }
        for window in [0u32, 5] {
            let (h, max_seq) = (2usize, 40u32);
            let layout = KvLayout::new(spec.format, spec.head_dim, h as u32, max_seq, window).unwrap();
            let d = spec.head_dim as usize;
            let mut host = KvCache::new(layout);
            let mut dev = gpu.upload_kv(&host);
            let mut all = [Vec::new(), Vec::new()];
            for n in [1usize, 7, 1, 12, 3, 16] {
                let (k, v) = (tokens(&mut rng, n, h, d), tokens(&mut rng, n, h, d));
                all[0].extend_from_slice(&k);
                all[1].extend_from_slice(&v);
                host.append(&k, &v).unwrap();
                if let Err(e) = gpu.kv_append(&spec, &mut dev, &k, &v) {
                    failures.push(format!("{name} R={window}: {e}"));
                    break;
                }
            }
            let got = gpu.download_kv(&dev).unwrap();
            match compare_caches(&format!("{name} R={window}"), &got, &host, &all, 0) {
                Ok(n) => near += n,
                Err(e) => failures.push(e),
            }
            // A full cache refuses more tokens, naming the capacity.
            let one = tokens(&mut rng, 1, h, d);
            let e = gpu.kv_append(&spec, &mut dev, &one, &one).unwrap_err().to_string();
            assert!(e.contains("max_seq = 40"), "{e}");
        }
        ran += 1;
    }
    eprintln!("kv-append: {ran} kernels; {near} codes took the neighbouring code at a division near-tie");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(ran > 0, "no kv-append kernel ran");
}

/// kv-attend on the device over caches built by the codec, against the f64 reference.
#[test]
fn kv_attend_matches_the_reference_on_wgpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0x4b56_a77e_0000_0002);
    let (mut ran, mut worst, mut failures) = (0, 0.0f64, Vec::new());
    for ((name, _), specs) in distinct_kernels(true) {
        let spec: KernelSpec = specs[0];
        if spec.op != Op::KvAttend || spec.profile.tier != codegen::Tier::Base {
            continue;
        }
        let d = spec.head_dim as usize;
        // (kv_heads, gqa, len, window): ragged lengths, several splits, GQA 1/4/8.
        for (h, gqa, len, window) in [(1usize, 1usize, 1usize, 0u32), (2, 4, 70, 0), (2, 8, 200, 37), (3, 1, 130, 16)] {
            let layout = KvLayout::new(spec.format, spec.head_dim, h as u32, 256, window).unwrap();
            let mut cache = KvCache::new(layout);
            cache.append(&tokens(&mut rng, len, h, d), &tokens(&mut rng, len, h, d)).unwrap();
            let n_heads = h * gqa;
            let q: Vec<f32> = (0..n_heads * d).map(|_| rng.value(1.0)).collect();
            let want = reference::kv_attention(&cache, &q, n_heads);
            let dev = gpu.upload_kv(&cache);
            // The runtimes' split length gives one step per split at these lengths; splits of
            // three steps (the last one ragged) also cover the running max across steps.
            let chunk = spec.tuning.chunk;
            let multi = gpu.kv_attend_split(&spec, &dev, &q, n_heads, 3 * chunk).map(|got| ("3-step splits", got));
            for result in [gpu.kv_attend(&spec, &dev, &q, n_heads).map(|got| ("default splits", got)), multi] {
                match result {
                    Ok((how, got)) => {
                        worst = worst.max(want.worst_relative_error(&got));
                        if let Err(e) = want.compare(&got, spec.tolerance()) {
                            failures.push(format!("{name} H={h} gqa={gqa} L={len} R={window}, {how}: {e}"));
                        }
                    }
                    Err(e) => failures.push(format!("{name}: {e}")),
                }
            }
        }
        ran += 1;
    }
    eprintln!("kv-attend: {ran} kernels, worst error / magnitude {worst:.2e}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(ran > 0, "no kv-attend kernel ran");
}
