use macros::kernel;

#[kernel(bits = 3)]
pub fn proj() {}

#[kernel(bits = 3)]
pub enum Layer {
    Proj,
}

fn main() {}
