//! The emitted WGSL decodes codes exactly as the codec packs them.
//!
//! naga validation says a kernel is well-typed, not that it reads the right bits. These
//! tests take the code-extraction expressions out of the emitted text (matvec's
//! `let qN = vec4<..>(bytes4(EXPR))` per quad of a block, matmul's `quad_words` and `quad_code` bodies),
//! evaluate them with a small u32 interpreter on words packed by `codec::pack_block`, and
//! compare with the codes that were packed.

use codegen::codec::pack_block;
use codegen::{Format, KernelSpec, Op, Scheme, Target, Tier, wgsl};
use std::collections::HashMap;

/// A tiny evaluator of WGSL u32 expressions: literals (`8u`, `0x03030303u`), variables,
/// `weights[...]`, parentheses and `| ^ & << >> + - * / %` with the usual precedence.
struct Eval<'a> {
    toks: Vec<String>,
    pos: usize,
    vars: &'a HashMap<String, u32>,
    weights: &'a [u32],
}

fn tokenize(s: &str) -> Vec<String> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let j = (i..cs.len()).find(|&j| !(cs[j].is_ascii_alphanumeric() || cs[j] == '_')).unwrap_or(cs.len());
            out.push(cs[i..j].iter().collect());
            i = j;
        } else if (c == '<' || c == '>') && cs.get(i + 1) == Some(&c) {
            out.push(format!("{c}{c}"));
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

impl Eval<'_> {
    fn run(expr: &str, vars: &HashMap<String, u32>, weights: &[u32]) -> u32 {
        let mut e = Eval { toks: tokenize(expr), pos: 0, vars, weights };
        let v = e.binary(0);
        assert_eq!(e.pos, e.toks.len(), "trailing tokens in `{expr}`: {:?}", &e.toks[e.pos..]);
        v
    }

    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(|s| s.as_str())
    }

    fn expect(&mut self, t: &str) {
        assert_eq!(self.peek(), Some(t), "expected `{t}` at token {} of {:?}", self.pos, self.toks);
        self.pos += 1;
    }

    /// Precedence climbing; level 0 is `|`, 5 is `* / %`.
    fn binary(&mut self, level: usize) -> u32 {
        const LEVELS: [&[&str]; 6] = [&["|"], &["^"], &["&"], &["<<", ">>"], &["+", "-"], &["*", "/", "%"]];
        if level == LEVELS.len() {
            return self.primary();
        }
        let mut v = self.binary(level + 1);
        while let Some(op) = self.peek().filter(|t| LEVELS[level].contains(t)).map(str::to_string) {
            self.pos += 1;
            let r = self.binary(level + 1);
            v = match op.as_str() {
                "|" => v | r,
                "^" => v ^ r,
                "&" => v & r,
                "<<" | ">>" => {
                    assert!(r < 32, "shift by {r} in {:?}", self.toks);
                    if op == "<<" { v << r } else { v >> r }
                }
                "+" => v.wrapping_add(r),
                "-" => v.wrapping_sub(r),
                "*" => v.wrapping_mul(r),
                "/" => v / r,
                "%" => v % r,
                _ => unreachable!(),
            };
        }
        v
    }

    fn primary(&mut self) -> u32 {
        let t = self.toks.get(self.pos).cloned().unwrap_or_else(|| panic!("unexpected end of {:?}", self.toks));
        self.pos += 1;
        if t == "(" {
            let v = self.binary(0);
            self.expect(")");
            return v;
        }
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            let lit = t.strip_suffix('u').unwrap_or_else(|| panic!("literal `{t}` is not a u32"));
            return match lit.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).unwrap(),
                None => lit.parse().unwrap(),
            };
        }
        if t == "weights" {
            self.expect("[");
            let i = self.binary(0);
            self.expect("]");
            return *self
                .weights
                .get(i as usize)
                .unwrap_or_else(|| panic!("weights[{i}] out of bounds ({})", self.weights.len()));
        }
        *self.vars.get(&t).unwrap_or_else(|| panic!("unknown variable `{t}`"))
    }
}

/// The text between `open` (which ends with `(`) and its matching `)`.
fn parenthesized<'a>(text: &'a str, open: &str) -> &'a str {
    let start = text.find(open).unwrap_or_else(|| panic!("no `{open}` in `{text}`")) + open.len();
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..start + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced `{text}`")
}

