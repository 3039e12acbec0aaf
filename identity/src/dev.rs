//! The development issuer: an ES256 (P-256) signing key kept under `<data-dir>/identity/`, its
//! public half published as `jwks.json` beside it, and [`DevKeys::mint`] to sign tokens with
//! issuer [`DEV_ISSUER`] and audience [`DEV_AUDIENCE`]. `meshwork up` points the gateway's
//! `[auth]` at that JWKS; `meshwork token --sub alice --role admin` prints a token.
//!
//! The private key is a PKCS#8 PEM file readable by its owner only (mode 0600, in a 0700
//! directory), whatever the umask. A key file or folder found open to other users (made by an
//! older version, or by hand) is tightened to those modes on load, with a warning: the key may
//! have been read, and removing the folder makes a new one. The key id is the key's RFC 7638
//! thumbprint, so tokens name the key that signed them and a new key never reuses an old id.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA256, digest};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::jwks::Jwks;
use crate::jwt::{JwtConfig, JwtVerifier};
use crate::{b64url, check_roles, check_subject};

/// `iss` of the tokens [`DevKeys`] mints.
pub const DEV_ISSUER: &str = "meshwork-dev";
/// `aud` of the tokens [`DevKeys`] mints.
pub const DEV_AUDIENCE: &str = "meshwork";
/// The folder under the data directory.
pub const DEV_DIR: &str = "identity";
/// The private key's file name.
pub const DEV_KEY_FILE: &str = "dev-signing-key.pem";
/// The public JWKS file's name.
pub const DEV_JWKS_FILE: &str = "jwks.json";

/// Longest lifetime of a minted token.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why the development keys could not be loaded, made or used.
#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The key file exists but does not hold a P-256 PKCS#8 key.
    #[error("{path} is not a P-256 private key in PKCS#8 PEM form: {reason} (remove it to make a new key)")]
    BadKey {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The claims to sign break a rule (empty subject, bad role, zero or too long TTL).
    #[error("cannot mint a token: {0}")]
    Claims(String),
    /// The operating system gave no randomness, or signing failed.
    #[error("cannot sign: {0}")]
    Crypto(&'static str),
}

/// The development signing key and its JWKS.
#[derive(Debug)]
pub struct DevKeys {
    dir: PathBuf,
    key: EcdsaKeyPair,
    kid: String,
    jwks_json: String,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DevKeyError + '_ {
    move |source| DevKeyError::Io { path: path.display().to_string(), source }
}

impl DevKeys {
    /// Loads the key under `<data_dir>/identity/`, making it (and the folder) first if there is
    /// none, and (re)writes `jwks.json` when it does not match the key. Two processes starting
    /// at once end up with the same key: the key file is created exclusively, and the loser
    /// reads the winner's.
    pub fn load_or_create(data_dir: impl AsRef<Path>) -> Result<Self, DevKeyError> {
        let dir = data_dir.as_ref().join(DEV_DIR);
        create_private_dir(&dir)?;
        let key_path = dir.join(DEV_KEY_FILE);
        let rng = SystemRandom::new();
        let pkcs8 = match read_private(&key_path) {
            Ok(pem) => pem_decode(&pem).ok_or_else(|| DevKeyError::BadKey {
                path: key_path.display().to_string(),
                reason: "no -----BEGIN PRIVATE KEY----- block".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| DevKeyError::Crypto("no random bytes for a new key"))?;
                match write_new_private(&key_path, pem_encode(doc.as_ref()).as_bytes()) {
                    Ok(()) => doc.as_ref().to_vec(),
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let pem = read_complete(&key_path)?;
                        pem_decode(&pem).ok_or_else(|| DevKeyError::BadKey {
                            path: key_path.display().to_string(),
                            reason: "no -----BEGIN PRIVATE KEY----- block".into(),
                        })?
                    }
                    Err(e) => return Err(io_error(&key_path)(e)),
                }
            }
            Err(e) => return Err(io_error(&key_path)(e)),
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| DevKeyError::BadKey { path: key_path.display().to_string(), reason: e.to_string() })?;
        let point = key.public_key().as_ref();
        let (x, y) = (b64url(&point[1..33]), b64url(&point[33..65]));
        // RFC 7638: the members in lexicographic order, no spaces.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64url(digest(&SHA256, thumbprint.as_bytes()).as_ref());
        let jwks =
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": x, "y": y}]});
        let jwks_json = format!("{}\n", serde_json::to_string_pretty(&jwks).unwrap_or_default());
        let jwks_path = dir.join(DEV_JWKS_FILE);
        if fs::read_to_string(&jwks_path).ok().as_deref() != Some(jwks_json.as_str()) {
            write_atomically(&jwks_path, jwks_json.as_bytes())?;
        }
        Ok(Self { dir, key, kid, jwks_json })
    }

    /// The folder holding the key and the JWKS (`<data-dir>/identity`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `jwks.json`, for the gateway's `[auth] jwks`.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join(DEV_JWKS_FILE)
    }

    /// The key's id (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set.
    pub fn jwks(&self) -> Jwks {
        // Made from our own key just above; it always parses.
        Jwks::from_json(&self.jwks_json).unwrap_or_default()
    }

    /// A verifier of the tokens this key mints (issuer [`DEV_ISSUER`], audience
    /// [`DEV_AUDIENCE`], default leeway).
    pub fn verifier(&self) -> JwtVerifier {
        JwtVerifier::new(self.jwks(), JwtConfig::new(DEV_ISSUER, vec![DEV_AUDIENCE.to_string()]))
    }

    /// Mints a token for `subject` with `roles`, valid from now for `ttl`.
    pub fn mint(&self, subject: &str, roles: &[String], ttl: Duration) -> Result<String, DevKeyError> {
        self.mint_at(subject, roles, ttl, SystemTime::now())
    }

    /// Mints a token as [`DevKeys::mint`] does, as if the time were `now`.
    pub fn mint_at(
        &self,
        subject: &str,
        roles: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, DevKeyError> {
        check_subject(subject).map_err(|why| DevKeyError::Claims(why.to_string()))?;
        check_roles(roles).map_err(DevKeyError::Claims)?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(DevKeyError::Claims("the lifetime must be between 1 s and 366 days".into()));
        }
        let iat = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = json!({
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": subject,
            "roles": roles,
            "iat": iat,
            "nbf": iat,
            "exp": iat + ttl.as_secs().max(1),
        });
        self.sign(&claims)
    }

    /// Signs any claims object as an ES256 token with this key's `kid` (tests use it to make
    /// tokens with a wrong audience or issuer).
    pub fn sign(&self, claims: &Value) -> Result<String, DevKeyError> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signed = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let sig = self
            .key
            .sign(&SystemRandom::new(), signed.as_bytes())
            .map_err(|_| DevKeyError::Crypto("ECDSA signing failed"))?;
        Ok(format!("{signed}.{}", b64url(sig.as_ref())))
    }
}

