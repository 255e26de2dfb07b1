use macros::kernel;

#[kernel(bits = 3, group = 64, k = 100)]
pub struct Proj;

fn main() {}
