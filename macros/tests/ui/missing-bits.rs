use macros::kernel;

#[kernel(group = 64, op = matmul)]
pub struct Proj;

fn main() {}
