{% include "_header.wgsl" %}
const WG: u32 = {{ c.wg }}u;
const ROWS: u32 = {{ c.rows }}u;
{% for e in c.entries %}{% if loop.index0 > 0 %}const {{ e.wg_const }}: u32 = {{ e.wg }}u;
const {{ e.rows_const }}: u32 = {{ e.rows }}u;
{% endif %}{% endfor %}
var<workgroup> partials: array<f32, {{ c.partials_len }}>;
{% for e in c.entries %}{% if e.partials != "partials" %}// The wide entry point's own: an entry point reserves only the arrays it uses.
var<workgroup> {{ e.partials }}: array<f32, {{ e.rows * e.wg }}>;
{% endif %}{% endfor %}{% if c.quant %}
// The four bytes of a word as four lanes.
fn bytes4(v: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}
{% endif %}
{% if c.dot4 %}
// One 32-block of x as int8 (docs/FORMAT.md §12): codes of elements 0-15 and 16-31, four
// per word, the power-of-two scale and the sum of the codes.
struct X8 {
    lo: vec4<u32>,
    hi: vec4<u32>,
    scale: f32,
    sum: i32,
}

// Every step is exact in f32 (power-of-two scales, an exponent read from the bits, round =
// ties to even), so every engine gets the codec's codes. Each invocation quantizes the
// blocks it reads: the x reads hit the cache and the arithmetic is small next to a
// separate pass's launch (7.6 us on an H100, measured: bench/NOTES.md).
fn x8_block(blk: u32) -> X8 {
    // Unrolled, so that nothing is indexed at run time (a run-time index sends an array to
    // local memory on some drivers).
{% for i in 0..8 %}    let v{{ i }} = x[blk * 8u + {{ i }}u];
{% endfor %}    let m = max(max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3))), max(max(abs(v4), abs(v5)), max(abs(v6), abs(v7))));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    // Blocks below 2^-100 are zeros: it keeps 2^e and 2^-e normal numbers.
    var inv = 0.0;
    var scale = 0.0;
    if (amax >= 0x1p-100f) {
        var e = i32((bitcast<u32>(amax) >> 23u) & 0xffu) - 133;
        inv = bitcast<f32>(u32(127 - e) << 23u);
        if (amax * inv > 127.0) {
            e += 1;
            inv = bitcast<f32>(u32(127 - e) << 23u);
        }
        scale = bitcast<f32>(u32(127 + e) << 23u);
    }
    // round() gives the code as an integer-valued f32; adding 1.5 · 2^23 is then exact (no
    // rounding, whatever the engine's rounding mode) and leaves the code in the low byte of
    // the bits as a two's complement, the byte pack4xI8 keeps (component 0 lowest, FORMAT.md
    // §12). One add instead of WGSL's saturating conversion to i32 (a clamp and a convert);
    // on an H100 the two timed the same (bench/NOTES.md, session 7).
{% for i in 0..8 %}    let q{{ i }} = pack4xI8(bitcast<vec4<i32>>(round(v{{ i }} * inv) + vec4<f32>(12582912.0)));
{% endfor %}    // The sum of the 32 codes: dot products with bytes of 1.
    let ones = 0x01010101u;
    let s = ((dot4I8Packed(q0, ones) + dot4I8Packed(q1, ones)) + (dot4I8Packed(q2, ones) + dot4I8Packed(q3, ones)))
        + ((dot4I8Packed(q4, ones) + dot4I8Packed(q5, ones)) + (dot4I8Packed(q6, ones) + dot4I8Packed(q7, ones)));
    return X8(vec4<u32>(q0, q1, q2, q3), vec4<u32>(q4, q5, q6, q7), scale, s);
}

