fn main() {
    use codegen::*;
    for t in Target::ALL {
        for spec in KernelSpec::default_set(t).into_iter().filter(|s| s.op.is_kv()) {
            if let Err(e) = wgsl::emit(&spec) {
                println!("{t} {}: {e}", spec.name());
                std::process::exit(1);
            }
        }
    }
    let spec =
        KernelSpec::kv(Op::KvAttend, Format::quant(3, 32, Scheme::Asym).unwrap(), 128, Target::Chrome, Tier::Base)
            .unwrap();
    println!("{}", wgsl::emit(&spec).unwrap().text);
}
