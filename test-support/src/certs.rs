//! A throwaway PKI for TLS tests, made with rcgen: one CA, a server certificate for
//! `localhost` and `127.0.0.1`, a client certificate, all written as PEM files to a temporary
//! directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files (and their text) of a test PKI. The files go when this is dropped.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA certificate.
    pub ca: PathBuf,
    pub ca_pem: String,
    /// Server certificate (SANs `localhost`, `127.0.0.1`) and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// Client certificate (CN `meshwork-gateway`) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// The client certificate in DER, to compare with what a server saw.
    pub client_cert_der: Vec<u8>,
}

impl Pki {
    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to a file named `name` in the PKI's directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert.pem())
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String, Vec<u8>) {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// Makes a CA, a server and a client certificate and writes them to a temporary directory.
pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let (ca_params, ca_key, ca_pem) = ca("meshwork test CA");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let (server_cert_pem, server_key_pem, _) =
        leaf(&issuer, "localhost", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert_pem, client_key_pem, client_cert_der) =
        leaf(&issuer, "meshwork-gateway", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", &ca_pem),
        server_cert: write("server.pem", &server_cert_pem),
        server_key: write("server.key", &server_key_pem),
        client_cert: write("client.pem", &client_cert_pem),
        client_key: write("client.key", &client_key_pem),
        dir,
        ca_pem,
        server_cert_pem,
        server_key_pem,
        client_cert_pem,
        client_key_pem,
        client_cert_der,
    }
}

/// The PEM of a CA that signed nothing here (a client trusting only it trusts no test server).
pub fn unrelated_ca_pem() -> String {
    ca("some other CA").2
}
