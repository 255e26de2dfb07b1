//! Property tests of the quantization codec (`codegen::codec`, `codegen::Weights`):
//! the packed byte layout of docs/FORMAT.md, exact code round-trips, the half-step error
//! bound of quantization, and the errors for inputs that cannot be encoded.

use codegen::codec::{pack_block, planes, unpack_block};
use codegen::{CodecError, Format, Scheme, SpecError, Weights};
use half::f16;
use proptest::prelude::*;

const BITS: [u32; 4] = [2, 3, 4, 8];

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Every quantized format: 4 bit widths x 3 group sizes x 2 schemes.
fn all_quant_formats() -> Vec<Format> {
    let mut v = Vec::new();
    for b in BITS {
        for g in Format::GROUP_SIZES {
            for s in Scheme::ALL {
                v.push(Format::quant(b, g, s).unwrap());
            }
        }
    }
    v
}

fn quant_format() -> impl Strategy<Value = Format> {
    prop::sample::select(all_quant_formats())
}

/// A block of 32 codes, each `< 2^bits`, for a random width.
fn bits_and_block() -> impl Strategy<Value = (u32, [u8; 32])> {
    prop::sample::select(BITS.to_vec()).prop_flat_map(|b| {
        let max = ((1u16 << b) - 1) as u8;
        (Just(b), prop::array::uniform32(0u8..=max))
    })
}

