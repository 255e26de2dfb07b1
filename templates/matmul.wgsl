{% include "_header.wgsl" %}
const TM: u32 = {{ c.mm.tm }}u;
const TN: u32 = {{ c.mm.tn }}u;
// Invocations along N and along M. Invocation (tx, ty) owns the rows 4·(ty + TY·a) + i and
// the columns 4·(tx + TX·b) + j of the tile: a {{ c.mm.rm }} x {{ c.mm.rn }} micro-tile whose row and
// column quads are TY and TX quads apart, so the invocations of a subgroup read consecutive
// vec4s of the staged tiles (distinct banks).
const TX: u32 = {{ c.mm.tx }}u;
const TY: u32 = {{ c.mm.ty }}u;
// vec4s per k of the staged tiles.
const XV: u32 = TM / 4u;
const WV: u32 = TN / 4u;
// Staging tasks per block (see task_quad), for X, then for W; each invocation takes
// {{ c.mm.rounds.len() }} of them.
const X_TASKS: u32 = XV * 8u;
const TASKS: u32 = X_TASKS + WV * 8u;

// One block (32 values of K) of the X tile and of the dequantized W tile, k-major: element
// k·XV + q holds rows 4q .. 4q+3 at column k, so one vec4 load gives four rows of the
// micro-tile at one k ({{ c.mm.bytes }} bytes of workgroup memory in all).
var<workgroup> xs: array<vec4<{{ c.st }}>, {{ c.mm.xs_len }}>;
var<workgroup> ws: array<vec4<{{ c.st }}>, {{ c.mm.ws_len }}>;
{% if c.quant %}
// The four bytes of a word as four lanes.
fn bytes4(v: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}

// The words that hold the codes of elements 4·qq .. 4·qq+3 of the block at word wb, one per
// bit plane (docs/FORMAT.md §4).
fn quad_words(wb: u32, qq: u32) -> vec2<u32> {
    return {{ c.mm.quad_words }};
}

// Those four codes, one per byte, from the words: whole words masked and shifted, never one
// code at a time.
fn quad_code(lo: u32, hi: u32, qq: u32) -> u32 {
    return {{ c.mm.quad_code }};
}
{% endif %}
// Staging task t (0 .. TASKS-1) covers a quad q of four rows (of X for t < X_TASKS, else of
// W) at k = 4·kq .. 4·kq+3 of a block. Eight consecutive tasks take eight consecutive quads
// at one kq, so their stores hit distinct banks.
fn task_quad(t: u32) -> vec2<u32> {
    let u = select(t - X_TASKS, t, t < X_TASKS);
    return vec2<u32>(u % 8u + 8u * (u / 64u), (u / 8u) % 8u);
}

// The global words task t needs for block blk: four X rows as bits, or per W row {% if c.quant %}its code
// words and its scale (and min) word{% else %}two words of
// f16 pairs{% endif %}. Fetched one block ahead and decoded by `put` after the products of the
// current block, so the loads' latency hides behind them. Rows past M or N are clamped to the last row; their outputs are never stored.
fn fetch(t: u32, m0: u32, n0: u32, blk: u32, blocks: u32) -> array<vec4<u32>, 4> {
    var raw: array<vec4<u32>, 4>;
{% if c.mm.task_guard %}    if (t >= TASKS) {
        return raw;
    }
{% endif %}    let qk = task_quad(t);
    if (t < X_TASKS) {
        let kv = params.k / 4u;
        let c = blk * 8u + qk.y;
{% for i in 0..4 %}        raw[{{ i }}] = bitcast<vec4<u32>>(x[min(m0 + 4u * qk.x + {{ i }}u, params.m - 1u) * kv + c]);
{% endfor %}    } else {
{% for i in 0..4 %}        let row{{ i }} = min(n0 + 4u * qk.x + {{ i }}u, params.n - 1u);
        let wb{{ i }} = (row{{ i }} * blocks + blk) * BLOCK_WORDS;
{% if c.quant %}        let gi{{ i }} = (row{{ i }} * blocks + blk) / BLOCKS_PER_GROUP;
        raw[{{ i }}] = vec4<u32>(quad_words(wb{{ i }}, qk.y), scales[gi{{ i }} >> 1u], {% if c.asym %}mins[gi{{ i }} >> 1u]{% else %}0u{% endif %});
{% else %}        raw[{{ i }}] = vec4<u32>(weights[wb{{ i }} + 2u * qk.y], weights[wb{{ i }} + 2u * qk.y + 1u], 0u, 0u);
{% endif %}{% endfor %}    }
    return raw;
}

// Elements 4·kq .. 4·kq+3 of block blk of W row n from the words `fetch` loaded, in f32.
fn w_value(raw: vec4<u32>, n: u32, blk: u32, kq: u32, blocks: u32) -> vec4<f32> {
{% if c.quant %}    // f16 scales (and mins) are stored two per word.
    let odd = (((n * blocks + blk) / BLOCKS_PER_GROUP) & 1u) == 1u;
    let sp = unpack2x16float(raw.z);
    let q = vec4<f32>(bytes4(quad_code(raw.x, raw.y, kq)));
{% if c.asym %}    let mp = unpack2x16float(raw.w);
    return select(sp.x, sp.y, odd) * q + select(mp.x, mp.y, odd);
{% else %}    return select(sp.x, sp.y, odd) * (q - vec4<f32>({{ c.zero32 }}));
{% endif %}{% else %}    return vec4<f32>(unpack2x16float(raw.x), unpack2x16float(raw.y));
{% endif %}}