/// Parses a token lifetime as `meshwork token --ttl` takes it: a number with a unit `s`, `m`,
/// `h` or `d` (`90s`, `15m`, `1h`, `7d`), or plain seconds; between 1 s and 366 days.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("\"{text}\": use a number with s, m, h or d, like 15m or 1h")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("\"{text}\": use a number with s, m, h or d, like 15m or 1h"))?;
    let ttl = Duration::from_secs(n.saturating_mul(scale));
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!("\"{text}\": the lifetime must be between 1 s and 366 days"));
    }
    Ok(ttl)
}

/// Makes `dir` (and its missing parents) with mode 0700 on Unix, or takes group and other
/// permissions away from an existing `dir`.
fn create_private_dir(dir: &Path) -> Result<(), DevKeyError> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir).map_err(io_error(dir))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
                tracing::warn!(
                    dir = %dir.display(),
                    was = format!("{mode:o}"),
                    "the signing key's folder was open to other users; made it 0700"
                );
            }
        }
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_error(dir))
}

/// Reads the private key file, first setting its mode to 0600 (on Unix) if group or others had
/// any permission on it. The mode is read and changed on the open file, so a file swapped in
/// between is not the one changed.
fn read_private(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = fs::File::open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            tracing::warn!(
                path = %path.display(),
                was = format!("{mode:o}"),
                "the signing key was readable by other users; made it 0600 (remove it to make a new key)"
            );
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// Creates `path` exclusively with mode 0600 (on Unix) and writes `bytes` to it. The content is
/// first written under a temporary name and then hard-linked into place, so that another
/// process never reads a half-written key.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_name(path);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    linked
}

/// Reads a file that another process may have just linked into place.
fn read_complete(path: &Path) -> Result<String, DevKeyError> {
    fs::read_to_string(path).map_err(io_error(path))
}

