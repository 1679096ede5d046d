//! Rollout benchmark (work in progress).

fn main() {}
