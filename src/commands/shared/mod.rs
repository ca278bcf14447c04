//! What several commands share, by topic: flag groups (`args`), reading
//! the file and writing private files (`files`), reaching AWS and the API
//! server (`connect`), preparing a plan
//! (`prepare`), checking pinned downloads and images (`pins`) and the terminal (`terminal`: colour, questions, progress).

pub mod args;
pub mod connect;
pub mod files;
pub mod pins;
pub mod prepare;
pub mod terminal;
