use macros::kernel;

#[kernel(bits = 5, group = 64)]
pub struct Proj;

fn main() {}
