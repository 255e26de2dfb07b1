use macros::kernel;

#[kernel(bits = 3, group = 64, bits = 4)]
pub struct Proj;

fn main() {}
