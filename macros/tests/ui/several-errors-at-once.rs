use macros::kernel;

#[kernel(bits = 5, group = 48, op = transpose, scheme = sym, foo = 1, bits = 3)]
pub struct Proj;

fn main() {}
