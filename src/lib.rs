//! `hybrid` provisions hybrid Linux/Windows Kubernetes clusters on AWS from a
//! desired-state TOML file.
//!
//! Data flows one way: `config` turns a file into a `model::ClusterSpec`
//! (pure), later stages derive what to create from it, and only `commands`
//! (and, later, `adapters`) touch files, the terminal or the network. See
//! `shared/DESIGN.md` for the whole picture.

pub mod adapters;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod converge;
pub mod cost;
pub mod desired;
pub mod diag;
pub mod diagnostics;
pub mod error;
pub mod execute;
pub mod inventory;
pub mod kubeconfig;
pub mod model;
pub mod net;
pub mod pki;
pub mod plan;
pub mod show;
pub mod status;
pub mod verify;
