{% include "_kv_header.wgsl" %}
// Tokens per step; query heads per KV head at most; quads (4 dims) and 32-dim blocks per head
// vector; token lanes and tokens per lane per step. Token i of a step belongs to lane
// i % LANES: in the value step invocation lid owns quad lid % QUADS of lane lid / QUADS's
// tokens, and the lane keeps its own running max and sum per query head, so no step needs a
// reduction over the whole workgroup.
const C: u32 = {{ c.chunk }}u;
const GMAX: u32 = {{ c.gmax }}u;
const QUADS: u32 = D / 4u;
const BLOCKS: u32 = D / 32u;
const LANES: u32 = WG / QUADS;
const TPL: u32 = C / LANES;
// Staged query quads per block: 8, padded to 9 so that the blocks an instruction's
// invocations read (consecutive invocations score consecutive blocks) fall in different banks.
const QB: u32 = 9u;
const QROW: u32 = BLOCKS * QB;
// Softmax of x·k / sqrt(D): queries are scaled once when staged.
const SCALE: f32 = {{ c.scale_bits }};
// Below every score: an empty running max; exp(NEG - m) is 0.
const NEG: f32 = -3.0e38;
// The combine pass's invocations.
const CWG: u32 = {{ c.combine_wg }}u;

// Queries of this KV head's query heads (pre-scaled, padded per block); per step every
// (query head, token, block) partial score; per step each (query head, token)'s probability
// and each (query head, lane)'s rescaling factor. At the end `sp` holds the lanes' weighted
// outputs and `pp` the lanes' maxima and sums; the combine pass reduces in `pp`.
var<workgroup> qs: array<vec4<f32>, {{ c.qs_len }}>;
var<workgroup> sp: array<f32, {{ c.sp_len }}>;
var<workgroup> pp: array<f32, {{ c.pp_len }}>;
var<workgroup> cr: array<f32, {{ c.cr_len }}>;

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

