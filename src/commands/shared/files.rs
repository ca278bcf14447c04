//! Reading the cluster file (with its diagnostics on stderr, the same way
//! for every command) and writing files only their owner may read.

use std::path::Path;

use super::args::SetArgs;
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
pub fn load_spec(ui: &Ui, path: &Path, set: &SetArgs) -> Result<ClusterSpec> {
    let (source, origins) = read_with_sets(path, set)?;
    let file = path.display().to_string();
    let loaded = config::load(&source);
    let renderer = Renderer::new(ui.color);
    for d in &loaded.diagnostics {
        eprintln!("{}", renderer.render_in(&file, &source, &origins, d));
    }
    let (errors, warnings) = (loaded.errors().count(), loaded.warnings().count());
    loaded.spec.ok_or(Error::Invalid { file, errors, warnings })
}

/// The text a cluster file reads as with its `--set` flags: what a saved
/// plan records the digest of.
pub fn effective_source(path: &Path, set: &SetArgs) -> Result<String> {
    read_with_sets(path, set).map(|(text, _)| text)
}

/// The file's text with the `--set` flags applied, and where their values
/// went; a flag that cannot apply is a usage error naming it.
pub fn read_with_sets(path: &Path, set: &SetArgs) -> Result<(String, Vec<config::overrides::Origin>)> {
    let text = read_text(path)?;
    config::overrides::apply(&text, &set.sets)
        .map_err(|errors| Error::Usage(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))
}

/// What `write_private` does when its path already holds something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace a file or a link (the link itself, never its target):
    /// render's own output folder.
    ReplaceFileOrLink,
    /// Replace a regular file only (`--force` on a path the user names).
    ReplaceFile,
    /// Refuse, naming the flag that replaces it (`--force`).
    Refuse,
}

/// Writes a file only its owner can read (mode 0600 from its creation, so
/// never briefly readable by others): into a new temporary file beside
/// `path`, then renamed over it, so a reader never sees half a file and
/// nothing is ever written through a link. A device (`/dev/stdout`,
/// `/dev/null`) or a folder is never replaced, and a link only where
/// `existing` says, so no run can replace a system file or make it
/// unusable. For user data, keys, tokens and kubeconfigs.
pub fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> Result<()> {
    use std::io::Write;
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    if let Ok(m) = std::fs::symlink_metadata(path) {
        let kind = m.file_type();
        let allowed = match existing {
            Existing::ReplaceFileOrLink => kind.is_file() || kind.is_symlink(),
            Existing::ReplaceFile => kind.is_file(),
            Existing::Refuse => {
                if kind.is_file() {
                    return Err(Error::Failed(format!(
                        "{} exists; pass --force to replace it (or --merge to add to a kubeconfig)",
                        path.display()
                    )));
                }
                false
            }
        };
        if !allowed {
            return Err(Error::Failed(format!(
                "{}: not a regular file (a link, a device or a folder); hybrid writes only regular files (use `-o -` for standard output)",
                path.display()
            )));
        }
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.hybrid-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let mut options = std::fs::OpenOptions::new();
    // create_new: never an existing file or link (O_CREAT | O_EXCL).
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(err(e));
    }
    Ok(())
}
