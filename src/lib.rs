//! `hybrid` provisions hybrid Linux/Windows Kubernetes clusters on AWS from a
//! desired-state TOML file.
//!
//! The folders are the stages, and data flows one way through them:
//! `config` turns a file into a `model::ClusterSpec`; `bootstrap` renders
//! every node's user data from it; `infra` derives what should exist in AWS,
//! plans it against what does and carries the plan out; `cluster` does the
//! same for the Kubernetes objects; `day2` holds the logic of the commands
//! for a running cluster. Only `adapters` (AWS, Kubernetes, SSH, the clock)
//! and `commands` (files, terminal) do I/O; `progress` is the seam through
//! which long stages report to the terminal. See the README's layout.

pub mod adapters;
pub mod bootstrap;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod day2;
pub mod error;
pub mod infra;
pub mod model;
pub mod progress;
pub mod retry;
pub mod versions;