/// The layout written out from the docs, independently of the codec's word arithmetic:
/// a block is `bits` little-endian u32 words made of bit planes (2→[2], 3→[2,1], 4→[4],
/// 8→[8]), low bits first; in a p-bit plane (4p bytes) code e sits in byte `e mod 4p` at
/// bit `p·(e div 4p)` of that byte.
fn doc_pack(bits: u32, codes: &[u8; 32]) -> Vec<u32> {
    let plane_list: &[u32] = match bits {
        2 => &[2],
        3 => &[2, 1],
        4 => &[4],
        8 => &[8],
        _ => unreachable!(),
    };
    let mut bytes = Vec::new();
    let mut low = 0;
    for &p in plane_list {
        let mut plane = vec![0u8; 4 * p as usize];
        for (e, &c) in codes.iter().enumerate() {
            let part = (c >> low) & (((1u16 << p) - 1) as u8);
            plane[e % (4 * p as usize)] |= part << (p as usize * (e / (4 * p as usize)));
        }
        bytes.extend(plane);
        low += p;
    }
    assert_eq!(bytes.len(), 4 * bits as usize);
    bytes.chunks(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect()
}

fn pack(bits: u32, codes: &[u8; 32]) -> Vec<u32> {
    let mut out = vec![0xdead_beef; bits as usize]; // pack_block must overwrite everything
    pack_block(bits, codes, &mut out);
    out
}

/// A block with every code 0 except `codes[e] = code`.
fn one_code(e: usize, code: u8) -> [u8; 32] {
    let mut c = [0u8; 32];
    c[e] = code;
    c
}

/// Checks that every dequantized value of `w` is within half a step of `data`, that
/// `value` and `dequantize` agree bit for bit, and that nothing is NaN or infinite.
fn check_half_step(w: &Weights, data: &[f32]) -> Result<(), TestCaseError> {
    let (n, k) = (w.n, w.k);
    let g = w.format.group_size() as usize;
    let deq = w.dequantize();
    prop_assert_eq!(deq.len(), n * k);
    for r in 0..n {
        for gi in 0..k / g {
            let s = w.scale(r, gi);
            let m = w.min(r, gi);
            prop_assert!(s.is_finite() && s >= 0.0, "scale [{}, {}] = {}", r, gi, s);
            prop_assert!(m.is_finite(), "min [{}, {}] = {}", r, gi, m);
            if w.format.scheme() == Scheme::Sym {
                prop_assert_eq!(m, 0.0);
            } else {
                // The min is rounded down, never above the group's minimum.
                let lo = data[r * k + gi * g..r * k + (gi + 1) * g].iter().copied().fold(f32::INFINITY, f32::min);
                prop_assert!(m <= lo, "min [{}, {}] = {} is above the group minimum {}", r, gi, m, lo);
            }
        }
        for c in 0..k {
            let i = r * k + c;
            let v = data[i];
            let a = w.value(r, c);
            let b = deq[i];
            prop_assert!(a.is_finite(), "value({}, {}) = {} for input {}", r, c, a, v);
            prop_assert_eq!(a.to_bits(), b.to_bits(), "value({}, {}) = {} but dequantize()[{}] = {}", r, c, a, i, b);
            prop_assert!(w.code(r, c) <= w.format.max_code());
            let s = w.scale(r, c / g) as f64;
            let m = w.min(r, c / g) as f64;
            // Half a step, plus the f32 rounding of v / s, v − min and s·q + min.
            let tiny = 2f64.powi(-22) * (v.abs() as f64 + m.abs() + a.abs() as f64) + 1e-44;
            let allowed = s / 2.0 * (1.0 + 1e-6) + tiny;
            let err = (a as f64 - v as f64).abs();
            prop_assert!(
                err <= allowed,
                "{} [{}, {}]: input {:e} dequantized to {:e} (code {}, scale {:e}, min {:e}): error {:e} > {:e}",
                w.format,
                r,
                c,
                v,
                a,
                w.code(r, c),
                s,
                m,
                err,
                allowed
            );
        }
    }
    Ok(())
}

/// (format, n, k, data): K a multiple of the group; values uniform in ±10^e, e in −3..=3,
/// either one magnitude for the whole matrix or a magnitude per element.
fn quant_case() -> impl Strategy<Value = (Format, usize, usize, Vec<f32>)> {
    (quant_format(), 1usize..=3, 1usize..=3, -3i32..=3, any::<bool>()).prop_flat_map(|(f, n, groups, e, mixed)| {
        let k = groups * f.group_size() as usize;
        let vals = prop::collection::vec((-1.0f32..=1.0, -3i32..=3), n * k);
        (Just(f), Just(n), Just(k), vals).prop_map(move |(f, n, k, vals)| {
            let data = vals.into_iter().map(|(u, ei)| u * 10f32.powi(if mixed { ei } else { e })).collect();
            (f, n, k, data)
        })
    })
}

// ---------------------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn pack_unpack_round_trip((bits, codes) in bits_and_block()) {
        let words = pack(bits, &codes);
        prop_assert_eq!(words.len(), bits as usize);
        prop_assert_eq!(unpack_block(bits, &words), codes);
    }

    #[test]
    fn pack_matches_the_documented_layout((bits, codes) in bits_and_block()) {
        prop_assert_eq!(pack(bits, &codes), doc_pack(bits, &codes));
    }

    #[test]
    fn unpack_reads_every_bit_pattern(bits in prop::sample::select(BITS.to_vec()), seed in prop::collection::vec(any::<u32>(), 8)) {
        // Every word pattern is some block: unpack then pack gives the same words back.
        let words = &seed[..bits as usize];
        let codes = unpack_block(bits, words);
        prop_assert!(codes.iter().all(|&c| (c as u32) < 1 << bits));
        prop_assert_eq!(pack(bits, &codes), words.to_vec());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn from_codes_round_trips(
        (f, n, groups, codes, halves) in (quant_format(), 1usize..=3, 1usize..=3).prop_flat_map(|(f, n, groups)| {
            let k = groups * f.group_size() as usize;
            let max = f.max_code() as u8;
            (
                Just(f),
                Just(n),
                Just(groups),
                prop::collection::vec(0u8..=max, n * k),
                prop::collection::vec(0u16..0x7c00, 2 * n * groups),
            )
        })
    ) {
        let k = groups * f.group_size() as usize;
        let (scales, mins) = halves.split_at(n * groups);
        let mins: &[u16] = if f.has_min() { mins } else { &[] };
        let w = Weights::from_codes(f, n, k, &codes, scales, mins);
        prop_assert_eq!(w.words.len(), n * k * f.bits() as usize / 32);
        prop_assert_eq!(w.codes(), codes.clone());
        for r in 0..n {
            for c in 0..k {
                prop_assert_eq!(w.code(r, c), codes[r * k + c] as u32);
            }
            for gi in 0..groups {
                prop_assert_eq!(w.scale(r, gi), f16::from_bits(scales[r * groups + gi]).to_f32());
                let m = if f.has_min() { f16::from_bits(mins[r * groups + gi]).to_f32() } else { 0.0 };
                prop_assert_eq!(w.min(r, gi), m);
            }
        }
        // The first block of the matrix is the first `bits` words.
        let first: [u8; 32] = codes[..32].try_into().unwrap();
        prop_assert_eq!(&w.words[..f.bits() as usize], &pack(f.bits(), &first)[..]);
    }
}

