//! Reading the cluster file (with its diagnostics on stderr, the same way
//! for every command) and writing files only their owner may read.

use std::path::Path;

use super::terminal::Ui;
use crate::config;
use crate::config::problems::Renderer;
use crate::error::{Error, Result};
use crate::model::ClusterSpec;

/// A cluster file is a few kilobytes; anything past this is not one (and
/// `validate /dev/zero` must not read until memory runs out).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The file's text: at most `MAX_FILE_BYTES`, UTF-8, or an error that says
/// where it stops being text.
pub fn read_text(path: &Path) -> Result<String> {
    use std::io::Read;
    let err = |source| Error::Read { path: path.to_path_buf(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(err)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Failed(format!(
            "{}: larger than {} KiB; a cluster file is a few KB of TOML",
            path.display(),
            MAX_FILE_BYTES / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = at - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        Error::Failed(format!("{}:{line}:{column}: not UTF-8 text (byte offset {at}); save the file as UTF-8", path.display()))
    })
}

/// Reads and checks a cluster file, printing its diagnostics to stderr.
pub fn load_spec(ui: &Ui, path: &Path) -> Result<ClusterSpec> {
    let source = read_text(path)?;
    let file = path.display().to_string();
    let loaded = config::load(&source);
    let renderer = Renderer::new(ui.color);
    for d in &loaded.diagnostics {
        eprintln!("{}", renderer.render(&file, &source, d));
    }
    let (errors, warnings) = (loaded.errors().count(), loaded.warnings().count());
    loaded.spec.ok_or(Error::Invalid { file, errors, warnings })
}

/// Writes a file only its owner can read: created with mode 0600 (never
/// briefly world-readable), and tightened if it existed before. For user
/// data, keys, tokens and kubeconfigs. A symbolic link at `path` is
/// replaced, never written through (it could point anywhere).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // Refuse to follow a link that appears between the check and the open.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc_o_nofollow());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    f.write_all(bytes).map_err(err)
}

/// O_NOFOLLOW without a libc dependency (the same value on every Linux).
#[cfg(unix)]
fn libc_o_nofollow() -> i32 {
    if cfg!(target_os = "linux") { 0o400000 } else { 0x0100 }
}
