//! The AWS side, as a pipeline of plain data: `desired` (what the spec asks
//! for in EC2 and SSM) and `inventory` (what discovery found) meet in `plan`
//! (Terraform-style `changes` with reasons; its network part, which of
//! several resources found stay and which go, is `network`), which `show`
//! turns into text or JSON and `execute` carries out through the
//! `adapters::Cloud` trait.
//!
//! Everything here but `execute` is pure. `execute` does no I/O of its own
//! either: every effect goes through the trait (and its waits through
//! `tokio::time`), so it runs against an in-memory fake as well as AWS.

pub mod bake;
pub mod changes;
pub mod desired;
pub mod execute;
pub mod images;
pub mod inventory;
pub mod network;
pub mod plan;
pub mod show;
