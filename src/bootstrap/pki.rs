//! Cluster secrets in pure code: the kubeadm cluster CA, the bootstrap token
//! and the `--discovery-token-ca-cert-hash` workers use to trust the API
//! server. Because hybrid makes the CA itself, it knows the hash before any
//! node boots and can render every node's bootstrap at once.
//!
//! Randomness and the clock are injected so tests are deterministic. The
//! secret parts never appear in `Debug` output.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::Rng;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sha2::{Digest, Sha256};

/// How long the cluster CA is valid: longer than any dev/QA cluster lives.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far the CA's validity starts before its creation: room for a user's
/// clock that runs ahead of EC2's (kubeadm itself allows five minutes).
const CA_BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the CA certificate is not a PEM X.509 certificate: {0}")]
    BadCert(String),
    #[error("the CA key is not a PEM private key: {0}")]
    BadKey(String),
    #[error("the CA key does not belong to the CA certificate")]
    KeyMismatch,
    #[error("the bootstrap token is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}")]
    BadToken,
    #[error("cannot create the cluster CA: {0}")]
    Generate(String),
}

/// A kubeadm bootstrap token, `<id>.<secret>`. The id is public (it names the
/// `bootstrap-token-<id>` Secret); the secret is not.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    pub fn parse(s: &str) -> Result<Self, PkiError> {
        let ok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        match s.split_once('.') {
            Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(Self { id: id.into(), secret: secret.into() }),
            _ => Err(PkiError::BadToken),
        }
    }

    pub fn generate(rng: &mut impl Rng) -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut pick = |n: usize| (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect::<String>();
        Self { id: pick(6), secret: pick(16) }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The full token as kubeadm wants it. Named so that every use is visible.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

/// Everything secret a cluster's bootstrap needs.
#[derive(Clone)]
pub struct ClusterSecrets {
    pub ca_cert_pem: String,
    ca_key_pem: String,
    pub token: BootstrapToken,
    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo, derived once.
    ca_cert_hash: String,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecrets").field("ca_cert_hash", &self.ca_cert_hash).field("token", &self.token).finish_non_exhaustive()
    }
}

impl ClusterSecrets {
    /// A new ECDSA P-256 CA (kubeadm `encryptionAlgorithm: ECDSA-P256`) and token.
    pub fn generate(rng: &mut impl Rng, now: SystemTime) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(|e| PkiError::Generate(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| PkiError::Generate(e.to_string()))?;
        params.distinguished_name.push(DnType::CommonName, "kubernetes");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        // Backdated, as kubeadm backdates its own CA (constants.go
        // CertificateBackdate): the CA is made on the user's machine, whose
        // clock may run ahead of the control plane's, and a CA that is not
        // valid yet fails every TLS handshake in the cluster.
        params.not_before = (now - CA_BACKDATE).into();
        params.not_after = (now + CA_VALIDITY).into();
        let mut serial = [0u8; 16];
        rng.fill(&mut serial);
        serial[0] &= 0x7f; // a positive INTEGER
        params.serial_number = Some(serial.to_vec().into());
        let cert = params.self_signed(&key).map_err(|e| PkiError::Generate(e.to_string()))?;
        Self::from_parts(&cert.pem(), &key.serialize_pem(), &BootstrapToken::generate(rng).expose())
    }

    /// Secrets loaded from storage; checks that the key belongs to the cert.
    pub fn from_parts(ca_cert_pem: &str, ca_key_pem: &str, token: &str) -> Result<Self, PkiError> {
        let token = BootstrapToken::parse(token.trim())?;
        let spki = cert_spki_der(ca_cert_pem)?;
        let key = KeyPair::from_pem(ca_key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        if rcgen::PublicKeyData::subject_public_key_info(&key) != spki {
            return Err(PkiError::KeyMismatch);
        }
        let digest = Sha256::digest(&spki);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { ca_cert_pem: ca_cert_pem.to_string(), ca_key_pem: ca_key_pem.to_string(), token, ca_cert_hash: format!("sha256:{hex}") })
    }

    /// `sha256:<hex>` for `kubeadm join --discovery-token-ca-cert-hash`.
    pub fn ca_cert_hash(&self) -> &str {
        &self.ca_cert_hash
    }

