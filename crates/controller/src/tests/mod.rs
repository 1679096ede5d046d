//! The controller's unit tests: one reconcile pass at a time against a
//! mocked API server (every request scripted and asserted) and the fake
//! node operations ([`crate::fake`]); the Lease tests are in
//! `tests/leader.rs`, a child of `crate::leader`.

pub(crate) mod api;
mod cleanup;
mod fixtures;
mod pass;
mod preflight;
mod steps;