{% endif %}{% for e in c.entries %}{% if loop.index0 > 0 %}
{{ e.doc }}
{% else %}// y[N] = W[N x K] · x[K]. A workgroup owns ROWS rows; its invocations stride over the
// 32-code blocks of K, load each block's x once and use it for every row.
{% endif %}@compute @workgroup_size({{ e.wg }})
fn {{ e.name }}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
{% if c.subgroups %}    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
{% endif %}) {
    let row0 = (wid.y * nwg.x + wid.x) * {{ e.rows_const }};
    let blocks = params.k / 32u;
{% if c.quant %}    let groups = blocks / BLOCKS_PER_GROUP;
{% endif %}    var acc: array<f32, {{ e.rows }}>;
{% if c.dot4 %}    // x's block in int8, then the inner products in integers, exact.
    for (var blk = lid; blk < blocks; blk += {{ e.wg_const }}) {
        let xq = x8_block(blk);
        let xa = xq.lo;
        let xb = xq.hi;
        let xscale = xq.scale;
        let xsum = xq.sum;
        // The rows are unrolled: constant indices keep acc in registers and let every row's
        // loads be issued before the first sum (a loop over r was latency-bound on an H100).
{% for r in 0..e.rows %}        {
            let row = min(row0 + {{ r }}u, params.n - 1u);
            let wb = (row * blocks + blk) * {{ c.vectors_per_block }}u;
{% for l in c.block_loads %}            {{ l }}
{% endfor %}            let d = ((dot4I8Packed({{ c.dot4_quads[0] }}, xa.x) + dot4I8Packed({{ c.dot4_quads[1] }}, xa.y))
                + (dot4I8Packed({{ c.dot4_quads[2] }}, xa.z) + dot4I8Packed({{ c.dot4_quads[3] }}, xa.w)))
                + ((dot4I8Packed({{ c.dot4_quads[4] }}, xb.x) + dot4I8Packed({{ c.dot4_quads[5] }}, xb.y))
                + (dot4I8Packed({{ c.dot4_quads[6] }}, xb.z) + dot4I8Packed({{ c.dot4_quads[7] }}, xb.w)));
            let g = row * groups + blk / BLOCKS_PER_GROUP;
{% if c.asym %}            acc[{{ r }}] += (scale_at(g) * xscale) * f32({{ c.dot4_sum }}) + (min_at(g) * xscale) * f32(xsum);
{% else %}            acc[{{ r }}] += (scale_at(g) * xscale) * f32({{ c.dot4_sum }});
{% endif %}        }
{% endfor %}    }
{% else %}    for (var blk = lid; blk < blocks; blk += {{ e.wg_const }}) {
        let xb = blk * 8u;
{% for i in 0..8 %}        let x{{ i }} = x[xb + {{ i }}u];
{% endfor %}{% if c.f16 %}{% for i in 0..8 %}        let xh{{ i }} = vec4<f16>(x{{ i }});
{% endfor %}{% endif %}{% if c.asym || c.fold_zero %}        let xsum = dot(((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)), vec4<f32>(1.0));
{% endif %}        // Rows past N read row N - 1 and are never stored: every invocation takes the
        // same path to the barrier below. The rows are unrolled (see the dot4 loop).
{% for r in 0..e.rows %}        {
            let row = min(row0 + {{ r }}u, params.n - 1u);
            let wb = (row * blocks + blk) * {{ c.vectors_per_block }}u;
{% for l in c.block_loads %}            {{ l }}
{% endfor %}{% for q in c.quads %}            let q{{ loop.index0 }} = {{ q.value }};
{% endfor %}{% if c.f16 %}            let d = ((dot(q0, xh0) + dot(q1, xh1)) + (dot(q2, xh2) + dot(q3, xh3))) + ((dot(q4, xh4) + dot(q5, xh5)) + (dot(q6, xh6) + dot(q7, xh7)));
{% else %}            let d = ((dot(q0, x0) + dot(q1, x1)) + (dot(q2, x2) + dot(q3, x3))) + ((dot(q4, x4) + dot(q5, x5)) + (dot(q6, x6) + dot(q7, x7)));
{% endif %}{% if c.quant %}            let g = row * groups + blk / BLOCKS_PER_GROUP;
{% if c.asym %}            acc[{{ r }}] += scale_at(g) * f32(d) + min_at(g) * xsum;
{% else if c.fold_zero %}            acc[{{ r }}] += scale_at(g) * (d - {{ c.zero32 }} * xsum);
{% else %}            acc[{{ r }}] += scale_at(g) * f32(d);
{% endif %}{% else %}            acc[{{ r }}] += f32(d);
{% endif %}        }
{% endfor %}    }
{% endif %}{% if c.subgroups %}
    // One subgroupAdd per row, then the first lane of each subgroup leaves its sum.
    // (acc is only ever indexed by constants, so it stays in registers.)
{% for r in 0..e.rows %}    let total{{ r }} = subgroupAdd(acc[{{ r }}]);
{% endfor %}    if (sg_lane == 0u) {
{% for r in 0..e.rows %}        {{ e.partials }}[{{ r }}u * {{ e.wg_const }} + sg_id] = total{{ r }};
{% endfor %}    }
    workgroupBarrier();
    if (lid < {{ e.rows_const }} && row0 + lid < params.n) {
        var sum = 0.0;
        for (var i = 0u; i < sg_count; i++) {
            sum += {{ e.partials }}[lid * {{ e.wg_const }} + i];
        }
        y[row0 + lid] = sum;
    }
{% else %}
    // Tree reduction in workgroup memory.
{% for r in 0..e.rows %}    {{ e.partials }}[{{ r }}u * {{ e.wg_const }} + lid] = acc[{{ r }}];
{% endfor %}    workgroupBarrier();
    for (var stride = {{ e.wg_const }} / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            for (var r = 0u; r < {{ e.rows_const }}; r++) {
                {{ e.partials }}[r * {{ e.wg_const }} + lid] += {{ e.partials }}[r * {{ e.wg_const }} + lid + stride];
            }
        }
        workgroupBarrier();
    }
    if (lid < {{ e.rows_const }} && row0 + lid < params.n) {
        y[row0 + lid] = {{ e.partials }}[lid * {{ e.wg_const }}];
    }
{% endif %}}
{% endfor %}