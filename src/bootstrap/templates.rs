//! The template set: the defaults compiled into the binary from
//! `templates/`, or a user's copies (`--templates DIR`, read by the command
//! layer and handed in as text). Rendering is strict: an undefined variable
//! or an unknown filter is an error that names the template.

use serde::Serialize;
use tera::Tera;

use super::error::BootstrapError;
use super::filters;

/// Every template hybrid renders, by name, with its built-in text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("linux/cloud-config.yaml", include_str!("../../templates/linux/cloud-config.yaml.tera")),
    ("linux/bootstrap.sh", include_str!("../../templates/linux/bootstrap.sh.tera")),
    ("linux/kubeadm-init.yaml", include_str!("../../templates/linux/kubeadm-init.yaml.tera")),
    ("linux/kubeadm-join.yaml", include_str!("../../templates/linux/kubeadm-join.yaml.tera")),
    ("linux/cni-calico.yaml", include_str!("../../templates/linux/cni-calico.yaml.tera")),
    ("linux/cni-flannel.yaml", include_str!("../../templates/linux/cni-flannel.yaml.tera")),
    ("linux/containerd.toml", include_str!("../../templates/linux/containerd.toml.tera")),
    ("linux/fetch-secrets.py", include_str!("../../templates/linux/fetch-secrets.py.tera")),
    ("windows/containerd.toml", include_str!("../../templates/windows/containerd.toml.tera")),
    ("windows/bootstrap.ps1", include_str!("../../templates/windows/bootstrap.ps1.tera")),
    ("windows/loader.ps1", include_str!("../../templates/windows/loader.ps1.tera")),
    ("windows/kubeadm-join.yaml", include_str!("../../templates/windows/kubeadm-join.yaml.tera")),
];

/// The file name of a template under `templates/` (or `--templates DIR`).
pub fn file_name(name: &str) -> String {
    format!("{name}.tera")
}

pub struct Templates {
    tera: Tera,
}

impl Templates {
    pub fn builtin() -> Self {
        Self::from_sources(BUILTIN.iter().map(|(n, t)| (n.to_string(), t.to_string()))).expect("built-in templates parse")
    }

    /// Templates from `(name, text)` pairs; names not given fall back to the
    /// built-in ones, so an override directory may hold just one file.
    pub fn from_sources(sources: impl IntoIterator<Item = (String, String)>) -> Result<Self, BootstrapError> {
        let mut all: std::collections::BTreeMap<String, String> = BUILTIN.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        all.extend(sources);
        let mut tera = Tera::default();
        // Nothing here is HTML: escaping is the quoting filters' job.
        tera.autoescape_on(vec![]);
        filters::register(&mut tera);
        for (name, text) in &all {
            tera.add_raw_template(name, text).map_err(|e| BootstrapError::Template { template: name.clone(), message: error_chain(&e) })?;
        }
        Ok(Self { tera })
    }

    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String, BootstrapError> {
        self.tera
            .render(name, &to_context(ctx))
            .map_err(|e| BootstrapError::Template { template: name.to_string(), message: error_chain(&e) })
    }
}

/// tera hides the useful part ("Variable `x` not found") in the source chain.
fn error_chain(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Serializes a context for tera. Contexts are plain structs; a failure here
/// is a bug.
fn to_context(value: &impl Serialize) -> tera::Context {
    tera::Context::from_serialize(value).expect("bootstrap contexts serialize to a JSON object")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_variables_are_errors_naming_the_template() {
        let t = Templates::from_sources([("linux/bootstrap.sh".to_string(), "{{ nope | sh }}".to_string())]).unwrap();
        let err = t.render("linux/bootstrap.sh", &serde_json::json!({})).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("linux/bootstrap.sh") && msg.contains("nope") && msg.contains("bug in hybrid"), "{msg}");
    }

    #[test]
    fn broken_override_is_reported_at_load() {
        let err = Templates::from_sources([("windows/bootstrap.ps1".to_string(), "{% if %}".to_string())]).err().unwrap();
        assert!(err.to_string().contains("windows/bootstrap.ps1"));
    }
}