/// A deterministic stream of code blocks: structured ones first (all zero, all max, one
/// max code at each position, ramps), then pseudo-random ones.
fn blocks(bits: u32) -> Vec<[u8; 32]> {
    let max = ((1u16 << bits) - 1) as u8;
    let mut out = vec![[0u8; 32], [max; 32]];
    for e in 0..32 {
        let mut b = [0u8; 32];
        b[e] = max;
        out.push(b);
        let mut b = [max; 32];
        b[e] = 0;
        out.push(b);
    }
    out.push(std::array::from_fn(|e| (e as u8) & max));
    out.push(std::array::from_fn(|e| (31 - e as u8) & max));
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ bits as u64;
    for _ in 0..200 {
        out.push(std::array::from_fn(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8 & max
        }));
    }
    out
}

fn quant_spec(op: Op, bits: u32, scheme: Scheme, target: Target, tier: Tier) -> KernelSpec {
    KernelSpec::new(op, Format::quant(bits, 32, scheme).unwrap(), target, tier).unwrap()
}

/// The tiers to check: every tier of native (naga) and of chrome (Tint).
fn profiles() -> Vec<(Target, Tier)> {
    [Target::Native, Target::Chrome]
        .into_iter()
        .flat_map(|t| t.info().tiers.iter().map(move |&tier| (t, tier)))
        .collect()
}

