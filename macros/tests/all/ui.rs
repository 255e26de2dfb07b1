//! One file per diagnostic under `tests/ui/`, each with the `.stderr` it must produce.
//! Regenerate with `TRYBUILD=overwrite cargo test -p shadergen-macros`, then review the diff.

#[test]
fn compile_errors_point_at_the_argument() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
