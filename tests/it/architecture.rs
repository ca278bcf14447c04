//! The pure core must stay pure (DESIGN.md "Data flows one way"): these
//! modules may not reach for the file system, the network, processes, async
//! runtimes or cloud SDKs. I/O belongs in `commands` and `adapters`.

use std::fs;

use crate::util::root;

const PURE: &[&str] = &[
    "src/config",
    "src/model.rs",
    "src/net.rs",
    "src/diag.rs",
    "src/pki.rs",
    "src/bootstrap",
    "src/desired.rs",
    "src/plan.rs",
    "src/show.rs",
    "src/inventory.rs",
];
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::process",
    "TcpStream",
    "UdpSocket",
    "tokio",
    "aws_sdk",
    "aws_config",
    "aws_smithy",
    "kube::",
    "reqwest",
    "std::env",
    "println!",
    "eprintln!",
];

#[test]
fn pure_modules_do_no_io() {
    let mut files = Vec::new();
    for p in PURE {
        let path = root().join(p);
        if path.is_dir() {
            files.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "rs")));
        } else {
            files.push(path);
        }
    }
    assert!(files.len() >= 8, "the pure module list no longer matches the tree");
    let mut offences = Vec::new();
    for f in files {
        let src = fs::read_to_string(&f).unwrap();
        // Unit tests at the bottom of a file may do what they like.
        let code = src.split("#[cfg(test)]").next().unwrap();
        for word in FORBIDDEN {
            if code.contains(word) {
                offences.push(format!("{} uses {word}", f.display()));
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}
