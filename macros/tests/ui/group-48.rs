use macros::kernel;

#[kernel(bits = 3, group = 48)]
pub struct Proj;

fn main() {}
