//! Day-2 logic for a running cluster, pure: the `status` table, the hourly
//! `cost` estimate, the `verify` steps, and which `node_logs` to collect
//! from a node. The commands of the same names do the I/O.

pub mod cost;
pub mod list;
pub mod node_logs;
pub mod status;
pub mod timeline;
pub mod verify;
