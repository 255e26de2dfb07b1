{% include "_header.wgsl" %}
const WG: u32 = {{ c.wg }}u;
const ROWS: u32 = {{ c.rows }}u;

var<workgroup> partials: array<f32, {{ c.partials_len }}>;
{% if c.quant %}
// The four bytes of a word as four lanes.
fn bytes4(v: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}
{% endif %}
// y[N] = W[N x K] · x[K]. A workgroup owns ROWS rows; its invocations stride over the
// 32-code blocks of K, load each block's x once and use it for every row.
@compute @workgroup_size({{ c.wg }})
fn {{ c.name }}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
{% if c.subgroups %}    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
{% endif %}) {
    let row0 = (wid.y * nwg.x + wid.x) * ROWS;
    let blocks = params.k / 32u;
{% if c.quant %}    let groups = blocks / BLOCKS_PER_GROUP;
{% endif %}    var acc: array<f32, {{ c.rows }}>;
    for (var blk = lid; blk < blocks; blk += WG) {
        let xb = blk * 8u;
{% for i in 0..8 %}        let x{{ i }} = x[xb + {{ i }}u];
{% endfor %}{% if c.f16 %}{% for i in 0..8 %}        let xh{{ i }} = vec4<f16>(x{{ i }});
{% endfor %}{% endif %}{% if c.asym %}        let xsum = dot(((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)), vec4<f32>(1.0));
{% endif %}        for (var r = 0u; r < ROWS; r++) {
            // Rows past N read row N - 1 and are never stored: every invocation takes the
            // same path to the barrier below.
            let row = min(row0 + r, params.n - 1u);
            let wb = (row * blocks + blk) * BLOCK_WORDS;
{% for i in 0..c.block_words %}            let w{{ i }} = weights[wb + {{ i }}u];
{% endfor %}{% for q in c.quads %}            let q{{ loop.index0 }} = {{ q.value }};
{% endfor %}{% if c.f16 %}            let d = ((dot(q0, xh0) + dot(q1, xh1)) + (dot(q2, xh2) + dot(q3, xh3))) + ((dot(q4, xh4) + dot(q5, xh5)) + (dot(q6, xh6) + dot(q7, xh7)));
{% else %}            let d = ((dot(q0, x0) + dot(q1, x1)) + (dot(q2, x2) + dot(q3, x3))) + ((dot(q4, x4) + dot(q5, x5)) + (dot(q6, x6) + dot(q7, x7)));
{% endif %}{% if c.quant %}            let g = row * groups + blk / BLOCKS_PER_GROUP;
{% if c.asym %}            acc[r] += scale_at(g) * f32(d) + min_at(g) * xsum;
{% else %}            acc[r] += scale_at(g) * f32(d);
{% endif %}{% else %}            acc[r] += f32(d);
{% endif %}        }
    }
{% if c.subgroups %}
    // One subgroupAdd per row, then the first lane of each subgroup leaves its sum.
    for (var r = 0u; r < ROWS; r++) {
        let total = subgroupAdd(acc[r]);
        if (sg_lane == 0u) {
            partials[r * WG + sg_id] = total;
        }
    }
    workgroupBarrier();
    if (lid < ROWS && row0 + lid < params.n) {
        var sum = 0.0;
        for (var i = 0u; i < sg_count; i++) {
            sum += partials[lid * WG + i];
        }
        y[row0 + lid] = sum;
    }
{% else %}
    // Tree reduction in workgroup memory.
    for (var r = 0u; r < ROWS; r++) {
        partials[r * WG + lid] = acc[r];
    }
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            for (var r = 0u; r < ROWS; r++) {
                partials[r * WG + lid] += partials[r * WG + lid + stride];
            }
        }
        workgroupBarrier();
    }
    if (lid < ROWS && row0 + lid < params.n) {
        y[row0 + lid] = partials[lid * WG];
    }
{% endif %}}
