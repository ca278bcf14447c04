//! Reading the cluster file (with its diagnostics on stderr, the same way
//! for every command) and writing files only their owner may read.

use std::path::Path;

use super::terminal::Ui;
use crate::config;
use crate::config::problems::Renderer;
use crate::error::{Error, Result};
use crate::model::ClusterSpec;

/// Reads and checks a cluster file, printing its diagnostics to stderr.
pub fn load_spec(ui: &Ui, path: &Path) -> Result<ClusterSpec> {
    let source = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
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
/// data, keys, tokens and kubeconfigs.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
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
