//! Critical-path benchmark: for each node kind of the shipped cluster files,
//! what lies between first boot and joining (downloads, bytes, reboots) and
//! between joining and Ready (image pulls), on a stock image and on one made
//! by `hybrid bake`. Read off the rendered scripts themselves
//! (`bootstrap::critical_path`), so the figures move when the scripts do.
//!
//! `cargo bench --bench critical_path` prints a table. The goal it shows:
//! zero downloads and zero reboots before join on a baked Windows node.

use hybrid::bootstrap::critical_path;
use hybrid::bootstrap::pki::ClusterSecrets;
use hybrid::bootstrap::{Renderer, Templates};
use hybrid::config::load;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let secrets = ClusterSecrets::generate(&mut rand::rng(), std::time::SystemTime::now()).unwrap();
    println!(
        "{:<22} {:<14} {:>9} {:>9} {:>7} {:>6}   {:>9} {:>9} {:>7} {:>6}",
        "file / node", "", "downloads", "bytes", "reboots", "pulls", "downloads", "bytes", "reboots", "pulls"
    );
    println!("{:<22} {:<14} {:>42}   {:>34}", "", "", "stock image", "baked image");
    for file in ["clusters/dev.toml", "clusters/qa.toml"] {
        let spec = load(&std::fs::read_to_string(file).unwrap()).spec.unwrap();
        for node in Renderer::new(&spec, &Templates::builtin()).cluster(&secrets).unwrap() {
            let path = critical_path::of_node(&spec, &node).expect("every rendered node has a bootstrap script");
            let stock = path.totals(false);
            let label = if node.is_control_plane() { "(never baked)" } else { node.os.name() };
            // A control plane always boots a stock image: no baked figures.
            let baked = if node.is_control_plane() {
                format!("{:>9} {:>9} {:>7} {:>6}", "-", "-", "-", "-")
            } else {
                let b = path.totals(true);
                format!("{:>9} {:>9} {:>7} {:>6}", b.downloads, mib(b.bytes), b.reboots, b.image_pulls)
            };
            println!(
                "{:<22} {:<14} {:>9} {:>9} {:>7} {:>6}   {baked}",
                format!("{} {}", file.trim_start_matches("clusters/"), node.group),
                label,
                stock.downloads,
                mib(stock.bytes),
                stock.reboots,
                stock.image_pulls,
            );
        }
    }
}
