//! Tests of `#[kernel]`: compile errors (trybuild, `tests/ui/`) and what the expansion
//! gives and does at run time.

mod expansion;
mod ui;
