//! What can go wrong while rendering a bootstrap. A leaf module, so the
//! renderer's parts (`context`, `templates`) report through it without
//! importing the module that uses them.

/// EC2's limit on user data, in bytes before base64 (WINDOWS-NOTES §2.1).
pub const USER_DATA_LIMIT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootstrapError {
    #[error(
        "template `{template}` failed to render: {message}\nThis is a bug in hybrid, or in the template \
         directory given with --templates."
    )]
    Template { template: String, message: String },
    #[error(
        "user data for {node} is {size} bytes{how}, over EC2's limit of {USER_DATA_LIMIT} bytes; \
         use fewer or shorter labels and taints{hint}"
    )]
    TooLarge { node: String, size: usize, how: &'static str, hint: &'static str },
    #[error("the control plane's private IP is unknown: set control_plane.private_ip")]
    NoApiServerIp,
    #[error(
        "the script for pool {pool} contains `{tag}`, which EC2's launch agent would read as the end \
         of the script; remove it from labels, taints and names"
    )]
    AgentTagInScript { pool: String, tag: String },
}