#[test]
fn planes_are_documented() {
    assert_eq!(planes(2), &[2]);
    assert_eq!(planes(3), &[2, 1]);
    assert_eq!(planes(4), &[4]);
    assert_eq!(planes(8), &[8]);
    for b in BITS {
        assert_eq!(planes(b).iter().sum::<u32>(), b);
    }
}

#[test]
fn layout_2bit() {
    // One 2-bit plane: 8 bytes = 2 words; code e in byte e mod 8, bits 2·(e div 8).
    assert_eq!(pack(2, &one_code(0, 3)), [0x0000_0003, 0]);
    assert_eq!(pack(2, &one_code(1, 3)), [0x0000_0300, 0]);
    assert_eq!(pack(2, &one_code(3, 3)), [0x0300_0000, 0]);
    assert_eq!(pack(2, &one_code(4, 3)), [0, 0x0000_0003]);
    assert_eq!(pack(2, &one_code(7, 3)), [0, 0x0300_0000]);
    assert_eq!(pack(2, &one_code(8, 3)), [0x0000_000c, 0]);
    assert_eq!(pack(2, &one_code(17, 3)), [0x0000_3000, 0]);
    assert_eq!(pack(2, &one_code(31, 3)), [0, 0xc000_0000]);
    assert_eq!(pack(2, &one_code(31, 1)), [0, 0x4000_0000]);
    // Codes 0,1,2,3,0,1,2,3,...: byte b holds elements b, b+8, b+16, b+24, all of code b mod 4.
    let codes: [u8; 32] = std::array::from_fn(|e| (e % 4) as u8);
    assert_eq!(pack(2, &codes), [0xffaa_5500, 0xffaa_5500]);
    assert_eq!(pack(2, &[3; 32]), [u32::MAX; 2]);
}

#[test]
fn layout_3bit() {
    // A 2-bit plane of the low bits (words 0, 1), then a 1-bit plane of the high bit
    // (word 2: code e's high bit in byte e mod 4, bit e div 4).
    assert_eq!(pack(3, &one_code(0, 7)), [0x0000_0003, 0, 0x0000_0001]);
    assert_eq!(pack(3, &one_code(9, 7)), [0x0000_0c00, 0, 0x0000_0400]);
    assert_eq!(pack(3, &one_code(31, 7)), [0, 0xc000_0000, 0x8000_0000]);
    // Only the high bit: nothing in the low plane.
    assert_eq!(pack(3, &one_code(5, 4)), [0, 0, 0x0000_0200]);
    assert_eq!(pack(3, &one_code(30, 4)), [0, 0, 0x0080_0000]);
    // Only the low bits: nothing in the high plane.
    assert_eq!(pack(3, &one_code(5, 3)), [0, 0x0000_0300, 0]);
    assert_eq!(pack(3, &one_code(22, 1)), [0, 0x0010_0000, 0]);
    assert_eq!(pack(3, &[7; 32]), [u32::MAX; 3]);
    assert_eq!(pack(3, &[4; 32]), [0, 0, u32::MAX]);
    assert_eq!(pack(3, &[3; 32]), [u32::MAX, u32::MAX, 0]);
}

#[test]
fn layout_4bit() {
    // Byte i: low nibble = element i, high nibble = element 16 + i.
    assert_eq!(pack(4, &one_code(0, 15)), [0x0000_000f, 0, 0, 0]);
    assert_eq!(pack(4, &one_code(16, 15)), [0x0000_00f0, 0, 0, 0]);
    assert_eq!(pack(4, &one_code(5, 15)), [0, 0x0000_0f00, 0, 0]);
    assert_eq!(pack(4, &one_code(21, 15)), [0, 0x0000_f000, 0, 0]);
    assert_eq!(pack(4, &one_code(15, 15)), [0, 0, 0, 0x0f00_0000]);
    assert_eq!(pack(4, &one_code(31, 15)), [0, 0, 0, 0xf000_0000]);
    assert_eq!(pack(4, &one_code(31, 9)), [0, 0, 0, 0x9000_0000]);
    // Element e = e mod 16: byte i = i | i << 4.
    let codes: [u8; 32] = std::array::from_fn(|e| (e % 16) as u8);
    assert_eq!(pack(4, &codes), [0x3322_1100, 0x7766_5544, 0xbbaa_9988, 0xffee_ddcc]);
    // Element e has code e div 2: byte i = (i div 2) | (8 + i div 2) << 4.
    let codes: [u8; 32] = std::array::from_fn(|e| (e / 2) as u8);
    assert_eq!(pack(4, &codes), [0x9191_8080, 0xb3b3_a2a2, 0xd5d5_c4c4, 0xf7f7_e6e6]);
}

