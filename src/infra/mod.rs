//! The AWS side, as a pipeline of plain data: `desired` (what the spec asks
//! for in EC2 and SSM) and `inventory` (what discovery found) meet in `plan`
//! (Terraform-style `changes` with reasons; its network part, which of
//! several resources found stay and which go, is `network`), which `show`
//! turns into text or JSON (and `saved` into a plan file apply can carry
//! out later, as Terraform's) and `execute` carries out through the
//! `adapters::Cloud` trait, under the cluster `lock` that keeps two runs
//! of one cluster apart.
//!
//! Everything here but `execute`, `bake` and `lock` is pure. Those do no
//! I/O of their own either: every effect goes through the trait (and their
//! waits through `tokio::time`), so they run against an in-memory fake as
//! well as AWS.

pub mod bake;
pub mod changes;
pub mod desired;
pub mod execute;
pub mod images;
pub mod inventory;
pub mod lock;
pub mod network;
pub mod plan;
pub mod saved;
pub mod show;
