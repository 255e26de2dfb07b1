{% include "_kv_header.wgsl" %}
// Tokens scored per step, query heads per KV head at most, output dims per invocation.
const C: u32 = {{ c.chunk }}u;
const GMAX: u32 = {{ c.gmax }}u;
const DPI: u32 = {{ c.dpi }}u;
const BLOCKS: u32 = D / 32u;
// Softmax of x·k / sqrt(D): queries are scaled once when staged.
const SCALE: f32 = {{ c.scale_bits }};
// Below every score: an empty running max; exp(NEG - m) is 0.
const NEG: f32 = -3.0e38;

// Queries of this KV head's query heads (pre-scaled), then per step the scores, then the
// probabilities of the step's tokens.
var<workgroup> qs: array<vec4<f32>, {{ c.qs_len }}>;
var<workgroup> sc: array<f32, {{ c.sc_len }}>;

// The four bytes of a word as four lanes.
fn bytes4(v: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}

fn scale_at(i: u32) -> f32 {
    let pair = unpack2x16float(scales[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

fn min_at(i: u32) -> f32 {
    let pair = unpack2x16float(mins[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Element d of token t's value vector (head h).
fn value_at(h: u32, t: u32, d: u32, quantized: bool) -> f32 {
    if (quantized) {
        let row = (params.kv_heads + h) * params.max_seq + t;
        let wb = (row * BLOCKS + d / 32u) * BITS;
        let e = d % 32u;
        let q = {{ c.element_code }};
        let g = row * GPR + d / G;
        return scale_at(g) * f32(q) + min_at(g);
    }
    let i = ((params.kv_heads + h) * params.window + t % params.window) * D + d;
    let pair = unpack2x16float(window[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Split pass (flash-decoding): workgroup (h, split) attends the query heads of KV head h over
// tokens [split * split_len, min(len, (split + 1) * split_len)) and leaves, per query head,
// its running max, sum of exponentials and unnormalized output in `partials`.
@compute @workgroup_size({{ c.wg }})
fn {{ c.name }}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let h = wid.x;
    let split = wid.y;
    let gq = params.n_heads / params.kv_heads;
    let t0 = split * params.split_len;
    let t1 = min(params.len, t0 + params.split_len);
    let quantized_len = params.len - min(params.len, params.window);
    for (var i = lid; i < gq * (D / 4u); i += WG) {
        let b = (h * gq) * D + 4u * i;
        qs[i] = vec4<f32>(q[b], q[b + 1u], q[b + 2u], q[b + 3u]) * SCALE;
    }
    var m: array<f32, {{ c.gmax }}>;
    var l: array<f32, {{ c.gmax }}>;
    var corr: array<f32, {{ c.gmax }}>;
    var o: array<f32, {{ c.acc_len }}>;
    for (var g = 0u; g < GMAX; g++) {
        m[g] = NEG;
        l[g] = 0.0;
    }
    for (var i = 0u; i < {{ c.acc_len }}u; i++) {
        o[i] = 0.0;
    }
    workgroupBarrier();
    for (var c0 = t0; c0 < t1; c0 += C) {
        // 1. Invocation lid scores token c0 + lid against every query head.
        let t = c0 + lid;
        var s: array<f32, {{ c.gmax }}>;
        for (var g = 0u; g < GMAX; g++) {
            s[g] = NEG;
        }
        if (t < t1) {
            for (var g = 0u; g < gq; g++) {
                s[g] = 0.0;
            }
            let row = h * params.max_seq + t;
            for (var blk = 0u; blk < BLOCKS; blk++) {
                var kb: array<vec4<f32>, 8>;
                if (t < quantized_len) {
                    let wb = (row * BLOCKS + blk) * BITS;
{% for i in 0..c.bits %}                    let w{{ i }} = codes[wb + {{ i }}u];
{% endfor %}                    let gi = row * GPR + blk * 32u / G;
                    let sv = vec4<f32>(scale_at(gi));
                    let mv = vec4<f32>(min_at(gi));
{% for q in c.quads %}                    kb[{{ loop.index0 }}] = vec4<f32>(bytes4({{ q }})) * sv + mv;
{% endfor %}                } else {
                    let wi = ((h * params.window + t % params.window) * D + blk * 32u) / 2u;
                    for (var j = 0u; j < 8u; j++) {
                        kb[j] = vec4<f32>(unpack2x16float(window[wi + 2u * j]), unpack2x16float(window[wi + 2u * j + 1u]));
                    }
                }
                for (var g = 0u; g < gq; g++) {
                    let qb = g * (D / 4u) + blk * 8u;
                    s[g] += ((dot(kb[0], qs[qb]) + dot(kb[1], qs[qb + 1u])) + (dot(kb[2], qs[qb + 2u]) + dot(kb[3], qs[qb + 3u])))
                        + ((dot(kb[4], qs[qb + 4u]) + dot(kb[5], qs[qb + 5u])) + (dot(kb[6], qs[qb + 6u]) + dot(kb[7], qs[qb + 7u])));
                }
            }
        }
        for (var g = 0u; g < gq; g++) {
            sc[g * C + lid] = s[g];
        }
        workgroupBarrier();
        // 2. Every invocation finds the step's max per query head and the rescaling factors.
        for (var g = 0u; g < gq; g++) {
            var mx = m[g];
            for (var i = 0u; i < C; i++) {
                mx = max(mx, sc[g * C + i]);
            }
            corr[g] = exp(m[g] - mx);
            m[g] = mx;
        }
        workgroupBarrier();
        for (var g = 0u; g < gq; g++) {
            sc[g * C + lid] = exp(s[g] - m[g]);
        }
        workgroupBarrier();
        // 3. Invocation lid accumulates output dims lid, lid + WG, ... over the step's tokens.
        let n = min(C, t1 - c0);
        for (var g = 0u; g < gq; g++) {
            l[g] *= corr[g];
            for (var j = 0u; j < DPI; j++) {
                o[g * DPI + j] *= corr[g];
            }
        }
        for (var i = 0u; i < n; i++) {
            let tt = c0 + i;
            let quantized = tt < quantized_len;
            for (var j = 0u; j < DPI; j++) {
                let v = value_at(h, tt, lid + j * WG, quantized);
                for (var g = 0u; g < gq; g++) {
                    o[g * DPI + j] += sc[g * C + i] * v;
                }
            }
            for (var g = 0u; g < gq; g++) {
                l[g] += sc[g * C + i];
            }
        }
        workgroupBarrier();
    }
    for (var g = 0u; g < gq; g++) {
        let base = ((h * gq + g) * params.n_splits + split) * (D + 2u);
        if (lid == 0u) {
            partials[base] = m[g];
            partials[base + 1u] = l[g];
        }
        for (var j = 0u; j < DPI; j++) {
            partials[base + 2u + lid + j * WG] = o[g * DPI + j];
        }
    }
}

// Combine pass: workgroup qh merges its query head's splits into the normalized output.
@compute @workgroup_size({{ c.wg }})
fn {{ c.name }}_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let qh = wid.x;
    let base = qh * params.n_splits * (D + 2u);
    var mx = NEG;
    for (var s = 0u; s < params.n_splits; s++) {
        mx = max(mx, partials[base + s * (D + 2u)]);
    }
    var total = 0.0;
    for (var s = 0u; s < params.n_splits; s++) {
        total += exp(partials[base + s * (D + 2u)] - mx) * partials[base + s * (D + 2u) + 1u];
    }
    for (var d = lid; d < D; d += WG) {
        var acc = 0.0;
        for (var s = 0u; s < params.n_splits; s++) {
            let b = base + s * (D + 2u);
            acc += exp(partials[b] - mx) * partials[b + 2u + d];
        }
        out[qh * D + d] = acc / total;
    }
}
