//! The CA hash hybrid computes must be the one kubeadm computes; openssl's
//! pipeline from the kubeadm docs is the reference.

use std::fs;
use std::process::Command;
use std::time::{Duration, SystemTime};

use hybrid::bootstrap::pki::ClusterSecrets;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn openssl_ca_hash(cert_pem: &str) -> String {
    let dir = crate::util::scratch("pki");
    let path = dir.join("ca.crt");
    fs::write(&path, cert_pem).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der | sha256sum", path.display()))
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap())
}

#[test]
fn ca_hash_matches_openssl() {
    for seed in 0..3 {
        let s = ClusterSecrets::generate(&mut StdRng::seed_from_u64(seed), SystemTime::now()).unwrap();
        assert_eq!(s.ca_cert_hash(), openssl_ca_hash(&s.ca_cert_pem));
    }
    let fixture = crate::render::test_secrets();
    assert_eq!(fixture.ca_cert_hash(), openssl_ca_hash(&fixture.ca_cert_pem));
}

#[test]
fn generated_ca_is_a_ca_openssl_accepts() {
    let now = SystemTime::now();
    let s = ClusterSecrets::generate(&mut StdRng::seed_from_u64(9), now).unwrap();
    let dir = crate::util::scratch("pki-ca");
    fs::write(dir.join("ca.crt"), &s.ca_cert_pem).unwrap();
    let out = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(dir.join("ca.crt")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Subject: CN=kubernetes") || text.contains("Subject: CN = kubernetes"), "{text}");
    assert!(text.contains("prime256v1") || text.contains("P-256"), "{text}");
    // Valid for ten years from `now`.
    let later = now + Duration::from_secs(9 * 365 * 24 * 3600);
    let secs = later.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let check = Command::new("openssl")
        .args(["x509", "-noout", "-checkend"])
        .arg((secs - now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()).to_string())
        .arg("-in")
        .arg(dir.join("ca.crt"))
        .output()
        .unwrap();
    assert!(check.status.success(), "the CA expires within nine years");
}

/// A control plane whose clock is behind the machine that made the CA (a
/// laptop running fast) must still find the CA valid: openssl verifies it
/// as of half an hour before it was made.
#[test]
fn the_ca_is_valid_on_a_control_plane_whose_clock_is_behind() {
    let now = SystemTime::now();
    let s = ClusterSecrets::generate(&mut StdRng::seed_from_u64(11), now).unwrap();
    let dir = crate::util::scratch("pki-skew");
    fs::write(dir.join("ca.crt"), &s.ca_cert_pem).unwrap();
    let verify_at = |t: SystemTime| {
        let epoch = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs().to_string();
        let out = Command::new("openssl")
            .args(["verify", "-attime", &epoch, "-CAfile"])
            .arg(dir.join("ca.crt"))
            .arg(dir.join("ca.crt"))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, said) = verify_at(now - Duration::from_secs(1800));
    assert!(ok, "a clock 30 minutes behind: {said}");
    // The check can fail: a day before, the CA is not valid yet.
    let (ok, said) = verify_at(now - Duration::from_secs(24 * 3600));
    assert!(!ok && said.contains("not yet valid"), "{said}");
}