    /// The CA private key PEM. Only the control plane's bootstrap and the
    /// secret store see it.
    pub fn expose_ca_key_pem(&self) -> &str {
        &self.ca_key_pem
    }
}

impl ClusterSecrets {
    /// The stored form: one JSON document (see `desired::secrets_parameter_name`).
    pub fn to_stored(&self) -> String {
        serde_json::json!({ "ca_crt": self.ca_cert_pem, "ca_key": self.ca_key_pem, "token": self.token.expose() }).to_string()
    }

    pub fn from_stored(stored: &str) -> Result<Self, PkiError> {
        let v: serde_json::Value =
            serde_json::from_str(stored).map_err(|e| PkiError::BadCert(format!("stored secrets are not JSON: {e}")))?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Self::from_parts(&field("ca_crt"), &field("ca_key"), &field("token"))
    }
}

/// How long a minted admin certificate is valid: a working day, so a leaked
/// kubeconfig stops working soon; `hybrid kubeconfig` mints a fresh one.
pub const ADMIN_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// The group kubeadm (1.29+) binds to cluster-admin. Unlike system:masters it
/// can be unbound, so this is the least-privilege way to full admin.
pub const ADMIN_GROUP: &str = "kubeadm:cluster-admins";

/// A client certificate and key, both PEM.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCert(<redacted>)")
    }
}

impl ClusterSecrets {
    /// An admin client certificate signed by the cluster CA: no SSH to the
    /// control plane is needed to reach the API.
    pub fn mint_admin_cert(&self, user: &str, rng: &mut impl Rng, now: SystemTime) -> Result<ClientCert, PkiError> {
        let gen_err = |e: rcgen::Error| PkiError::Generate(e.to_string());
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key).map_err(|e| PkiError::BadCert(e.to_string()))?;
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params.distinguished_name.push(DnType::CommonName, user);
        params.distinguished_name.push(DnType::OrganizationName, ADMIN_GROUP);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // Allow for clock skew between this machine and the control plane.
        params.not_before = (now - Duration::from_secs(300)).into();
        params.not_after = (now + ADMIN_CERT_VALIDITY).into();
        let mut serial = [0u8; 16];
        rng.fill(&mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(serial.to_vec().into());
        let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
        Ok(ClientCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The DER bytes of the certificate's SubjectPublicKeyInfo: what kubeadm
/// hashes (not the whole certificate, not the bare key bits).
fn cert_spki_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c)
        .map_err(|e| PkiError::BadCert(format!("{e:?}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::BadCert(e.to_string()))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn tokens_have_kubeadm_format_and_hide_their_secret() {
        let t = BootstrapToken::generate(&mut StdRng::seed_from_u64(7));
        assert!(BootstrapToken::parse(&t.expose()).is_ok());
        assert!(!format!("{t:?}").contains(t.secret()));
        for bad in ["abcdef.0123456789abcdeF", "abcde.0123456789abcdef", "abcdef0123456789abcdef", "abcdef.0123456789abcde"] {
            assert!(BootstrapToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_secrets_round_trip_and_reject_a_foreign_key() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = ClusterSecrets::generate(&mut StdRng::seed_from_u64(1), now).unwrap();
        let again = ClusterSecrets::from_parts(&a.ca_cert_pem, a.expose_ca_key_pem(), &a.token.expose()).unwrap();
        assert_eq!(a.ca_cert_hash(), again.ca_cert_hash());
        assert_eq!(a.ca_cert_hash().len(), "sha256:".len() + 64);
        let b = ClusterSecrets::generate(&mut StdRng::seed_from_u64(2), now).unwrap();
        assert!(matches!(ClusterSecrets::from_parts(&a.ca_cert_pem, b.expose_ca_key_pem(), &a.token.expose()), Err(PkiError::KeyMismatch)));
        assert!(!format!("{a:?}").contains("PRIVATE KEY"));
        let stored = ClusterSecrets::from_stored(&a.to_stored()).unwrap();
        assert_eq!((stored.ca_cert_hash(), stored.token.expose()), (a.ca_cert_hash(), a.token.expose()));
    }
}
