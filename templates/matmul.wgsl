{% include "_header.wgsl" %}
const TM: u32 = {{ c.tile_m }}u;
const TN: u32 = {{ c.tile_n }}u;
const STRIDE: u32 = {{ c.stride }}u;

// One K-block (32 values) of the X tile (TM rows) and of the dequantized W tile (TN rows).
var<workgroup> xs: array<{{ c.st }}, {{ c.tile_len }}>;
var<workgroup> ws: array<{{ c.st }}, {{ c.tile_len }}>;
{% if c.quant %}
// The code of element e (0..31) of the block starting at word wb.
fn code_at(wb: u32, e: u32) -> u32 {
    return {{ c.element_code }};
}
{% endif %}
// Y[M x N] = X[M x K] · W[N x K]^T. A workgroup owns a TM x TN tile of Y; each of its
// 8 x 8 invocations a 4 x 4 block of it. Per 32-wide step of K the X tile is staged and
// the W tile dequantized into workgroup memory once, then used TM (or TN) times.
@compute @workgroup_size({{ c.wg }})
fn {{ c.name }}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n0 = wid.x * TN;
    let m0 = wid.y * TM;
    let tx = lid % 8u;
    let ty = lid / 8u;
    let blocks = params.k / 32u;
    let kv = params.k / 4u;
{% if c.quant %}    let groups = blocks / BLOCKS_PER_GROUP;
{% endif %}    // This invocation dequantizes half a block (16 values) of one W row. Rows past N are
    // clamped to N - 1 and their outputs never stored.
    let wrow = lid / 2u;
    let e0 = (lid % 2u) * 16u;
    let wn = min(n0 + wrow, params.n - 1u);
    var acc: array<vec4<f32>, 4>;
    for (var blk = 0u; blk < blocks; blk++) {
        for (var i = 0u; i < 4u; i++) {
            let v = lid + i * 64u;
            let r = v / 8u;
            let c4 = v % 8u;
            let m = min(m0 + r, params.m - 1u);
            let xv = vec4<{{ c.st }}>(x[m * kv + blk * 8u + c4]);
            let o = r * STRIDE + c4 * 4u;
            xs[o] = xv.x;
            xs[o + 1u] = xv.y;
            xs[o + 2u] = xv.z;
            xs[o + 3u] = xv.w;
        }
        let wb = (wn * blocks + blk) * BLOCK_WORDS;
{% if c.quant %}        let gi = wn * groups + blk / BLOCKS_PER_GROUP;
        let s = scale_at(gi);
{% if c.asym %}        let mn = min_at(gi);
{% endif %}        for (var e = e0; e < e0 + 16u; e++) {
            let q = f32(code_at(wb, e));
{% if c.asym %}            ws[wrow * STRIDE + e] = {{ c.st }}(s * q + mn);
{% else %}            ws[wrow * STRIDE + e] = {{ c.st }}(s * (q - {{ c.zero32 }}));
{% endif %}        }
{% else %}        for (var e = e0; e < e0 + 16u; e += 2u) {
            let pair = unpack2x16float(weights[wb + e / 2u]);
            ws[wrow * STRIDE + e] = {{ c.st }}(pair.x);
            ws[wrow * STRIDE + e + 1u] = {{ c.st }}(pair.y);
        }
{% endif %}        workgroupBarrier();
        // Explicitly zeroed: Tint (Dawn 0.6.2) zero-initializes a `var` in a loop body only
        // once per invocation, so an implicit initializer would carry sums across blocks.
        var part = array<vec4<{{ c.st }}>, 4>();
        for (var kk = 0u; kk < 32u; kk++) {
            let b = vec4<{{ c.st }}>(
                ws[(tx * 4u) * STRIDE + kk],
                ws[(tx * 4u + 1u) * STRIDE + kk],
                ws[(tx * 4u + 2u) * STRIDE + kk],
                ws[(tx * 4u + 3u) * STRIDE + kk],
            );
            for (var i = 0u; i < 4u; i++) {
                part[i] += xs[(ty * 4u + i) * STRIDE + kk] * b;
            }
        }
        for (var i = 0u; i < 4u; i++) {
            acc[i] += vec4<f32>(part[i]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + ty * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + tx * 4u + j;
            if (m < params.m && n < params.n) {
                y[m * params.n + n] = acc[i][j];
            }
        }
    }
}
