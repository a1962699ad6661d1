//! The load generator (filled in with the benchmarks).
fn main() {}
