//! Who a TLS endpoint is: a certificate chain and its private key ([`TlsIdentity`]), what a
//! server (or, for mutual TLS, a client) presents, and for a server optionally the CA
//! certificates its clients' certificates must chain to. One reading and checking of PEM files
//! for every TLS user of the mesh (the services' listeners, the gateway's listener and its
//! upstream pools, the trace collector's receivers, the OTLP exporter): a file that cannot be
//! read, is not PEM, holds no certificate or one that does not parse, a key that does not belong
//! to its certificate, a CA rustls cannot trust, each is found when the identity is made, before
//! any port is bound, and reported with the file and what is wrong ([`TlsFileError`]), so that
//! callers can say `--tls-key server.key: ...` or `[tls] key = "server.key": ...`.
//!
//! rustls with `ring`, the one crypto provider the workspace compiles in (pingora-rustls, and
//! tonic's `tls-ring`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// What is wrong with one PEM file or text. The message says what, not which file: callers add
/// the flag, field or variable and the path.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The text is not PEM (a section without its end, bad base64).
    #[error("not a valid PEM file: {0}")]
    NotPem(pem::Error),
    /// The text holds no certificate.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    NoCertificate,
    /// A certificate (counted from 1) is not X.509 DER that parses.
    #[error("certificate {index} does not parse: {reason}")]
    BadCertificate {
        /// Its place in the file, from 1.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// A certificate (counted from 1) cannot be a trust anchor.
    #[error("certificate {index} is not a usable CA certificate: {reason}")]
    BadCaCertificate {
        /// Its place in the file, from 1.
        index: usize,
        /// What rustls said.
        reason: rustls::Error,
    },
    /// The text holds no private key.
    #[error("no PEM private key (-----BEGIN PRIVATE KEY-----) in it")]
    NoKey,
    /// The private key is not the one of the (leaf) certificate.
    #[error("the key does not belong to the certificate")]
    KeyMismatch,
    /// The private key is of a kind or algorithm rustls cannot sign with.
    #[error("unusable key: {0}")]
    UnusableKey(rustls::Error),
    /// The CA certificates cannot verify client certificates.
    #[error("cannot verify client certificates with it: {0}")]
    ClientVerifier(VerifierBuilderError),
}

/// Which file of a [`TlsIdentity`] a problem is with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
    /// The CA certificates client certificates must chain to.
    ClientCa,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Cert => "certificate",
            TlsFile::Key => "private key",
            TlsFile::ClientCa => "client CA",
        })
    }
}

/// Why [`TlsIdentity::from_pem`] refused its texts: which one, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct TlsIdentityError {
    /// The text with the problem.
    pub file: TlsFile,
    /// What is wrong with it.
    pub problem: PemError,
}

/// Why [`TlsIdentity::from_files`] refused its files: which one, its path, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file} {}: {problem}", path.display())]
pub struct TlsFileError {
    /// The file with the problem.
    pub file: TlsFile,
    /// Its path, as given.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: PemError,
}

/// The crypto provider of every TLS configuration made here.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(PemError::Read)
}

/// The certificates of a PEM text, at least one, each not yet parsed.
fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(PemError::NotPem)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// Checks that the `index`-th certificate (from 1) parses as X.509: Pingora parses certificates
/// with x509-parser and panics when one does not.
fn check_x509(index: usize, cert: &CertificateDer<'_>) -> Result<(), PemError> {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok(_) => Ok(()),
        Err(e) => Err(PemError::BadCertificate { index, reason: e.to_string() }),
    }
}

/// Returns every certificate of a PEM text: at least one, each a parsable X.509 certificate.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = pem_certs(pem)?;
    for (i, cert) in certs.iter().enumerate() {
        check_x509(i + 1, cert)?;
    }
    Ok(certs)
}

/// Returns the first private key of a PEM text (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(PemError::NoKey),
        Err(e) => Err(PemError::NotPem(e)),
    }
}

/// Returns the CA certificates of a PEM text as a root store: at least one, each one rustls can
/// trust (tonic drops an unusable one without a word, and handshakes fail later) and that parses
/// as X.509.
pub fn parse_roots(pem: &[u8]) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in pem_certs(pem)?.into_iter().enumerate() {
        roots.add(cert.clone()).map_err(|reason| PemError::BadCaCertificate { index: i + 1, reason })?;
        check_x509(i + 1, &cert)?;
    }
    Ok(roots)
}

