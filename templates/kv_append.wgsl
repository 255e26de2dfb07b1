{% include "_kv_header.wgsl" %}
const MAXQ: f32 = {{ c.maxq }}.0;
// 1 / MAXQ rounded to f32: a product is correctly rounded in WGSL, a division is not.
const INV_MAXQ: f32 = {{ c.inv_maxq_bits }};
// Tokens one invocation quantizes together: with one group per row, two rows share a word of
// scales and mins, so one invocation owns both (max_seq is even: heads never share a word).
const TPI: u32 = {{ c.tokens_per_item }}u;

// f32 -> f16 bits, round to nearest even, in integer arithmetic so that every engine rounds
// alike. |x| <= 65504 (the host checks).
fn f16_round(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if (a >= 0x38800000u) {
        let r = a - 0x38000000u;
        return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
    }
    let e = a >> 23u;
    if (e < 102u) {
        return sign;
    }
    let m = (a & 0x7fffffu) | 0x800000u;
    let shift = 126u - e;
    let q = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    let up = select(0u, 1u, rem > half || (rem == half && (q & 1u) == 1u));
    return sign | (q + up);
}

// f16 bits -> f32, exactly (subnormals included).
fn f16_value(h: u32) -> f32 {
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    var v = f32(m) * 5.9604645e-8;
    if (e != 0u) {
        v = bitcast<f32>(((e + 112u) << 23u) | (m << 13u));
    }
    return select(v, -v, (h & 0x8000u) != 0u);
}

// The smallest f16 not below x >= 0.
fn f16_up(x: f32) -> u32 {
    let h = f16_round(x);
    return select(h, h + 1u, f16_value(h) < x);
}

// Element d of token t's K (kv = 0) or V (kv = 1) row, as f16 bits: from the window if the
// token was there before this call (t < p), else the new value rounded to f16.
fn source(kv: u32, h: u32, t: u32, d: u32) -> u32 {
    let p = params.len;
    if (t < p) {
        let i = ((kv * params.kv_heads + h) * params.window + t % params.window) * D + d;
        return half_of(window[i >> 1u], i);
    }
    return f16_round(kv_new[((kv * params.n_new + (t - p)) * params.kv_heads + h) * D + d]);
}

fn set_half(i: u32, bits: u32, is_min: bool) {
    let shift = 16u * (i & 1u);
    let keep = ~(0xffffu << shift);
    if (is_min) {
        mins[i >> 1u] = (mins[i >> 1u] & keep) | (bits << shift);
    } else {
        scales[i >> 1u] = (scales[i >> 1u] & keep) | (bits << shift);
    }
}

// Quantizes token t of head h into its store row (docs/FORMAT.md sections 5 and 11).
fn quantize_token(kv: u32, h: u32, t: u32) {
    let row = (kv * params.kv_heads + h) * params.max_seq + t;
    for (var g = 0u; g < GPR; g++) {
        var lo = f16_value(source(kv, h, t, g * G));
        var hi = lo;
        for (var j = 1u; j < G; j++) {
            let v = f16_value(source(kv, h, t, g * G + j));
            // min and max in the order where -0 < +0 (WGSL's min/max leave it open).
            lo = select(lo, v, v < lo || (v == lo && bitcast<u32>(v) > bitcast<u32>(lo)));
            hi = select(hi, v, v > hi || (v == hi && bitcast<u32>(v) < bitcast<u32>(hi)));
        }
        let scale_bits = f16_up((hi - lo) * INV_MAXQ);
        let s = f16_value(scale_bits);
        set_half(row * GPR + g, scale_bits, false);
        set_half(row * GPR + g, f16_round(lo), true);
        for (var blk = 0u; blk < G / 32u; blk++) {
            var words = array<u32, {{ c.bits }}>();
            for (var e = 0u; e < 32u; e++) {
                let v = f16_value(source(kv, h, t, g * G + blk * 32u + e));
                var q = 0u;
                if (s != 0.0) {
                    q = u32(clamp(floor((v - lo) / s + 0.5), 0.0, MAXQ));
                }
{% for pl in c.planes %}                words[{{ pl.word0 }}u + (e % {{ pl.bytes }}u) / 4u] |= ((q >> {{ pl.low }}u) & {{ pl.mask }}u) << (8u * (e % 4u) + {{ pl.p }}u * (e / {{ pl.bytes }}u));
{% endfor %}            }
            let wb = ((row * D + g * G) / 32u + blk) * BITS;
            for (var i = 0u; i < BITS; i++) {
                codes[wb + i] = words[i];
            }
        }
    }
}

// Appends params.n_new tokens at position params.len to one head's K (wid.y = 0) or V cache.
@compute @workgroup_size({{ c.wg }})
fn {{ c.name }}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let h = wid.x;
    let kv = wid.y;
    let p = params.len;
    let end = p + params.n_new;
    let q_old = p - min(p, params.window);
    let q_new = end - min(end, params.window);
    // 1. Tokens leaving the window (or skipping it) are quantized into the store.
    for (var item = q_old / TPI + lid; item * TPI < q_new; item += WG) {
        for (var t = max(item * TPI, q_old); t < min(item * TPI + TPI, q_new); t++) {
            quantize_token(kv, h, t);
        }
    }
    // Every window slot is read above before any is rewritten below.
    storageBarrier();
    // 2. The newest tokens go to their window slots as f16.
    let w0 = max(q_new, p);
    let pairs = (end - w0) * (D / 2u);
    for (var i = lid; i < pairs; i += WG) {
        let t = w0 + i / (D / 2u);
        let d = 2u * (i % (D / 2u));
        let src = ((kv * params.n_new + (t - p)) * params.kv_heads + h) * D + d;
        let slot = ((kv * params.kv_heads + h) * params.window + t % params.window) * D + d;
        window[slot >> 1u] = f16_round(kv_new[src]) | (f16_round(kv_new[src + 1u]) << 16u);
    }
}
