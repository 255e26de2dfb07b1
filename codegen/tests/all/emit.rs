use codegen::{KernelSpec, Target, wgsl};

#[test]
fn every_default_kernel_of_every_target_validates() {
    let mut n = 0;
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t) {
            if let Err(e) = wgsl::emit(&spec) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(n > 0);
}