/// Checks that `key` is usable and belongs to the leaf of `certs`, and returns them together.
pub fn check_identity(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, PemError> {
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => PemError::KeyMismatch,
        e => PemError::UnusableKey(e),
    })
}

/// A verifier that asks every client for a certificate chaining to `roots`.
fn client_verifier(roots: RootCertStore) -> Result<Arc<dyn ClientCertVerifier>, PemError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().map_err(PemError::ClientVerifier)
}

/// Makes the error of `file`, at `path`.
fn file_error(file: TlsFile, path: &Path) -> impl FnOnce(PemError) -> TlsFileError + '_ {
    move |problem| TlsFileError { file, path: path.to_path_buf(), problem }
}

/// A certificate chain and its private key, checked to belong together, and optionally the CA
/// certificates that clients' certificates must chain to (mutual TLS, for a server). Holds the
/// PEM texts (for tonic) and what rustls makes of them (for rustls and Pingora). `Debug` never
/// shows the key.
#[derive(Clone)]
pub struct TlsIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    certified_key: Arc<CertifiedKey>,
    key_der: Arc<PrivateKeyDer<'static>>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl TlsIdentity {
    /// Checks PEM texts and returns the identity: `cert_pem` a certificate chain, leaf first;
    /// `key_pem` the leaf's private key (PKCS#8, PKCS#1 or SEC1); `client_ca_pem` CA
    /// certificates that, when given, clients must present a certificate signed by.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        client_ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, TlsIdentityError> {
        let fail = |file| move |problem| TlsIdentityError { file, problem };
        let certs = parse_certs(&cert_pem).map_err(fail(TlsFile::Cert))?;
        let key = parse_key(&key_pem).map_err(fail(TlsFile::Key))?;
        let key_der = key.clone_key();
        let certified_key = check_identity(certs, key).map_err(fail(TlsFile::Key))?;
        let client_verifier = match &client_ca_pem {
            Some(pem) => {
                let roots = parse_roots(pem).map_err(fail(TlsFile::ClientCa))?;
                Some(client_verifier(roots).map_err(fail(TlsFile::ClientCa))?)
            }
            None => None,
        };
        Ok(Self {
            cert_pem,
            key_pem,
            client_ca_pem,
            certified_key: Arc::new(certified_key),
            key_der: Arc::new(key_der),
            client_verifier,
        })
    }

    /// Reads and checks the files of an identity (see [`TlsIdentity::from_pem`]); an error
    /// names the file, its path and what is wrong with it.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsFileError> {
        let cert_pem = read_pem(cert).map_err(file_error(TlsFile::Cert, cert))?;
        let key_pem = read_pem(key).map_err(file_error(TlsFile::Key, key))?;
        let client_ca_pem = client_ca.map(|ca| read_pem(ca).map_err(file_error(TlsFile::ClientCa, ca))).transpose()?;
        Self::from_pem(cert_pem, key_pem, client_ca_pem).map_err(|TlsIdentityError { file, problem }| {
            let path = match file {
                TlsFile::Cert => cert,
                TlsFile::Key => key,
                // `from_pem` finds fault only with a client CA it was given: the empty path is
                // never used.
                TlsFile::ClientCa => client_ca.unwrap_or(Path::new("")),
            };
            file_error(file, path)(problem)
        })
    }

    /// Returns the certificate chain as PEM, leaf first.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// Returns the private key as PEM.
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    /// Returns the client CA certificates as PEM, when clients must present a certificate.
    pub fn client_ca_pem(&self) -> Option<&[u8]> {
        self.client_ca_pem.as_deref()
    }

    /// Returns the certificate chain, DER, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.certified_key.cert
    }

    /// Returns the private key, DER.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key_der
    }

    /// Returns the chain with its signing key, for a rustls certificate resolver.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified_key.clone()
    }

    /// Returns the verifier of client certificates (against the client CA), when there is one.
    pub fn client_verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.client_verifier.clone()
    }
}

impl fmt::Debug for TlsIdentity {
    // Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certs", &self.certified_key.cert.len())
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Identities are equal when their PEM texts are.
impl PartialEq for TlsIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.cert_pem == other.cert_pem && self.key_pem == other.key_pem && self.client_ca_pem == other.client_ca_pem
    }
}

