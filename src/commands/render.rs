//! `hybrid render FILE --out DIR`: every node's user data on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::shared::files::{Existing, load_spec, write_private};
use super::shared::prepare::load_templates;
use super::shared::terminal::Ui;
use crate::bootstrap::pki::ClusterSecrets;
use crate::bootstrap::{self, NodeBootstrap};
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(
    about = "Write every node's user data, and the files inside it, to a folder",
    long_about = "\
Write, for every node of the cluster, exactly what EC2 receives as user data (`user-data`), plus \
the readable files inside it (kubeadm config, CNI manifest, bootstrap script), so they can be read \
and diffed. Linux nodes get cloud-init, Windows nodes a <powershell> script.

The cluster CA (whose hash workers pin) comes from --secrets DIR; if DIR has none yet, new \
secrets are generated and saved there (mode 0600). The same file and secrets always render \
byte-identical output. Without --secrets the secrets are throwaway.

No rendered file holds a secret: the control plane reads the CA and its init token from SSM at \
boot, workers their join token. Windows nodes get their script without its comment lines (EC2's \
16 KiB limit); bootstrap.ps1 here keeps them.",
    after_help = "Exits 0 when every node rendered, 1 on an invalid file or a node over EC2's 16384-byte limit."
)]
pub struct Args {
    /// The desired-state file, e.g. clusters/dev.toml.
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    /// Folder to write into (created if missing; existing node folders are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Folder with ca.crt, ca.key and token; created with new secrets if empty.
    #[arg(long, value_name = "DIR")]
    pub secrets: Option<PathBuf>,
    /// Folder with template overrides (same names as templates/ in the source).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

pub fn run(ui: &Ui, args: &Args) -> Result<()> {
    let out = args.out.as_path();
    let spec = load_spec(ui, &args.file, &args.set)?;
    let templates = load_templates(args.templates.as_deref())?;
    let secrets = match args.secrets.as_deref() {
        Some(dir) => load_or_create_secrets(dir)?,
        None => {
            eprintln!("note: no --secrets folder given: rendering with throwaway secrets");
            new_secrets()?
        }
    };
    let rendered = bootstrap::Renderer::new(&spec, &templates).cluster(&secrets)?;
    write_dir(out)?;
    let mut nodes = 0;
    for node in &rendered {
        let count = if node.group == "control-plane" { 1 } else { spec.pools.iter().find(|p| p.name == node.group).map_or(0, |p| p.count) };
        for i in 0..count {
            let name = if node.group == "control-plane" { node.group.clone() } else { format!("{}-{i}", node.group) };
            write_node(&out.join(&name), node)?;
            nodes += 1;
        }
        println!(
            "{:<24} {:<14} {:>6} bytes{}",
            node.group,
            node.os.name(),
            node.user_data.len(),
            if node.compressed { " (gzip)" } else { "" }
        );
    }
    println!("wrote user data for {nodes} node(s) to {}", out.display());
    Ok(())
}

fn new_secrets() -> Result<ClusterSecrets> {
    ClusterSecrets::generate(&mut rand::rng(), SystemTime::now())
        .map_err(|source| Error::Secrets { dir: PathBuf::from("(memory)"), source })
}

fn load_or_create_secrets(dir: &Path) -> Result<ClusterSecrets> {
    let (crt, key, token) = (dir.join("ca.crt"), dir.join("ca.key"), dir.join("token"));
    if crt.exists() || key.exists() || token.exists() {
        let read = |p: &Path| fs::read_to_string(p).map_err(|source| Error::Read { path: p.to_path_buf(), source });
        return ClusterSecrets::from_parts(&read(&crt)?, &read(&key)?, &read(&token)?)
            .map_err(|source| Error::Secrets { dir: dir.to_path_buf(), source });
    }
    let secrets = new_secrets()?;
    write_dir(dir)?;
    write_private(&crt, secrets.ca_cert_pem.as_bytes(), Existing::ReplaceFileOrLink)?;
    write_private(&key, secrets.expose_ca_key_pem().as_bytes(), Existing::ReplaceFileOrLink)?;
    write_private(&token, format!("{}\n", secrets.token.expose()).as_bytes(), Existing::ReplaceFileOrLink)?;
    eprintln!("note: created new cluster secrets in {}", dir.display());
    Ok(secrets)
}

fn write_node(dir: &Path, node: &NodeBootstrap) -> Result<()> {
    write_dir(dir)?;
    // Private: user data holds the bootstrap token (and the CA key on the control plane).
    write_private(&dir.join("user-data"), &node.user_data, Existing::ReplaceFileOrLink)?;
    for (name, content) in &node.parts {
        write_private(&dir.join(name), content.as_bytes(), Existing::ReplaceFileOrLink)?;
    }
    Ok(())
}

/// Creates `dir`; a symbolic link there is refused (writing through it
/// would put user data and keys wherever it points).
fn write_dir(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Write {
            path: dir.to_path_buf(),
            source: std::io::Error::other(
                "is a symbolic link; hybrid does not write secrets through links: remove it or choose another --out",
            ),
        });
    }
    fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}
