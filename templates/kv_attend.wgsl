{% include "_kv_header.wgsl" %}
// Tokens scored per step, query heads per KV head at most, quads (4 dims) per head vector,
// and token lanes: in the value step invocation lid owns quad lid % QUADS of tokens
// lid / QUADS, lid / QUADS + LANES, ...
const C: u32 = {{ c.chunk }}u;
const GMAX: u32 = {{ c.gmax }}u;
const QUADS: u32 = D / 4u;
const LANES: u32 = WG / QUADS;
const BLOCKS: u32 = D / 32u;
// Softmax of x·k / sqrt(D): queries are scaled once when staged.
const SCALE: f32 = {{ c.scale_bits }};
// Below every score: an empty running max; exp(NEG - m) is 0.
const NEG: f32 = -3.0e38;

// Queries of this KV head's query heads (pre-scaled); per step the scores, then the
// probabilities, of the step's tokens; the step's max and rescaling factor per query head;
// at the end, every token lane's partial outputs.
var<workgroup> qs: array<vec4<f32>, {{ c.qs_len }}>;
var<workgroup> sc: array<f32, {{ c.sc_len }}>;
var<workgroup> step_max: array<f32, {{ c.gmax }}>;
var<workgroup> step_corr: array<f32, {{ c.gmax }}>;
var<workgroup> lanes_out: array<vec4<f32>, {{ c.red_len }}>;

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

// Quad qd (dims 4qd .. 4qd+3) of token t's value vector (head h).
fn value_quad(h: u32, t: u32, qd: u32, quantized: bool) -> vec4<f32> {
    if (quantized) {
        let row = (params.kv_heads + h) * params.max_seq + t;
        let wb = (row * BLOCKS + qd / 8u) * BITS;
        let qq = qd % 8u;
        let g = row * GPR + (4u * qd) / G;
        return vec4<f32>(bytes4({{ c.quad_rt }})) * scale_at(g) + vec4<f32>(min_at(g));
    }
    let i = (((params.kv_heads + h) * params.window + t % params.window) * D + 4u * qd) / 2u;
    return vec4<f32>(unpack2x16float(window[i]), unpack2x16float(window[i + 1u]));
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
    let qd = lid % QUADS;
    let lane = lid / QUADS;
    for (var i = lid; i < gq * QUADS; i += WG) {
        let b = (h * gq) * D + 4u * i;
        qs[i] = vec4<f32>(q[b], q[b + 1u], q[b + 2u], q[b + 3u]) * SCALE;
    }
    // Running max and (invocation g < gq only) sum of exponentials of query head g; this
    // invocation's output quad per query head.
    var m: array<f32, {{ c.gmax }}>;
    var corr: array<f32, {{ c.gmax }}>;
    var o: array<vec4<f32>, {{ c.gmax }}>;
    var l_own = 0.0;
    for (var g = 0u; g < GMAX; g++) {
        m[g] = NEG;
        corr[g] = 0.0;
        o[g] = vec4<f32>(0.0);
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
                    let qb = g * QUADS + blk * 8u;
                    s[g] += ((dot(kb[0], qs[qb]) + dot(kb[1], qs[qb + 1u])) + (dot(kb[2], qs[qb + 2u]) + dot(kb[3], qs[qb + 3u])))
                        + ((dot(kb[4], qs[qb + 4u]) + dot(kb[5], qs[qb + 5u])) + (dot(kb[6], qs[qb + 6u]) + dot(kb[7], qs[qb + 7u])));
                }
            }
        }
        for (var g = 0u; g < gq; g++) {
            sc[g * C + lid] = s[g];
        }
        workgroupBarrier();
        // 2. Invocation g < gq finds query head g's new max and rescaling factor.
        if (lid < gq) {
            var mx = m[lid];
            for (var i = 0u; i < C; i++) {
                mx = max(mx, sc[lid * C + i]);
            }
            step_max[lid] = mx;
            step_corr[lid] = exp(m[lid] - mx);
        }
        workgroupBarrier();
        for (var g = 0u; g < gq; g++) {
            m[g] = step_max[g];
            corr[g] = step_corr[g];
            sc[g * C + lid] = exp(s[g] - m[g]);
        }
        workgroupBarrier();
        // 3. Invocation g < gq adds query head g's probabilities to its sum; every invocation
        // accumulates its value quad over its lane's tokens.
        let n = min(C, t1 - c0);
        if (lid < gq) {
            var sum = 0.0;
            for (var i = 0u; i < n; i++) {
                sum += sc[lid * C + i];
            }
            l_own = l_own * corr[lid] + sum;
        }
        for (var g = 0u; g < gq; g++) {
            o[g] *= corr[g];
        }
        // Tokens {{ c.unroll }} at a time, their loads issued together (one at a time, every token
        // waited for its own load): the stored ones, then the window's, then the rest.
        let nq = min(n, max(quantized_len, c0) - c0);
        var i = lane;
        for (; i + {{ c.unroll - 1 }}u * LANES < nq; i += {{ c.unroll }}u * LANES) {
{% for u in 0..c.unroll %}            let v{{ u }} = value_quad(h, c0 + i + {{ u }}u * LANES, qd, true);
{% endfor %}            for (var g = 0u; g < gq; g++) {
                let b = g * C + i;
                o[g] += {% for u in 0..c.unroll %}{% if u > 0 %} + {% endif %}sc[b + {{ u }}u * LANES] * v{{ u }}{% endfor %};
            }
        }
        for (; i < nq; i += LANES) {
            let v = value_quad(h, c0 + i, qd, true);
            for (var g = 0u; g < gq; g++) {
                o[g] += sc[g * C + i] * v;
            }
        }
        for (; i + {{ c.unroll - 1 }}u * LANES < n; i += {{ c.unroll }}u * LANES) {
{% for u in 0..c.unroll %}            let v{{ u }} = value_quad(h, c0 + i + {{ u }}u * LANES, qd, false);
{% endfor %}            for (var g = 0u; g < gq; g++) {
                let b = g * C + i;
                o[g] += {% for u in 0..c.unroll %}{% if u > 0 %} + {% endif %}sc[b + {{ u }}u * LANES] * v{{ u }}{% endfor %};
            }
        }
        for (; i < n; i += LANES) {
            let v = value_quad(h, c0 + i, qd, false);
            for (var g = 0u; g < gq; g++) {
                o[g] += sc[g * C + i] * v;
            }
        }
        workgroupBarrier();
    }
    // The token lanes' partial outputs are summed by lane 0.
    for (var g = 0u; g < gq; g++) {
        lanes_out[(lane * GMAX + g) * QUADS + qd] = o[g];
    }
    workgroupBarrier();
    if (lane == 0u) {
        for (var g = 0u; g < gq; g++) {
            var acc = o[g];
            for (var r = 1u; r < LANES; r++) {
                acc += lanes_out[(r * GMAX + g) * QUADS + qd];
            }
            let base = ((h * gq + g) * params.n_splits + split) * (D + 2u) + 2u + 4u * qd;
            partials[base] = acc.x;
            partials[base + 1u] = acc.y;
            partials[base + 2u] = acc.z;
            partials[base + 3u] = acc.w;
        }
    }
    if (lid < gq) {
        let base = ((h * gq + lid) * params.n_splits + split) * (D + 2u);
        partials[base] = m[lid];
        partials[base + 1u] = l_own;
    }
}

