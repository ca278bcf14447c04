//! `hybrid render FILE --out DIR`: every node's user data on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::cluster::load_templates;
use super::validate::load_spec;
use super::{Ui, write_private};
use crate::bootstrap::{self, NodeBootstrap};
use crate::error::{Error, Result};
use crate::pki::ClusterSecrets;

pub fn render(ui: &Ui, file: &Path, out: &Path, secrets_dir: Option<&Path>, templates_dir: Option<&Path>) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let templates = load_templates(templates_dir)?;
    let secrets = match secrets_dir {
        Some(dir) => load_or_create_secrets(dir)?,
        None => {
            eprintln!("note: no --secrets folder given: rendering with throwaway secrets");
            new_secrets()?
        }
    };
    let rendered = bootstrap::render_cluster(&spec, &secrets, &templates)?;
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
    fs::write(&crt, secrets.ca_cert_pem.as_bytes()).map_err(|source| Error::Write { path: crt.clone(), source })?;
    write_private(&key, secrets.expose_ca_key_pem().as_bytes())?;
    write_private(&token, format!("{}\n", secrets.token.expose()).as_bytes())?;
    eprintln!("note: created new cluster secrets in {}", dir.display());
    Ok(secrets)
}

fn write_node(dir: &Path, node: &NodeBootstrap) -> Result<()> {
    write_dir(dir)?;
    // Private: user data holds the bootstrap token (and the CA key on the control plane).
    write_private(&dir.join("user-data"), &node.user_data)?;
    for (name, content) in &node.parts {
        write_private(&dir.join(name), content.as_bytes())?;
    }
    Ok(())
}

fn write_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}