#[test]
fn layout_8bit() {
    // Code e is byte e: word e div 4, byte e mod 4.
    assert_eq!(pack(8, &one_code(0, 255)), [0xff, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(pack(8, &one_code(6, 255)), [0, 0x00ff_0000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(pack(8, &one_code(31, 255)), [0, 0, 0, 0, 0, 0, 0, 0xff00_0000]);
    let codes: [u8; 32] = std::array::from_fn(|e| e as u8);
    assert_eq!(
        pack(8, &codes),
        [0x0302_0100, 0x0706_0504, 0x0b0a_0908, 0x0f0e_0d0c, 0x1312_1110, 0x1716_1514, 0x1b1a_1918, 0x1f1e_1d1c]
    );
}

#[test]
fn weights_rows_are_consecutive_blocks() {
    // 2 rows x 64 columns of 4-bit codes: row r, column c has code (r·2 + c div 32) so each
    // block is constant and the word order of blocks is visible.
    let f = Format::quant(4, 32, Scheme::Sym).unwrap();
    let codes: Vec<u8> = (0..128).map(|i| ((i / 64) * 2 + (i % 64) / 32) as u8).collect();
    let w = Weights::from_codes(f, 2, 64, &codes, &[0x3c00; 4], &[]);
    let expect: Vec<u32> = (0..4u32).flat_map(|b| [b * 0x1111_1111; 4]).collect();
    assert_eq!(w.words, expect);
    // Scales are f16 pairs, element 2i in the low half.
    assert_eq!(w.scales, [0x3c00_3c00, 0x3c00_3c00]);
    assert_eq!(w.codes(), codes);
}

// ---------------------------------------------------------------------------------------
// Quantization
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn quantize_is_within_half_a_step((f, n, k, data) in quant_case()) {
        let w = Weights::quantize(f, n, k, &data).map_err(|e| TestCaseError::fail(format!("{f} {n}x{k}: {e}")))?;
        prop_assert_eq!(w.format, f);
        prop_assert_eq!((w.n, w.k), (n, k));
        let groups = n * k / f.group_size() as usize;
        prop_assert_eq!(w.words.len(), n * k * f.bits() as usize / 32);
        prop_assert_eq!(w.scales.len(), groups.div_ceil(2));
        prop_assert_eq!(w.mins.len(), if f.has_min() { groups.div_ceil(2) } else { 0 });
        check_half_step(&w, &data)?;
        // Re-packing the codes gives the same words.
        let scales: Vec<u16> = (0..groups).map(|i| (w.scales[i / 2] >> (16 * (i % 2))) as u16).collect();
        let mins: Vec<u16> = if f.has_min() { (0..groups).map(|i| (w.mins[i / 2] >> (16 * (i % 2))) as u16).collect() } else { vec![] };
        prop_assert_eq!(Weights::from_codes(f, n, k, &w.codes(), &scales, &mins), w);
    }

    #[test]
    fn quantize_large_values_is_exact_or_an_overflow_error(
        (f, n, k, data) in quant_case(),
        e in 3i32..=6,
    ) {
        // Up to 10^6: some groups fit an f16 scale and min, some do not. Either the result
        // meets the bound or the error is an overflow; never NaN, infinity or garbage.
        let data: Vec<f32> = data.iter().map(|v| v * 10f32.powi(e)).collect();
        match Weights::quantize(f, n, k, &data) {
            Ok(w) => check_half_step(&w, &data)?,
            Err(CodecError::ScaleOverflow { row, group, range }) => {
                prop_assert!(row < n && group < k / f.group_size() as usize);
                prop_assert!(range > 65504.0, "{} overflowed with range {}", f, range);
            }
            Err(CodecError::F16Overflow { row, col, value }) => {
                prop_assert!(f.has_min() && row < n && col < k);
                prop_assert!(value < -65504.0, "{} overflowed on {}", f, value);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn quantize_with_constant_groups((f, n, k, mut data) in quant_case(), which in any::<prop::sample::Index>(), c in prop::sample::select(vec![0.0f32, -0.0, 1.0, -1.0, -3.7, 0.1, -1e-3, 2.5e-8, -65504.0, 65504.0, 1234.567])) {
        // One group (row r, group gi) made constant.
        let g = f.group_size() as usize;
        let groups = n * k / g;
        let gi = which.index(groups);
        data[gi * g..(gi + 1) * g].fill(c);
        let w = Weights::quantize(f, n, k, &data).map_err(|e| TestCaseError::fail(format!("{f}, constant {c}: {e}")))?;
        check_half_step(&w, &data)?;
    }
}

#[test]
fn constant_matrices() {
    let constants =
        [0.0f32, -0.0, 1.0, -1.0, 0.5, -0.5, -3.7, 1e-3, -1e-3, 1e-30, -1e-30, 1234.567, -1234.567, 65504.0, -65504.0];
    for f in all_quant_formats() {
        for &c in &constants {
            let (n, k) = (2, 2 * f.group_size() as usize);
            let data = vec![c; n * k];
            let w = Weights::quantize(f, n, k, &data).unwrap_or_else(|e| panic!("{f}, constant {c}: {e}"));
            check_half_step(&w, &data).unwrap_or_else(|e| panic!("{f}, constant {c}: {e}"));
            // A value that is an f16 is represented exactly in a constant group.
            let exact = f16::from_f32(c).to_f32() == c;
            for r in 0..n {
                for col in 0..k {
                    let v = w.value(r, col);
                    assert!(!v.is_nan(), "{f}, constant {c}: NaN at [{r}, {col}]");
                    if exact && f.has_min() {
                        assert_eq!(v, c, "{f}, constant {c}: asym zero-range group must be exact");
                    }
                }
            }
            if c == 0.0 {
                // All zero: sym scale 0 (code = zero point), asym scale 0 and min 0.
                for r in 0..n {
                    for gi in 0..w.groups() {
                        assert_eq!(w.scale(r, gi), 0.0, "{f}: all-zero group has scale {}", w.scale(r, gi));
                        assert_eq!(w.min(r, gi), 0.0);
                    }
                }
                assert!(w.codes().iter().all(|&q| q as u32 == f.zero_point()), "{f}: all-zero codes");
                assert!(w.dequantize().iter().all(|&v| v == 0.0));
            }
        }
    }
}

#[test]
fn zero_groups_next_to_nonzero_groups() {
    // Row 0: group 0 all zero, group 1 a ramp; row 1: group 0 constant −2, group 1 zero.
    for f in all_quant_formats() {
        let g = f.group_size() as usize;
        let k = 2 * g;
        let mut data = vec![0.0f32; 2 * k];
        for j in 0..g {
            data[g + j] = j as f32 / g as f32 - 0.3;
            data[k + j] = -2.0;
        }
        let w = Weights::quantize(f, 2, k, &data).unwrap();
        check_half_step(&w, &data).unwrap_or_else(|e| panic!("{f}: {e}"));
        if f.scheme() == Scheme::Sym {
            assert_eq!(w.scale(0, 0), 0.0, "{f}");
            assert_eq!(w.scale(1, 1), 0.0, "{f}");
        }
        assert!(w.scale(0, 1) > 0.0);
        for c in 0..g {
            assert_eq!(w.value(0, c), 0.0, "{f}");
            assert_eq!(w.value(1, g + c), 0.0, "{f}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn non_finite_is_named(
        f in prop::sample::select({ let mut v = all_quant_formats(); v.push(Format::f16()); v }),
        n in 1usize..=3,
        groups in 1usize..=2,
        at in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN]),
    ) {
        let k = groups * f.group_size() as usize;
        let mut data: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let i = at.index(n * k);
        data[i] = bad;
        match Weights::quantize(f, n, k, &data) {
            Err(e @ CodecError::NonFinite { row, col, value }) => {
                prop_assert_eq!((row, col), (i / k, i % k));
                prop_assert_eq!(value.to_bits(), bad.to_bits());
                let msg = e.to_string();
                prop_assert!(msg.contains(&format!("[{}, {}]", i / k, i % k)), "{}", msg);
            }
            other => prop_assert!(false, "{f}: expected NonFinite at {i}, got {other:?}"),
        }
    }
}

#[test]
fn first_non_finite_is_reported() {
    let f = Format::quant(4, 32, Scheme::Asym).unwrap();
    let mut data = vec![1.0f32; 2 * 64];
    data[64 + 40] = f32::INFINITY;
    data[64 + 3] = f32::NAN;
    let e = Weights::quantize(f, 2, 64, &data).unwrap_err();
    assert!(matches!(e, CodecError::NonFinite { row: 1, col: 3, .. }), "{e:?}");
    assert!(e.to_string().contains("[1, 3]"), "{e}");
}

#[test]
fn huge_values_are_errors() {
    for f in all_quant_formats() {
        let g = f.group_size() as usize;
        let (n, k) = (2, 2 * g);
        let (r, c) = (1, g + 5);
        for huge in [1e30f32, -1e30, 1e10, -1e10, f32::MAX, -f32::MAX] {
            let mut data = vec![0.25f32; n * k];
            data[r * k + c] = huge;
            let e = Weights::quantize(f, n, k, &data).unwrap_err();
            match e {
                CodecError::ScaleOverflow { row, group, range } => {
                    assert_eq!((row, group), (r, c / g), "{f} {huge}: {e}");
                    assert!(range > 65504.0, "{f} {huge}: {e}");
                    assert!(e.to_string().contains(&format!("group {} of row {}", c / g, r)), "{e}");
                }
                // Asym: a huge negative minimum does not fit the f16 min.
                CodecError::F16Overflow { row, .. } => {
                    assert!(f.has_min() && huge < 0.0, "{f} {huge}: {e}");
                    assert_eq!(row, r, "{f} {huge}: {e}");
                }
                _ => panic!("{f} {huge}: unexpected {e:?}"),
            }
        }
    }
}

/// Bug in `Weights::quantize` (codegen/src/codec.rs, `Scheme::Asym` arm): when a group's
/// minimum does not fit the f16 min, the error names the group's first column
/// (`col: gi * g`) instead of the column of the offending value, so the message points at
/// a weight that is fine: here "weight [1, 32] = -1e30" while [1, 32] holds 0.25 and
/// −1e30 is at [1, 37].
#[test]
fn asym_min_overflow_names_the_offending_column() {
    let f = Format::quant(4, 32, Scheme::Asym).unwrap();
    let mut data = vec![0.25f32; 2 * 64];
    data[64 + 37] = -1e30;
    let e = Weights::quantize(f, 2, 64, &data).unwrap_err();
    assert!(matches!(e, CodecError::F16Overflow { row: 1, col: 37, .. }), "{e:?}: {e}");
}

#[test]
fn f16_baseline_overflow_is_named() {
    let f = Format::f16();
    let mut data = vec![1.0f32; 3 * 32];
    data[2 * 32 + 7] = -1e30;
    let e = Weights::quantize(f, 3, 32, &data).unwrap_err();
    assert!(matches!(e, CodecError::F16Overflow { row: 2, col: 7, .. }), "{e:?}");
    assert!(e.to_string().contains("[2, 7]"), "{e}");
    // 65520 is the first value that rounds to infinity.
    data[2 * 32 + 7] = 65520.0;
    assert!(matches!(Weights::quantize(f, 3, 32, &data), Err(CodecError::F16Overflow { row: 2, col: 7, .. })));
    data[2 * 32 + 7] = 65519.0;
    assert_eq!(Weights::quantize(f, 3, 32, &data).unwrap().value(2, 7), 65504.0);
}

#[test]
fn k_not_a_multiple_of_the_group() {
    let cases = [
        (Format::quant(4, 32, Scheme::Sym).unwrap(), 48),
        (Format::quant(2, 64, Scheme::Asym).unwrap(), 96),
        (Format::quant(8, 128, Scheme::Sym).unwrap(), 192),
        (Format::quant(3, 128, Scheme::Asym).unwrap(), 64),
        (Format::f16(), 40),
        (Format::quant(4, 32, Scheme::Sym).unwrap(), 0),
    ];
    for (f, k) in cases {
        let e = Weights::quantize(f, 2, k, &vec![0.5; 2 * k]).unwrap_err();
        let g = f.group_size();
        assert_eq!(e, CodecError::Spec(SpecError::KNotMultiple { k: k as u64, group: g }), "{f} K={k}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("K = {k}")) && msg.contains(&format!("group size {g}")), "{msg}");
    }
}

#[test]
fn wrong_length_and_zero_rows() {
    let f = Format::quant(4, 32, Scheme::Sym).unwrap();
    for found in [0, 63, 65, 128] {
        let e = Weights::quantize(f, 2, 32, &vec![0.0; found]).unwrap_err();
        assert_eq!(e, CodecError::Length { n: 2, k: 32, expected: 64, found });
        assert!(e.to_string().contains(&format!("expected 64 values for a 2x32 matrix, found {found}")), "{e}");
    }
    let e = Weights::quantize(Format::f16(), 1, 32, &[0.0; 31]).unwrap_err();
    assert!(matches!(e, CodecError::Length { expected: 32, found: 31, .. }), "{e:?}");
    let e = Weights::quantize(f, 0, 32, &[]).unwrap_err();
    assert_eq!(e, CodecError::Spec(SpecError::Zero("N")));
}

// ---------------------------------------------------------------------------------------
// f16 baseline
// ---------------------------------------------------------------------------------------

/// Whether `h` is the f16 nearest to `v` (no neighbour strictly closer).
fn is_nearest_f16(v: f32, h: f32) -> bool {
    let b = f16::from_f32(h);
    if b.to_f32() != h {
        return false; // not representable
    }
    let err = (h as f64 - v as f64).abs();
    let bits = b.to_bits();
    let neighbours = [bits.wrapping_add(1), bits.wrapping_sub(1), bits ^ 0x8000];
    neighbours.iter().all(|&nb| {
        let x = f16::from_bits(nb);
        !x.is_finite() || (x.to_f32() as f64 - v as f64).abs() >= err
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn f16_baseline_rounds_to_nearest(
        (n, k, data) in (1usize..=3, 1usize..=3).prop_flat_map(|(n, b)| {
            let k = 32 * b;
            let v = prop_oneof![
                -65504.0f32..=65504.0,
                -1.0f32..=1.0,
                -1e-4f32..=1e-4,
                -1e-7f32..=1e-7,
                prop::sample::select(vec![0.0f32, -0.0, 65504.0, -65504.0, 65519.0, 6.1e-5, 5.96e-8]),
            ];
            (Just(n), Just(k), prop::collection::vec(v, n * k))
        })
    ) {
        let w = Weights::quantize(Format::f16(), n, k, &data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(w.scales.is_empty() && w.mins.is_empty());
        prop_assert_eq!(w.words.len(), n * k / 2);
        let deq = w.dequantize();
        for i in 0..n * k {
            let (r, c) = (i / k, i % k);
            let v = data[i];
            let h = w.value(r, c);
            prop_assert_eq!(h.to_bits(), deq[i].to_bits());
            prop_assert_eq!(h, f16::from_f32(v).to_f32(), "[{}, {}] {}", r, c, v);
            prop_assert!(is_nearest_f16(v, h), "[{}, {}]: {} stored as {}, not the nearest f16", r, c, v, h);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Storage cost
// ---------------------------------------------------------------------------------------

#[test]
fn bits_per_weight_table() {
    let table = [
        (2, 32, Scheme::Sym, 2.5),
        (2, 32, Scheme::Asym, 3.0),
        (2, 128, Scheme::Sym, 2.125),
        (3, 64, Scheme::Sym, 3.25),
        (3, 128, Scheme::Asym, 3.25),
        (3, 128, Scheme::Sym, 3.125),
        (4, 32, Scheme::Sym, 4.5),
        (4, 64, Scheme::Sym, 4.25),
        (4, 128, Scheme::Asym, 4.25),
        (8, 32, Scheme::Asym, 9.0),
        (8, 128, Scheme::Sym, 8.125),
    ];
    for (b, g, s, want) in table {
        let f = Format::quant(b, g, s).unwrap();
        assert_eq!(f.bits_per_weight(), want, "{f}");
    }
    assert_eq!(Format::f16().bits_per_weight(), 16.0);
    // The stored bytes agree (an even number of groups, so no half-word padding).
    for f in all_quant_formats().into_iter().chain([Format::f16()]) {
        let (n, k) = (2, 256);
        let w = Weights::quantize(f, n, k, &vec![0.5; n * k]).unwrap();
        assert_eq!(w.bytes() as f64 * 8.0 / (n * k) as f64, f.bits_per_weight(), "{f}");
    }
}