#[test]
fn matvec_quads_decode_the_packed_codes() {
    let mut failures = Vec::new();
    for bits in Format::QUANT_BITS {
        for scheme in Scheme::ALL {
            for (target, tier) in profiles() {
                let spec = quant_spec(Op::Matvec, bits, scheme, target, tier);
                if spec.uses_dot4() {
                    // Integer dot products over the packed codes; the GPU tests check them.
                    continue;
                }
                let text = wgsl::emit(&spec).unwrap().text;
                let vt = if tier.shader_f16() { "vec4<f16>" } else { "vec4<f32>" };
                for q in 0..8usize {
                    let prefix = format!("let q{q} = {vt}(bytes4(");
                    let line = text
                        .lines()
                        .find(|l| l.trim_start().starts_with(&prefix))
                        .unwrap_or_else(|| panic!("{}: no `{prefix}` line", spec.name()));
                    let expr = parenthesized(line, "(bytes4(");
                    // Sym codes have the zero point subtracted once: per quad as a literal of
                    // the arithmetic type on f16 tiers, per block (z·Σx) on f32 tiers.
                    let z = spec.format.zero_point();
                    let zero = format!("- {vt}({z}.0{})", if tier.shader_f16() { "h" } else { "" });
                    let per_block = scheme == Scheme::Sym && !tier.shader_f16();
                    assert_eq!(
                        line.contains(&zero),
                        scheme == Scheme::Sym && !per_block,
                        "{}: q{q} line `{}` and zero point {z}",
                        spec.name(),
                        line.trim()
                    );
                    assert_eq!(
                        text.contains(&format!("(d - {z}.0 * xsum)")),
                        per_block,
                        "{}: the block's zero point term",
                        spec.name()
                    );
                    for codes in blocks(bits) {
                        let mut words = vec![0u32; bits as usize];
                        pack_block(bits, &codes, &mut words);
                        let vars: HashMap<String, u32> =
                            words.iter().enumerate().map(|(i, &w)| (format!("w{i}"), w)).collect();
                        let got = Eval::run(expr, &vars, &[]).to_le_bytes();
                        let want = &codes[4 * q..4 * q + 4];
                        if got != want {
                            failures.push(format!(
                                "{} ({target}): quad q{q} = `{expr}` gives codes {got:?} of block {codes:?} (words {words:08x?}), want {want:?}",
                                spec.name()
                            ));
                            break;
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} quads decode wrong codes; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

/// The single `return EXPR;` of function `signature` (`fn name(...) -> T {`) in `text`.
fn returned<'a>(text: &'a str, name: &str, signature: &str) -> &'a str {
    text.split(signature)
        .nth(1)
        .and_then(|body| body.trim_start().strip_prefix("return "))
        .and_then(|b| b.split(';').next())
        .unwrap_or_else(|| panic!("{name}: no `{signature} return ...; }}`"))
}

#[test]
fn matmul_quad_words_and_code_decode_the_packed_codes() {
    let mut failures = Vec::new();
    for bits in Format::QUANT_BITS {
        for (target, tier) in profiles() {
            let spec = quant_spec(Op::Matmul, bits, Scheme::Asym, target, tier);
            let text = wgsl::emit(&spec).unwrap().text;
            let name = spec.name();
            // `vec2<u32>(LO, HI)`: the words loaded a block ahead, then decoded from `lo`, `hi`.
            let words = returned(&text, &name, "fn quad_words(wb: u32, qq: u32) -> vec2<u32> {");
            let words = parenthesized(words, "vec2<u32>(");
            let mut depth = 0;
            let comma = words
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' | '[' => 1,
                        ')' | ']' => -1,
                        _ => 0,
                    };
                    c == ',' && depth == 0
                })
                .map(|(i, _)| i)
                .unwrap_or_else(|| panic!("{name}: quad_words is not two words"));
            let (lo, hi) = (&words[..comma], &words[comma + 1..]);
            let code = returned(&text, &name, "fn quad_code(lo: u32, hi: u32, qq: u32) -> u32 {");
            for codes in blocks(bits) {
                // The block sits at word 3 of a buffer padded with junk on both sides.
                let mut packed = vec![0u32; bits as usize];
                pack_block(bits, &codes, &mut packed);
                let buffer: Vec<u32> =
                    [0xa5a5_a5a5u32; 3].into_iter().chain(packed.iter().copied()).chain([0x5a5a_5a5a; 3]).collect();
                for qq in 0..8u32 {
                    let at = HashMap::from([("wb".to_string(), 3u32), ("qq".to_string(), qq)]);
                    let vars = HashMap::from([
                        ("lo".to_string(), Eval::run(lo, &at, &buffer)),
                        ("hi".to_string(), Eval::run(hi, &at, &buffer)),
                        ("qq".to_string(), qq),
                    ]);
                    let got = Eval::run(code, &vars, &[]).to_le_bytes();
                    let want = &codes[4 * qq as usize..4 * qq as usize + 4];
                    if got != want {
                        failures.push(format!(
                            "{name} ({target}): quad {qq} decodes to {got:?}, want {want:?} (block {codes:?})"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong quads; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

#[test]
fn matvec_f16_baseline_reads_word_pairs_in_order() {
    for (target, tier) in profiles() {
        let spec = KernelSpec::new(Op::Matvec, Format::f16(), target, tier).unwrap();
        let text = wgsl::emit(&spec).unwrap().text;
        // A block is 16 words, read as four vec4s from the block's first vec4.
        assert!(text.contains("let wb = (row * blocks + blk) * 4u;"), "{}: wb", spec.name());
        for j in 0..4 {
            assert!(text.contains(&format!("let v{j} = weights[wb + {j}u];")), "{}: v{j}", spec.name());
        }
        for i in 0..16 {
            let lane = ["x", "y", "z", "w"][i % 4];
            assert!(text.contains(&format!("let w{i} = v{}.{lane};", i / 4)), "{}: w{i}", spec.name());
        }
        for q in 0..8 {
            let line = text.lines().find(|l| l.trim_start().starts_with(&format!("let q{q} = "))).unwrap();
            let want = format!("unpack2x16float(w{}), unpack2x16float(w{})", 2 * q, 2 * q + 1);
            assert!(line.contains(&want), "{}: `{}` should read {want}", spec.name(), line.trim());
        }
    }
}

#[test]
fn the_interpreter_itself() {
    let vars = HashMap::from([("a".to_string(), 0xf0u32), ("e".to_string(), 9)]);
    assert_eq!(Eval::run("(a >> 4u) & 0x3u", &vars, &[]), 3);
    assert_eq!(Eval::run("a >> 4u & 0x3u | 8u", &vars, &[]), 11);
    assert_eq!(Eval::run("1u + 2u * 3u << 1u", &vars, &[]), 14);
    assert_eq!(Eval::run("weights[1u + e % 4u] ^ 1u", &vars, &[5, 6, 7]), 6);
    assert_eq!(Eval::run("((e / 4u) * 8u) % 5u", &vars, &[]), 1);
}