impl Eq for TlsIdentity {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and its key, as PEM.
    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CA certificate, as PEM.
    fn ca() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()
    }

    /// A PEM certificate section whose DER is not a certificate.
    const NOT_DER: &str = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

    /// Files of one identity in a temporary directory, each replaceable by a test.
    struct Files {
        dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let (cert_pem, key_pem) = self_signed();
            let (cert, key, ca) =
                (dir.path().join("server.pem"), dir.path().join("server.key"), dir.path().join("ca.pem"));
            std::fs::write(&cert, cert_pem).unwrap();
            std::fs::write(&key, key_pem).unwrap();
            std::fs::write(&ca, self::ca()).unwrap();
            Files { dir, cert, key, ca }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        /// Loads the identity, with the client CA, with `file` replaced by `path`.
        fn load_with(&self, file: TlsFile, path: &Path) -> Result<TlsIdentity, TlsFileError> {
            let pick = |f: TlsFile, own: &Path| if f == file { path.to_path_buf() } else { own.to_path_buf() };
            let (cert, key, ca) =
                (pick(TlsFile::Cert, &self.cert), pick(TlsFile::Key, &self.key), pick(TlsFile::ClientCa, &self.ca));
            TlsIdentity::from_files(&cert, &key, Some(&ca))
        }

        /// The error of loading with `file` replaced by a file holding `text`; checks that it
        /// names that file and its path.
        fn error_with(&self, file: TlsFile, text: &str) -> PemError {
            let path = self.write("replaced.pem", text);
            let error = self.load_with(file, &path).unwrap_err();
            assert_eq!((error.file, error.path.as_path()), (file, path.as_path()), "{error}");
            error.problem
        }
    }

    #[test]
    fn good_files_make_an_identity_whose_debug_shows_no_key() {
        let files = Files::new();
        let identity = TlsIdentity::from_files(&files.cert, &files.key, None).unwrap();
        assert_eq!(identity.cert_pem(), std::fs::read(&files.cert).unwrap());
        assert_eq!(identity.key_pem(), std::fs::read(&files.key).unwrap());
        assert_eq!(identity.cert_chain().len(), 1);
        assert_eq!(identity.certified_key().cert.len(), 1);
        assert!(identity.client_ca_pem().is_none() && identity.client_verifier().is_none());
        assert_eq!(format!("{identity:?}"), "TlsIdentity { certs: 1, client_ca: false, .. }");

        let mutual = TlsIdentity::from_files(&files.cert, &files.key, Some(&files.ca)).unwrap();
        assert!(mutual.client_ca_pem().is_some() && mutual.client_verifier().is_some());
        assert_ne!(mutual, identity);
        let debug = format!("{mutual:?}");
        let key_pem = String::from_utf8(mutual.key_pem().to_vec()).unwrap();
        let key_body = key_pem.lines().nth(1).unwrap();
        assert!(!debug.contains(key_body) && !debug.contains("PRIVATE"), "{debug}");
        assert_eq!(debug, "TlsIdentity { certs: 1, client_ca: true, .. }");

        let same = TlsIdentity::from_pem(
            mutual.cert_pem().to_vec(),
            mutual.key_pem().to_vec(),
            mutual.client_ca_pem().map(<[u8]>::to_vec),
        )
        .unwrap();
        assert_eq!(same, mutual);
        assert_eq!(same.private_key().secret_der(), mutual.private_key().secret_der());
    }

    #[test]
    fn a_missing_file_cannot_be_read() {
        let files = Files::new();
        let missing = files.dir.path().join("missing.pem");
        for file in [TlsFile::Cert, TlsFile::Key, TlsFile::ClientCa] {
            let error = files.load_with(file, &missing).unwrap_err();
            assert_eq!((error.file, &error.path), (file, &missing));
            assert!(matches!(error.problem, PemError::Read(_)), "{error}");
        }
        let error = files.load_with(TlsFile::Key, &missing).unwrap_err().to_string();
        assert!(error.starts_with(&format!("private key {}: cannot read: ", missing.display())), "{error}");
    }

    #[test]
    fn a_file_that_is_not_pem_says_so() {
        let files = Files::new();
        let unterminated = "-----BEGIN CERTIFICATE-----\nbm90\n";
        let problem = files.error_with(TlsFile::Cert, unterminated);
        assert!(matches!(problem, PemError::NotPem(_)), "{problem}");
        assert!(problem.to_string().starts_with("not a valid PEM file: "), "{problem}");
        let problem = files.error_with(TlsFile::Key, "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n");
        assert!(matches!(problem, PemError::NotPem(_)), "{problem}");
    }

    #[test]
    fn a_certificate_file_without_certificates_says_so() {
        let files = Files::new();
        let key_pem = std::fs::read_to_string(&files.key).unwrap();
        for text in ["this is not a certificate\n", "", key_pem.as_str()] {
            let problem = files.error_with(TlsFile::Cert, text);
            assert!(matches!(problem, PemError::NoCertificate), "{problem}");
            assert_eq!(problem.to_string(), "no PEM certificate (-----BEGIN CERTIFICATE-----) in it");
        }
        let problem = files.error_with(TlsFile::ClientCa, "this is not a certificate\n");
        assert!(matches!(problem, PemError::NoCertificate), "{problem}");
    }

    #[test]
    fn a_certificate_that_does_not_parse_is_named_by_its_place() {
        let files = Files::new();
        let problem = files.error_with(TlsFile::Cert, NOT_DER);
        assert!(matches!(problem, PemError::BadCertificate { index: 1, .. }), "{problem}");
        assert!(problem.to_string().starts_with("certificate 1 does not parse: "), "{problem}");
        let chain = format!("{}{NOT_DER}", std::fs::read_to_string(&files.cert).unwrap());
        let problem = files.error_with(TlsFile::Cert, &chain);
        assert!(matches!(problem, PemError::BadCertificate { index: 2, .. }), "{problem}");
    }

    #[test]
    fn a_key_file_without_a_key_says_so() {
        let files = Files::new();
        let cert_pem = std::fs::read_to_string(&files.cert).unwrap();
        for text in ["this is not a key\n", cert_pem.as_str()] {
            let problem = files.error_with(TlsFile::Key, text);
            assert!(matches!(problem, PemError::NoKey), "{problem}");
            assert_eq!(problem.to_string(), "no PEM private key (-----BEGIN PRIVATE KEY-----) in it");
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let files = Files::new();
        let problem = files.error_with(TlsFile::Key, &self_signed().1);
        assert!(matches!(problem, PemError::KeyMismatch), "{problem}");
        assert_eq!(problem.to_string(), "the key does not belong to the certificate");
    }

    #[test]
    fn a_key_rustls_cannot_load_is_unusable() {
        let files = Files::new();
        let problem =
            files.error_with(TlsFile::Key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
        assert!(matches!(problem, PemError::UnusableKey(_)), "{problem}");
        assert!(problem.to_string().starts_with("unusable key: "), "{problem}");
    }

    #[test]
    fn a_client_ca_rustls_cannot_trust_is_refused() {
        let files = Files::new();
        let problem =
            files.error_with(TlsFile::ClientCa, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(matches!(problem, PemError::BadCaCertificate { index: 1, .. }), "{problem}");
        assert!(problem.to_string().starts_with("certificate 1 is not a usable CA certificate: "), "{problem}");
    }

    #[test]
    fn pem_texts_are_checked_as_files_are() {
        let (cert, key) = self_signed();
        let (other_cert, _) = self_signed();
        let error = TlsIdentity::from_pem(other_cert.into_bytes(), key.clone().into_bytes(), None).unwrap_err();
        assert!(matches!(error, TlsIdentityError { file: TlsFile::Key, problem: PemError::KeyMismatch }));
        assert_eq!(error.to_string(), "private key: the key does not belong to the certificate");
        let error = TlsIdentity::from_pem(cert.into_bytes(), key.into_bytes(), Some(b"garbage".to_vec())).unwrap_err();
        assert!(matches!(error, TlsIdentityError { file: TlsFile::ClientCa, problem: PemError::NoCertificate }));
    }

    #[test]
    fn the_helpers_read_chains_keys_and_roots() {
        let (cert, key) = self_signed();
        let chain = format!("{cert}{}", ca());
        assert_eq!(parse_certs(chain.as_bytes()).unwrap().len(), 2);
        assert_eq!(parse_roots(chain.as_bytes()).unwrap().len(), 2);
        let certs = parse_certs(cert.as_bytes()).unwrap();
        let certified = check_identity(certs, parse_key(key.as_bytes()).unwrap()).unwrap();
        assert_eq!(certified.cert.len(), 1);
        assert!(matches!(read_pem(Path::new("/nonexistent/meshwork.pem")), Err(PemError::Read(_))));
    }
}
