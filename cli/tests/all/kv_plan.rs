//! `shadergen kv-plan`: the numbers, checked against FORMAT.md §11.6's formula written out
//! here (not codegen's code), its JSON, and its errors.

use crate::common::{assert_status, shadergen, stderr, stdout};
use serde_json::Value;

/// One plan, computed by hand from §11.6: per token and layer `2·H·(D·bits/8 + 4·D/G)`
/// bytes, an f16 cache `2·H·D·2`, a fixed window `2·H·R·D·2`; the context is the largest
/// even number of tokens that fits with the window.
#[derive(Debug, Clone, Copy)]
struct Case {
    layers: u64,
    kv_heads: u64,
    head_dim: u64,
    bits: u64,
    group: u64,
    window: u64,
    /// Exactly as passed to --budget-mb.
    budget_mb: &'static str,
    /// The same in bytes, written out.
    budget: u64,
}

struct Hand {
    per_token: u64,
    per_layer: u64,
    window: u64,
    fp16_per_token: u64,
    context: u64,
    fp16_context: u64,
}

impl Case {
    fn hand(&self) -> Hand {
        let (h, d) = (self.kv_heads, self.head_dim);
        let per_layer = 2 * h * (d * self.bits / 8 + 4 * d / self.group);
        let per_token = self.layers * per_layer;
        let window = self.layers * 2 * h * self.window * d * 2;
        let fp16_per_token = self.layers * 2 * h * d * 2;
        let fit = (self.budget - window) / per_token;
        Hand {
            per_token,
            per_layer,
            window,
            fp16_per_token,
            context: fit / 2 * 2,
            fp16_context: self.budget / fp16_per_token,
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["kv-plan".into()];
        for (flag, value) in [
            ("--layers", self.layers.to_string()),
            ("--kv-heads", self.kv_heads.to_string()),
            ("--head-dim", self.head_dim.to_string()),
            ("--bits", self.bits.to_string()),
            ("--group", self.group.to_string()),
            ("--window", self.window.to_string()),
            ("--budget-mb", self.budget_mb.to_string()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args
    }

    fn json(&self) -> Value {
        let mut args = self.args();
        args.push("--json".into());
        let out = shadergen(&args);
        assert_status(&out, 0);
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(&out)))
    }

    fn text(&self) -> String {
        let out = shadergen(&self.args());
        assert_status(&out, 0);
        assert_eq!(stderr(&out), "");
        stdout(&out)
    }
}

/// Llama-3-8B-like: 32 layers, 8 KV heads, head_dim 128, 2-bit codes in groups of 32.
const LLAMA_Q2G32: Case = Case {
    layers: 32,
    kv_heads: 8,
    head_dim: 128,
    bits: 2,
    group: 32,
    window: 0,
    budget_mb: "8000",
    budget: 8_000_000_000,
};

/// The value after `label:` on its line of the text output.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}:");
    text.lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{label}:` line in:\n{text}"))
        .trim()
}

#[test]
fn llama_2_bit_group_32_by_hand() {
    // Per token and layer: 2·8·(128·2/8 + 4·128/32) = 2·8·(32 + 16) = 768 bytes;
    // f16: 2·8·128·2 = 4096; ratio 4096/768 = 5.333.
    let hand = LLAMA_Q2G32.hand();
    assert_eq!(hand.per_layer, 768);
    assert_eq!(hand.per_token, 24_576);
    assert_eq!(hand.fp16_per_token, 131_072);
    // 8e9 / 24576 = 325520.8; 8e9 / 131072 = 61035.2.
    assert_eq!((hand.context, hand.fp16_context), (325_520, 61_035));

    let text = LLAMA_Q2G32.text();
    assert!(text.starts_with("KV cache: 32 layers x 8 KV heads x head_dim 128, q2g32a"), "{text}");
    assert!(line(&text, "budget").starts_with("8000 MB = 8000000000 bytes (1 MB = 1000000 bytes)"), "{text}");
    assert!(line(&text, "per token").starts_with("24576 bytes (768 per layer"), "{text}");
    assert!(line(&text, "per token").contains("f16: 131072 (4096 per layer)"), "{text}");
    assert!(line(&text, "window").starts_with("0 bytes"), "{text}");
    assert!(line(&text, "context").starts_with("325520 tokens"), "{text}");
    assert!(line(&text, "context").contains(&format!("take {} bytes", 325_520u64 * 24_576)), "{text}");
    assert_eq!(line(&text, "f16 context"), "61035 tokens");
    assert_eq!(line(&text, "multiplier"), "5.333x the f16 context (325520 / 61035 tokens)");
    assert_eq!(line(&text, "asymptotic"), "5.333x (f16 / quantized bytes per token: 131072 / 24576)");
    let why = text.lines().find(|l| l.starts_with("Not 8x:")).unwrap_or_else(|| panic!("no `Not 8x:` in:\n{text}"));
    assert!(why.contains("32/32 = 1 bit per element"), "{why}");
    assert!(why.contains("3 bits, 16/3 = 5.333x"), "{why}");
}

#[test]
fn group_128_is_7_1x() {
    // 2·8·(32 + 4·128/128) = 576 bytes per token and layer: 4096/576 = 7.111.
    let case = Case { group: 128, ..LLAMA_Q2G32 };
    let hand = case.hand();
    assert_eq!(hand.per_layer, 576);
    let json = case.json();
    assert_eq!(json["bytes_per_token"], 576 * 32);
    assert_eq!(json["bytes_per_token_per_layer"], 576);
    let ratio = json["asymptotic_ratio"].as_f64().unwrap();
    assert!((ratio - 4096.0 / 576.0).abs() < 1e-12, "{ratio}");
    assert_eq!(json["bits_per_element"], 2.25);
    let why = case.text();
    assert!(why.contains("Not 8x:") && why.contains("32/128 = 0.25 bit per element"), "{why}");
    assert!(why.contains("16/2.25 = 7.111x"), "{why}");
}

#[test]
fn odd_fit_rounds_down_to_even_with_a_window() {
    // 24 layers x 4 heads x D 64, 3 bits, group 64, window 64, 1234.5 MB:
    // per layer 2·4·(24 + 4) = 224 bytes, x24 = 5376; window 24·2·4·64·64·2 = 1572864;
    // (1234500000 − 1572864) / 5376 = 229339.9 → 229339, odd → 229338.
    let case = Case {
        layers: 24,
        kv_heads: 4,
        head_dim: 64,
        bits: 3,
        group: 64,
        window: 64,
        budget_mb: "1234.5",
        budget: 1_234_500_000,
    };
    let hand = case.hand();
    assert_eq!((hand.per_token, hand.window, hand.fp16_per_token), (5376, 1_572_864, 24_576));
    assert_eq!((hand.context, hand.fp16_context), (229_338, 50_231));
    let json = case.json();
    assert_eq!(json["budget_bytes"], 1_234_500_000u64);
    assert_eq!(json["window_bytes"], 1_572_864);
    assert_eq!(json["context_tokens"], 229_338);
    assert_eq!(json["fp16_context_tokens"], 50_231);
    assert_eq!(json["used_bytes"], 1_572_864 + 229_338 * 5376);
    assert!((json["multiplier"].as_f64().unwrap() - 229_338.0 / 50_231.0).abs() < 1e-12);
    let text = case.text();
    assert!(text.contains("lower this budget's multiplier further"), "{text}");
    assert!(text.starts_with("Not 5.333x:") || text.contains("\nNot 5.333x:"), "{text}");
}

#[test]
fn many_cases_match_the_hand_formula() {
    let mut checked = 0;
    for (layers, kv_heads) in [(1, 1), (32, 8), (80, 8), (28, 4)] {
        for head_dim in [64, 128] {
            for bits in [2, 3, 4, 8] {
                for group in [32, 64, 128].into_iter().filter(|&g| g <= head_dim) {
                    for window in [0, 32, 128] {
                        let case = Case {
                            layers,
                            kv_heads,
                            head_dim,
                            bits,
                            group,
                            window,
                            budget_mb: "24000.000001",
                            budget: 24_000_000_001,
                        };
                        let hand = case.hand();
                        let json = case.json();
                        let got = |key: &str| json[key].as_u64().unwrap_or_else(|| panic!("{key} in {json}"));
                        let what = format!("{case:?}");
                        assert_eq!(got("bytes_per_token"), hand.per_token, "{what}");
                        assert_eq!(got("window_bytes"), hand.window, "{what}");
                        assert_eq!(got("fp16_bytes_per_token"), hand.fp16_per_token, "{what}");
                        assert_eq!(got("context_tokens"), hand.context, "{what}");
                        assert_eq!(got("fp16_context_tokens"), hand.fp16_context, "{what}");
                        assert_eq!(json["scheme"], "asym");
                        let ratio = hand.fp16_per_token as f64 / hand.per_token as f64;
                        assert!((json["asymptotic_ratio"].as_f64().unwrap() - ratio).abs() < 1e-12, "{what}");
                        // 16 / (bits + 32/G): the same ratio from the format alone.
                        assert!((ratio - 16.0 / (bits as f64 + 32.0 / group as f64)).abs() < 1e-12, "{what}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * (4 * (2 + 3)) * 3);
}

#[test]
fn json_has_every_field() {
    let json = LLAMA_Q2G32.json();
    let expected = serde_json::json!({
        "layers": 32,
        "kv_heads": 8,
        "head_dim": 128,
        "bits": 2,
        "group": 32,
        "scheme": "asym",
        "format": "q2g32a",
        "window": 0,
        "budget_mb": 8000.0,
        "budget_bytes": 8_000_000_000u64,
        "bytes_per_token": 24_576,
        "bytes_per_token_per_layer": 768,
        "window_bytes": 0,
        "context_tokens": 325_520,
        "used_bytes": 325_520u64 * 24_576,
        "fp16_bytes_per_token": 131_072,
        "fp16_context_tokens": 61_035,
        "multiplier": 325_520.0 / 61_035.0,
        "asymptotic_ratio": 131_072.0 / 24_576.0,
        "bits_per_element": 3.0,
    });
    assert_eq!(json, expected);
}

#[test]
fn a_budget_no_f16_token_fits_has_no_multiplier() {
    // 1 layer x 1 head x D 64, 2 bits, group 64: 2·(16 + 4) = 40 bytes per token, f16 256.
    // 100 bytes: 2 quantized tokens, no f16 token.
    let case =
        Case { layers: 1, kv_heads: 1, head_dim: 64, bits: 2, group: 64, window: 0, budget_mb: "0.0001", budget: 100 };
    let json = case.json();
    assert_eq!(json["context_tokens"], 2);
    assert_eq!(json["fp16_context_tokens"], 0);
    assert_eq!(json["multiplier"], Value::Null);
    assert!(line(&case.text(), "multiplier").starts_with("none"));
}

/// Runs kv-plan with the Llama case's arguments, `replace`d; expects status 2 and a message
/// containing each of `expected`, on stderr only.
fn rejects(replace: &[(&str, &str)], expected: &[&str]) {
    let mut args = LLAMA_Q2G32.args();
    for (flag, value) in replace {
        let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag}"));
        args[i + 1] = value.to_string();
    }
    let out = shadergen(&args);
    assert_status(&out, 2);
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "stderr: {err}");
    for e in expected {
        assert!(err.contains(e), "stderr does not mention {e:?}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn bad_format_values_are_rejected() {
    rejects(&[("--bits", "5")], &["`5`", "2, 3, 4 or 8"]);
    rejects(&[("--bits", "16")], &["`16`", "2, 3, 4 or 8"]);
    rejects(&[("--group", "48")], &["`48`", "32, 64 or 128"]);
    rejects(&[("--head-dim", "96")], &["`96`", "64 or 128"]);
    rejects(&[("--head-dim", "64"), ("--group", "128")], &["group 128", "head_dim 64"]);
}

#[test]
fn zero_layers_or_heads_are_rejected() {
    rejects(&[("--layers", "0")], &["layers must be at least 1"]);
    rejects(&[("--kv-heads", "0")], &["kv_heads must be at least 1"]);
}

#[test]
fn budget_too_small_is_rejected() {
    // The smallest cache is 2 tokens (max_seq is even): 2 · 24576 = 49152 bytes.
    rejects(&[("--budget-mb", "0.049151")], &["0.049151", "49151 bytes", "49152 bytes"]);
    let out = shadergen(&{
        let mut a = LLAMA_Q2G32.args();
        *a.last_mut().unwrap() = "0.049152".into();
        a.push("--json".into());
        a
    });
    assert_status(&out, 0);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["context_tokens"], 2);
}

#[test]
fn window_that_leaves_nothing_is_rejected() {
    // Window 128: 32 · 2·8·128·128·2 = 16777216 bytes, over a 10 MB budget.
    rejects(&[("--window", "128"), ("--budget-mb", "10")], &["10", "16777216", "window of 128 tokens"]);
    // 17 MB holds the window but not 128 store tokens behind it (16777216 + 128 · 24576).
    rejects(
        &[("--window", "128"), ("--budget-mb", "17")],
        &["max_seq 128", &(16_777_216u64 + 128 * 24_576).to_string()],
    );
    // An absurd window does not overflow anything.
    rejects(&[("--window", "4294967295"), ("--kv-heads", "4294967295")], &["window of 4294967295 tokens"]);
}

#[test]
fn non_numeric_and_malformed_values_are_rejected() {
    rejects(&[("--layers", "abc")], &["'abc'", "--layers", "whole number"]);
    rejects(&[("--window", "-1")], &["--window"]);
    rejects(&[("--budget-mb", "8GB")], &["'8GB'", "MB"]);
    rejects(&[("--budget-mb", "0")], &["'0'", "positive"]);
    rejects(&[("--budget-mb", "1.0000001")], &["six decimals"]);
    rejects(&[("--budget-mb", "1e3")], &["'1e3'"]);
    rejects(&[("--budget-mb", "99999999999999999999")], &["1000000000000"]);
    let out = shadergen(&["kv-plan", "--layers", "32"]);
    assert_status(&out, 2);
    assert!(stderr(&out).contains("--kv-heads"), "{}", stderr(&out));
}

#[test]
fn help_names_the_unit() {
    let out = shadergen(&["kv-plan", "--help"]);
    assert_status(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("1 MB = 1,000,000 bytes"), "{text}");
    for opt in ["--layers", "--kv-heads", "--head-dim", "--bits", "--group", "--window", "--budget-mb", "--json"] {
        assert!(text.contains(opt), "{opt} missing:\n{text}");
    }
}