// Quad qd (dims 4qd .. 4qd+3) of token t's value vector (head h), from the codes or the window.
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
// its max, sum of exponentials and unnormalized output in `partials`. Each step of C tokens:
// 1. invocations score (token, block) pairs for every query head, 2. one invocation per
// (query head, lane) updates the lane's running max and sum and turns its scores into
// probabilities, 3. every invocation accumulates its value quad over its lane's tokens.
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
    for (var i = lid; i < gq * QUADS; i += WG) {
        let b = (h * gq) * D + 4u * i;
        let g = i / QUADS;
        let qd = i % QUADS;
        qs[g * QROW + (qd / 8u) * QB + qd % 8u] = vec4<f32>(q[b], q[b + 1u], q[b + 2u], q[b + 3u]) * SCALE;
    }
    // Step 1: this invocation's block (WG is a multiple of BLOCKS, so it never changes).
    let tb = lid % BLOCKS;
    // Step 2: invocation lid < gq * LANES keeps query head lid / LANES's running max and sum
    // over lane lid % LANES.
    let pg = lid / LANES;
    let pl = lid % LANES;
    var m_run = NEG;
    var l_run = 0.0;
    // Step 3: this invocation's quad and lane, and its output quad per query head.
    let qd = lid % QUADS;
    let lane = lid / QUADS;
{% for g in c.heads %}    var o{{ g }} = vec4<f32>(0.0);
{% endfor %}    workgroupBarrier();
    for (var c0 = t0; c0 < t1; c0 += C) {
        // 1. Scores of (token, block) pairs for every query head.
        for (var task = lid; task < C * BLOCKS; task += WG) {
            let t = c0 + task / BLOCKS;
{% for g in c.heads %}            var s{{ g }} = 0.0;
{% endfor %}            if (t < t1) {
                let row = h * params.max_seq + t;
                var kb: array<vec4<f32>, 8>;
                if (t < quantized_len) {
                    let wb = (row * BLOCKS + tb) * BITS;
{% for i in 0..c.bits %}                    let w{{ i }} = codes[wb + {{ i }}u];
{% endfor %}                    let gi = row * GPR + tb * 32u / G;
                    let sv = vec4<f32>(scale_at(gi));
                    let mv = vec4<f32>(min_at(gi));
{% for q in c.quads %}                    kb[{{ loop.index0 }}] = vec4<f32>(bytes4({{ q }})) * sv + mv;
{% endfor %}                } else {
                    let wi = ((h * params.window + t % params.window) * D + tb * 32u) / 2u;
{% for j in 0..8 %}                    kb[{{ j }}] = vec4<f32>(unpack2x16float(window[wi + {{ 2 * j }}u]), unpack2x16float(window[wi + {{ 2 * j + 1 }}u]));
{% endfor %}                }
{% for g in c.heads %}                if (gq > {{ g }}u) {
                    let qb = {{ g }}u * QROW + tb * QB;
                    s{{ g }} = ((dot(kb[0], qs[qb]) + dot(kb[1], qs[qb + 1u])) + (dot(kb[2], qs[qb + 2u]) + dot(kb[3], qs[qb + 3u])))
                        + ((dot(kb[4], qs[qb + 4u]) + dot(kb[5], qs[qb + 5u])) + (dot(kb[6], qs[qb + 6u]) + dot(kb[7], qs[qb + 7u])));
                }
{% endfor %}            }
{% for g in c.heads %}            if (gq > {{ g }}u) {
                sp[{{ g }}u * C * BLOCKS + task] = s{{ g }};
            }
{% endfor %}        }
        workgroupBarrier();
        // 2. Each (query head, lane): the lane's new running max, its rescaling factor and the
        // step's probabilities.
        if (lid < gq * LANES) {
            let sb = pg * C;
{% for k in c.lane_tokens %}            let i{{ k }} = pl + {{ k }}u * LANES;
            let s{{ k }} = select(NEG, {% for b in c.blocks %}{% if !loop.first %} + {% endif %}sp[(sb + i{{ k }}) * BLOCKS + {{ b }}u]{% endfor %}, c0 + i{{ k }} < t1);
{% endfor %}            let m_new = max(m_run, {{ c.lane_max }});
            let corr = exp(m_run - m_new);
{% for k in c.lane_tokens %}            let p{{ k }} = select(0.0, exp(s{{ k }} - m_new), c0 + i{{ k }} < t1);
            pp[sb + i{{ k }}] = p{{ k }};
{% endfor %}            l_run = l_run * corr + ({% for k in c.lane_tokens %}{% if !loop.first %} + {% endif %}p{{ k }}{% endfor %});
            m_run = m_new;
            cr[lid] = corr;
        }
        workgroupBarrier();
        // 3. The lane's outputs rescaled to its new max, then the step's tokens added.
{% for g in c.heads %}        if (gq > {{ g }}u) {
            o{{ g }} *= cr[{{ g }}u * LANES + lane];
        }
{% endfor %}        // 3. Every token's value quad loaded before any is used: a full step of stored tokens
        // without tests, else each token clamped into the split (its probability is 0 past the
        // end) and read from the codes or the window. (Loading them before the scores, to wait
        // on memory once per step, was slower on an H100: more registers, fewer workgroups in
        // flight; bench/NOTES.md, session 5.)
{% for k in c.lane_tokens %}        var v{{ k }}: vec4<f32>;
{% endfor %}        if (c0 + C <= min(t1, quantized_len)) {
{% for k in c.lane_tokens %}            v{{ k }} = value_quad(h, c0 + lane + {{ k }}u * LANES, qd, true);
{% endfor %}        } else {
{% for k in c.lane_tokens %}            let tk{{ k }} = min(c0 + lane + {{ k }}u * LANES, t1 - 1u);
            v{{ k }} = value_quad(h, tk{{ k }}, qd, tk{{ k }} < quantized_len);
{% endfor %}        }
{% for g in c.heads %}        if (gq > {{ g }}u) {
            let b = {{ g }}u * C + lane;
            o{{ g }} += {% for k in c.lane_tokens %}{% if !loop.first %} + {% endif %}pp[b + {{ k }}u * LANES] * v{{ k }}{% endfor %};
        }
{% endfor %}    }
    // The lanes are merged per query head: their outputs weighted by exp(lane max - max) in
    // `sp`, summed by the invocations of lane 0.
    workgroupBarrier();
    if (lid < gq * LANES) {
        pp[lid] = m_run;
        pp[GMAX * LANES + lid] = l_run;
    }
    workgroupBarrier();
    for (var g = 0u; g < gq; g++) {
        var mx = NEG;
        for (var r = 0u; r < LANES; r++) {
            mx = max(mx, pp[g * LANES + r]);
        }
        var ov = o0;
{% for g in c.heads %}{% if !loop.first %}        if (g == {{ g }}u) {
            ov = o{{ g }};
        }
{% endif %}{% endfor %}        ov *= exp(pp[g * LANES + lane] - mx);
        sp[4u * lid] = ov.x;
        sp[4u * lid + 1u] = ov.y;
        sp[4u * lid + 2u] = ov.z;
        sp[4u * lid + 3u] = ov.w;
        workgroupBarrier();
        let base = ((h * gq + g) * params.n_splits + split) * (D + 2u);
        if (lane == 0u) {
            var acc = vec4<f32>(0.0);
            for (var r = 0u; r < LANES; r++) {
                let e = 4u * (r * QUADS + qd);
                acc += vec4<f32>(sp[e], sp[e + 1u], sp[e + 2u], sp[e + 3u]);
            }
            let ob = base + 2u + 4u * qd;
            partials[ob] = acc.x;
            partials[ob + 1u] = acc.y;
            partials[ob + 2u] = acc.z;
            partials[ob + 3u] = acc.w;
        }
        if (lid == 0u) {
            var sum = 0.0;
            for (var r = 0u; r < LANES; r++) {
                sum += exp(pp[g * LANES + r] - mx) * pp[(GMAX + g) * LANES + r];
            }
            partials[base] = mx;
            partials[base + 1u] = sum;
        }
        workgroupBarrier();
    }
}

