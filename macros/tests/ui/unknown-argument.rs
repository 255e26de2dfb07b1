use macros::kernel;

#[kernel(bits = 3, foo = 1)]
pub struct Proj;

fn main() {}