// Combine pass: workgroup qh merges its query head's splits into the normalized output. The
// invocations share the splits (a serial loop over them left the GPU waiting on one load
// after another): max and sum by tree reductions, then per chunk of 512 splits their weights
// staged in `sc` and every output dim summed over them.
@compute @workgroup_size({{ c.wg }})
fn {{ c.name }}_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let qh = wid.x;
    let ns = params.n_splits;
    let base = qh * ns * (D + 2u);
    var mx = NEG;
    for (var s = lid; s < ns; s += WG) {
        mx = max(mx, partials[base + s * (D + 2u)]);
    }
    sc[lid] = mx;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            sc[lid] = max(sc[lid], sc[lid + stride]);
        }
        workgroupBarrier();
    }
    let top = sc[0];
    workgroupBarrier();
    var total = 0.0;
    for (var s = lid; s < ns; s += WG) {
        let b = base + s * (D + 2u);
        total += exp(partials[b] - top) * partials[b + 1u];
    }
    sc[lid] = total;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            sc[lid] += sc[lid + stride];
        }
        workgroupBarrier();
    }
    let sum = sc[0];
    var acc: array<f32, {{ c.dims_per_invocation }}>;
    for (var j = 0u; j < {{ c.dims_per_invocation }}u; j++) {
        acc[j] = 0.0;
    }
    for (var s0 = 0u; s0 < ns; s0 += {{ c.sc_len }}u) {
        let n = min({{ c.sc_len }}u, ns - s0);
        workgroupBarrier();
        for (var i = lid; i < n; i += WG) {
            sc[i] = exp(partials[base + (s0 + i) * (D + 2u)] - top);
        }
        workgroupBarrier();
        for (var i = 0u; i < n; i++) {
            let b = base + (s0 + i) * (D + 2u) + 2u + lid;
            for (var j = 0u; j < {{ c.dims_per_invocation }}u; j++) {
                acc[j] += sc[i] * partials[b + j * WG];
            }
        }
    }
    for (var j = 0u; j < {{ c.dims_per_invocation }}u; j++) {
        out[qh * D + lid + j * WG] = acc[j] / sum;
    }
}