// Combine pass: workgroup qh merges its query head's splits into the normalized output.
// Invocation lid sums quad lid % QUADS over every CSUB-th split from lid / QUADS, four splits'
// loads issued together (a loop over the splits one at a time waited on every load: at 128
// splits that was most of the time at 8k tokens); the subsets are then summed.
const CSUB: u32 = CWG / QUADS;

var<workgroup> cv: array<vec4<f32>, {{ c.combine_wg }}>;

@compute @workgroup_size({{ c.combine_wg }})
fn {{ c.name }}_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let qh = wid.x;
    let ns = params.n_splits;
    let base = qh * ns * (D + 2u);
    var mx = NEG;
    for (var s = lid; s < ns; s += CWG) {
        mx = max(mx, partials[base + s * (D + 2u)]);
    }
    pp[lid] = mx;
    workgroupBarrier();
    for (var stride = CWG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            pp[lid] = max(pp[lid], pp[lid + stride]);
        }
        workgroupBarrier();
    }
    let top = pp[0];
    let qd = lid % QUADS;
    let sub = lid / QUADS;
    var acc = vec4<f32>(0.0);
    var total = 0.0;
    for (var s = sub; s < ns; s += 4u * CSUB) {
{% for u in 0..4 %}        let b{{ u }} = base + min(s + {{ u }}u * CSUB, ns - 1u) * (D + 2u);
        let o{{ u }} = b{{ u }} + 2u + 4u * qd;
        let w{{ u }} = select(0.0, exp(partials[b{{ u }}] - top), s + {{ u }}u * CSUB < ns);
        let l{{ u }} = partials[b{{ u }} + 1u];
        let v{{ u }} = vec4<f32>(partials[o{{ u }}], partials[o{{ u }} + 1u], partials[o{{ u }} + 2u], partials[o{{ u }} + 3u]);
{% endfor %}        total += (w0 * l0 + w1 * l1) + (w2 * l2 + w3 * l3);
        acc += (w0 * v0 + w1 * v1) + (w2 * v2 + w3 * v3);
    }
    workgroupBarrier();
    cv[lid] = acc;
    if (qd == 0u) {
        pp[sub] = total;
    }
    workgroupBarrier();
    if (sub == 0u) {
        var sum = pp[0];
        for (var r = 1u; r < CSUB; r++) {
            acc += cv[r * QUADS + qd];
            sum += pp[r];
        }
        let ob = qh * D + 4u * qd;
        out[ob] = acc.x / sum;
        out[ob + 1u] = acc.y / sum;
        out[ob + 2u] = acc.z / sum;
        out[ob + 3u] = acc.w / sum;
    }
}
