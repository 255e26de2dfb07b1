//! docs/FORMAT.md and the codec must agree: the worked examples and the storage-cost table
//! are parsed out of the document and checked against the code.

use codegen::codec::{pack_block, unpack_block};
use codegen::{Format, Scheme};

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).expect("docs/FORMAT.md exists")
}

fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc.find(heading).unwrap_or_else(|| panic!("FORMAT.md has no `{heading}`"));
    let rest = &doc[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn worked_examples_match_the_codec() {
    let doc = doc();
    let examples = section(&doc, "## 10. Worked examples");
    let mut checked = 0;
    for line in examples.lines().filter(|l| l.starts_with("| ") && l.contains("`0x")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let bits: u32 = cells[1].parse().expect("bits cell");
        let words: Vec<u32> = cells[3]
            .trim_matches('`')
            .split_whitespace()
            .map(|w| u32::from_str_radix(w.trim_start_matches("0x"), 16).expect("hex word"))
            .collect();
        let codes: [u8; 32] = std::array::from_fn(|e| ((7 * e + 3) % (1 << bits)) as u8);
        let first8: Vec<u32> = cells[2].split_whitespace().map(|c| c.parse().unwrap()).collect();
        assert_eq!(first8, codes[..8].iter().map(|&c| c as u32).collect::<Vec<_>>(), "bits {bits}: codes column");
        let mut packed = vec![0u32; bits as usize];
        pack_block(bits, &codes, &mut packed);
        assert_eq!(packed, words, "bits {bits}: FORMAT.md words differ from the codec");
        assert_eq!(unpack_block(bits, &words), codes, "bits {bits}: unpacking the documented words");
        checked += 1;
    }
    assert_eq!(checked, 4, "one example per bit width");
}

#[test]
fn storage_cost_table_matches_bits_per_weight() {
    let doc = doc();
    let table = section(&doc, "## 9. Storage cost");
    let mut checked = 0;
    for line in table.lines().filter(|l| l.starts_with("| ") && l.as_bytes()[2].is_ascii_digit()) {
        let cells: Vec<&str> = line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        let bits: u32 = cells[0].parse().unwrap();
        for (i, (scheme, g)) in [
            (Scheme::Sym, 32),
            (Scheme::Sym, 64),
            (Scheme::Sym, 128),
            (Scheme::Asym, 32),
            (Scheme::Asym, 64),
            (Scheme::Asym, 128),
        ]
        .into_iter()
        .enumerate()
        {
            let want: f64 = cells[1 + i].parse().unwrap();
            assert_eq!(Format::quant(bits, g, scheme).unwrap().bits_per_weight(), want, "bits {bits} {scheme:?} g{g}");
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
}

#[test]
fn dequantization_examples_match_the_codec() {
    // §10: sym 4-bit, scale 0x3800 (0.5), code 3 -> -2.5; asym 2-bit, scale 1.0, min -2.0, code 3 -> 1.0.
    let f = Format::quant(4, 32, Scheme::Sym).unwrap();
    let w = codegen::Weights::from_codes(f, 1, 32, &[3; 32], &[0x3800], &[]);
    assert_eq!(w.value(0, 0), -2.5);
    let f = Format::quant(2, 32, Scheme::Asym).unwrap();
    let w = codegen::Weights::from_codes(f, 1, 32, &[3; 32], &[0x3c00], &[0xc000]);
    assert_eq!(w.value(0, 5), 1.0);
}
