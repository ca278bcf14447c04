//! Render benchmark: all user data for a 1,000-node cluster.
//!
//! `cargo bench --bench render` prints wall time and peak memory (VmHWM).
//! Two measures: per pool (what `apply` does: nodes of a pool share their
//! user data) and per node (1,000 separate renders, the worst case).

use std::time::Instant;

use hybrid::bootstrap::pki::ClusterSecrets;
use hybrid::bootstrap::{Renderer, Templates};
use hybrid::config::load;

fn main() {
    let mut toml = String::from(
        "[cluster]\nname = \"bench\"\nregion = \"us-east-1\"\nkubernetes_version = \"1.36\"\n\
         [network]\nvpc_cidr = \"10.0.0.0/16\"\nsubnet_cidr = \"10.0.0.0/20\"\npod_cidr = \"10.128.0.0/9\"\n\
         [control_plane]\ninstance_type = \"m6i.2xlarge\"\n",
    );
    let pools = 10;
    for i in 0..pools {
        let os = if i % 2 == 0 { "linux" } else { "windows-2022" };
        toml.push_str(&format!(
            "[[pool]]\nname = \"pool-{i}\"\nos = \"{os}\"\ninstance_type = \"m6i.xlarge\"\ncount = 100\n\
             labels = {{ \"game.example.com/pool\" = \"p{i}\", \"game.example.com/tier\" = \"bench\" }}\n"
        ));
    }
    let loaded = load(&toml);
    let spec = loaded.spec.unwrap_or_else(|| panic!("bench spec invalid: {:?}", loaded.diagnostics));
    assert_eq!(spec.node_count(), 1001);
    let secrets = ClusterSecrets::generate(&mut rand::rng(), std::time::SystemTime::now()).unwrap();
    let templates = Templates::builtin();

    let runs = 5;
    let mut best_pool = f64::MAX;
    let mut best_node = f64::MAX;
    let mut best_plan = f64::MAX;
    let mut bytes = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Renderer::new(&spec, &templates).cluster(&secrets).unwrap();
        best_pool = best_pool.min(t.elapsed().as_secs_f64());
        assert_eq!(out.len(), pools + 1);

        let t = Instant::now();
        bytes = 0;
        let renderer = Renderer::new(&spec, &templates);
        for pool in &spec.pools {
            for _ in 0..pool.count {
                bytes += renderer.pool(pool, &secrets).unwrap().user_data.len();
            }
        }
        best_node = best_node.min(t.elapsed().as_secs_f64());

        // Everything one plan renders: the bootstraps, each pool's
        // fingerprint and each pool's bake script, from one Renderer.
        let t = Instant::now();
        let renderer = Renderer::new(&spec, &templates);
        renderer.cluster(&secrets).unwrap();
        renderer.fingerprints().unwrap();
        for pool in &spec.pools {
            renderer.bake(pool).unwrap();
        }
        best_plan = best_plan.min(t.elapsed().as_secs_f64());
    }
    println!("render, 1,000 worker nodes + control plane, best of {runs}:");
    println!("  per pool (as apply renders): {:>8.2} ms", best_pool * 1e3);
    println!("  per node (1,000 renders):    {:>8.2} ms  ({:.1} MB of user data)", best_node * 1e3, bytes as f64 / 1e6);
    println!("  a plan's renders (bootstraps, fingerprints, bakes): {:>8.2} ms", best_plan * 1e3);
    println!("  peak memory (VmHWM):         {}", peak_memory());
}

fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l["VmHWM:".len()..].trim().to_string()))
        .unwrap_or_else(|| "unknown (no /proc)".into())
}