/// Replaces `path` with `bytes` (write to a temporary file, then rename). The file is public
/// (mode 0644 on Unix) but writable by its owner only, whatever the umask: the gateway trusts
/// the keys in it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DevKeyError> {
    let tmp = temp_name(path);
    // A leftover of a crashed process that had this pid would keep its own mode: remove it.
    let _ = fs::remove_file(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    let result = options.open(&tmp).and_then(|mut file| file.write_all(bytes)).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))
}

/// A temporary name beside `path`, unique to this process and call.
fn temp_name(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// PKCS#8 DER as a PEM `PRIVATE KEY` block.
fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// The DER of the first PEM `PRIVATE KEY` block.
fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = start + pem[start..].find("-----END PRIVATE KEY-----")?;
    let body: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, Method};
    use crate::jwt::JwtError;

    #[test]
    fn creates_once_then_loads_the_same_key() {
        let data = tempfile::tempdir().unwrap();
        let keys = DevKeys::load_or_create(data.path()).unwrap();
        let key_path = data.path().join("identity").join(DEV_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(fs::metadata(keys.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert!(fs::read_to_string(&key_path).unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = DevKeys::load_or_create(data.path()).unwrap();
        assert_eq!(again.kid(), keys.kid());
        // The JWKS on disk is rewritten if it goes missing, and it verifies minted tokens.
        fs::remove_file(keys.jwks_path()).unwrap();
        let again = DevKeys::load_or_create(data.path()).unwrap();
        let jwks = Jwks::from_file(again.jwks_path()).unwrap();
        assert_eq!(jwks.keys()[0].kid(), Some(keys.kid()));
        let token = keys.mint("alice", &["admin".into()], Duration::from_secs(3600)).unwrap();
        let verifier = JwtVerifier::new(jwks, JwtConfig::new(DEV_ISSUER, vec![DEV_AUDIENCE.into()]));
        let id = verifier.verify(&token, SystemTime::now()).unwrap();
        assert_eq!(id, Identity::new("alice", vec!["admin".into()], Method::Jwt));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_and_folder_open_to_others_are_tightened_on_load() {
        use std::os::unix::fs::PermissionsExt;
        let data = tempfile::tempdir().unwrap();
        let keys = DevKeys::load_or_create(data.path()).unwrap();
        let key_path = keys.dir().join(DEV_KEY_FILE);
        fs::set_permissions(keys.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
        let again = DevKeys::load_or_create(data.path()).unwrap();
        assert_eq!(again.kid(), keys.kid(), "the same key, not a new one");
        assert_eq!(fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(keys.dir()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn minted_tokens_expire() {
        let data = tempfile::tempdir().unwrap();
        let keys = DevKeys::load_or_create(data.path()).unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let token = keys.mint_at("bob", &[], Duration::from_secs(600), t0).unwrap();
        let v = keys.verifier();
        assert!(v.verify(&token, t0 + Duration::from_secs(660)).is_ok());
        assert!(matches!(v.verify(&token, t0 + Duration::from_secs(661)), Err(JwtError::Expired { .. })));
        assert!(matches!(v.verify(&token, t0 - Duration::from_secs(61)), Err(JwtError::NotYetValid { .. })));
        // Another data dir's key is another key.
        let other = DevKeys::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(other.kid(), keys.kid());
        assert!(matches!(other.verifier().verify(&token, t0), Err(JwtError::UnknownKid(_))));
    }

    #[test]
    fn refuses_bad_claims_and_bad_key_files() {
        let data = tempfile::tempdir().unwrap();
        let keys = DevKeys::load_or_create(data.path()).unwrap();
        assert!(keys.mint("", &[], Duration::from_secs(1)).is_err());
        assert!(keys.mint("a", &["b c".into()], Duration::from_secs(1)).is_err());
        assert!(keys.mint("a", &[], Duration::ZERO).is_err());
        let broken = tempfile::tempdir().unwrap();
        fs::create_dir_all(broken.path().join("identity")).unwrap();
        fs::write(broken.path().join("identity").join(DEV_KEY_FILE), "not a key").unwrap();
        let err = DevKeys::load_or_create(broken.path()).unwrap_err().to_string();
        assert!(err.contains(DEV_KEY_FILE) && err.contains("remove it"), "{err}");
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("600"), Ok(Duration::from_secs(600)));
        for bad in ["", "0", "0s", "h", "1w", "-1h", "1.5h", "400d", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn concurrent_creation_agrees_on_one_key() {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || DevKeys::load_or_create(&path).map(|k| k.kid().to_string()))
            })
            .collect();
        let kids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        assert!(kids.windows(2).all(|w| w[0] == w[1]), "{kids:?}");
    }
}