// Task t's quad of block blk, decoded to {{ c.st }} (W dequantized in f32 first) and transposed
// into four k-major vec4s of workgroup memory.
fn put(t: u32, raw: array<vec4<u32>, 4>, n0: u32, blk: u32, blocks: u32) {
{% if c.mm.task_guard %}    if (t >= TASKS) {
        return;
    }
{% endif %}    let qk = task_quad(t);
    var r: array<vec4<{{ c.st }}>, 4>;
    if (t < X_TASKS) {
{% for i in 0..4 %}        r[{{ i }}] = vec4<{{ c.st }}>(bitcast<vec4<f32>>(raw[{{ i }}]));
{% endfor %}    } else {
{% for i in 0..4 %}        r[{{ i }}] = vec4<{{ c.st }}>(w_value(raw[{{ i }}], min(n0 + 4u * qk.x + {{ i }}u, params.n - 1u), blk, qk.y, blocks));
{% endfor %}    }
    let c0 = vec4<{{ c.st }}>(r[0].x, r[1].x, r[2].x, r[3].x);
    let c1 = vec4<{{ c.st }}>(r[0].y, r[1].y, r[2].y, r[3].y);
    let c2 = vec4<{{ c.st }}>(r[0].z, r[1].z, r[2].z, r[3].z);
    let c3 = vec4<{{ c.st }}>(r[0].w, r[1].w, r[2].w, r[3].w);
    if (t < X_TASKS) {
        let o = 4u * qk.y * XV + qk.x;
        xs[o] = c0;
        xs[o + XV] = c1;
        xs[o + 2u * XV] = c2;
        xs[o + 3u * XV] = c3;
    } else {
        let o = 4u * qk.y * WV + qk.x;
        ws[o] = c0;
        ws[o + WV] = c1;
        ws[o + 2u * WV] = c2;
        ws[o + 3u * WV] = c3;
    }
}

// The outputs m, n .. n+3 (those inside M x N).
fn store4(m: u32, n: u32, v: vec4<f32>) {
    if (m >= params.m) {
        return;
    }
    let o = m * params.n;
    for (var j = 0u; j < 4u; j++) {
        if (n + j < params.n) {
            y[o + n + j] = v[j];
        }
    }
}

// Y[M x N] = X[M x K] · W[N x K]^T. A workgroup owns a TM x TN tile of Y. Per block of K the
// X tile is staged and the W tile dequantized (one scale per row) into workgroup memory
// once; then each k costs every invocation {{ c.mm.loads_per_k }} vec4 loads for {{ c.mm.fmas_per_k }} vec4 multiply-adds.
@compute @workgroup_size({{ c.wg }})
fn {{ c.name }}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n0 = wid.x * TN;
    let m0 = wid.y * TM;
    let tx = lid % TX;
    let ty = lid / TX;
    let blocks = params.k / 32u;
{% for a in c.mm.accs %}    var acc{{ a.name }} = vec4<f32>(0.0);
{% endfor %}{% for r in c.mm.rounds %}    var raw{{ loop.index0 }} = fetch(lid{{ r }}, m0, n0, 0u, blocks);
{% endfor %}    for (var blk = 0u; blk < blocks; blk++) {
{% for r in c.mm.rounds %}        put(lid{{ r }}, raw{{ loop.index0 }}, n0, blk, blocks);
{% endfor %}        workgroupBarrier();
        // The next block's loads, in flight during this block's products (the last block
        // is fetched twice rather than branch).
        let next = min(blk + 1u, blocks - 1u);
{% for r in c.mm.rounds %}        raw{{ loop.index0 }} = fetch(lid{{ r }}, m0, n0, next, blocks);
{% endfor %}{% if c.f16 %}        // f16 products summed per block, then added to the f32 sums. Explicitly zeroed:
        // Tint (Dawn 0.6.2) zero-initializes a `var` in a loop body only once per invocation,
        // so an implicit initializer would carry sums across blocks.
{% for a in c.mm.accs %}        var p{{ a.name }} = vec4<f16>(0.0h);
{% endfor %}{% endif %}        for (var k = 0u; k < 32u; k += 4u) {
{% for u in 0..4 %}            {
{% for l in c.mm.x_loads %}                let xa{{ loop.index0 }} = xs[(k + {{ u }}u) * XV + ty{{ l }}];
{% endfor %}{% for l in c.mm.w_loads %}                let wb{{ loop.index0 }} = ws[(k + {{ u }}u) * WV + tx{{ l }}];
{% endfor %}{% for a in c.mm.accs %}                {% if c.f16 %}p{% else %}acc{% endif %}{{ a.name }} += {{ a.x }} * {{ a.w }};
{% endfor %}            }
{% endfor %}        }
{% if c.f16 %}{% for a in c.mm.accs %}        acc{{ a.name }} += vec4<f32>(p{{ a.name }});
{% endfor %}{% endif %}        workgroupBarrier();
    }
{% for a in c.mm.accs %}    store4(m0 + {{ a.row }}, n0 + {{ a.col }}, acc{{ a.name }});
{% endfor %}}
