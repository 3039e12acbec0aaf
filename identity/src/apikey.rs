//! API keys: `mwk_` followed by 32 random base62 characters (about 190 bits), stored only as
//! their SHA-256 hash beside the subject and roles they stand for.
//!
//! The key file is TOML (or JSON when its name ends in `.json`):
//!
//! ```toml
//! [[keys]]
//! hash = "3f0a...64 hex digits"   # SHA-256 of the whole key, mwk_ included
//! subject = "ci-bot"
//! roles = ["deployer"]
//! ```
//!
//! [`generate`] makes a key and its entry; the plaintext is shown once and never stored. A
//! presented key is hashed and compared with every entry in constant time, so the time taken
//! says nothing about how close a guess was.

use std::path::Path;

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::identity::{Identity, Method};
use crate::{check_roles, check_subject};

/// What every meshwork API key starts with.
pub const API_KEY_PREFIX: &str = "mwk_";
/// Random base62 characters after the prefix in a generated key.
pub const API_KEY_RANDOM_LEN: usize = 32;
/// Longest key accepted (prefix included).
const MAX_KEY_LEN: usize = 128;
/// Largest key file read, in bytes.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// One key of the key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// SHA-256 of the key, 64 hexadecimal digits.
    pub hash: String,
    /// Who calls with this key.
    pub subject: String,
    /// The key's roles. Default none.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The key file: a list of entries under `keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyFile {
    /// Every key.
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
}

/// Why a key file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is larger than 4 MiB.
    #[error("{path} is larger than 4 MiB")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The text is not a key file.
    #[error("not an API key file ([[keys]] with hash, subject, roles): {0}")]
    Parse(String),
    /// An entry breaks a rule.
    #[error("key {index} (subject \"{subject}\"): {reason}")]
    Entry {
        /// Position of the entry, from 0.
        index: usize,
        /// Its subject as written.
        subject: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a presented key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// The key does not look like a meshwork API key.
    #[error("malformed API key: expected mwk_ followed by letters and digits")]
    Malformed,
    /// No entry of the key file has this key's hash.
    #[error("unknown API key")]
    Unknown,
}

impl ApiKeyError {
    /// A short, stable name of the reason, for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiKeyError::Malformed => "malformed_api_key",
            ApiKeyError::Unknown => "unknown_api_key",
        }
    }
}

/// The hash of `key` as stored in the key file: SHA-256, lower-case hex.
pub fn hash_key(key: &str) -> String {
    digest(&SHA256, key.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a new API key for `subject` with `roles`: the plaintext (show it once) and the entry
/// to store. Fails only when the subject or a role breaks the rules, or the operating system
/// has no randomness to give.
pub fn generate(subject: &str, roles: &[String]) -> Result<(String, ApiKeyEntry), ApiKeyFileError> {
    let entry_error = |reason: String| ApiKeyFileError::Entry { index: 0, subject: subject.to_string(), reason };
    check_subject(subject).map_err(|why| entry_error(why.to_string()))?;
    check_roles(roles).map_err(entry_error)?;
    let rng = SystemRandom::new();
    let mut key = String::with_capacity(API_KEY_PREFIX.len() + API_KEY_RANDOM_LEN);
    key.push_str(API_KEY_PREFIX);
    let mut buf = [0u8; 64];
    while key.len() < API_KEY_PREFIX.len() + API_KEY_RANDOM_LEN {
        rng.fill(&mut buf).map_err(|_| entry_error("the operating system gave no random bytes".into()))?;
        // Rejection sampling keeps every character equally likely (248 = 4 * 62).
        for b in buf.iter().filter(|b| **b < 248) {
            if key.len() == API_KEY_PREFIX.len() + API_KEY_RANDOM_LEN {
                break;
            }
            key.push(char::from(BASE62[usize::from(*b % 62)]));
        }
    }
    let entry = ApiKeyEntry { hash: hash_key(&key), subject: subject.to_string(), roles: roles.to_vec() };
    Ok((key, entry))
}

/// The loaded key file, ready to check keys.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    entries: Vec<([u8; 32], ApiKeyEntry)>,
}

impl ApiKeys {
    /// Checks `entries` (hashes are 64 hex digits and unique, subjects and roles follow the
    /// rules) and keeps them.
    pub fn from_entries(entries: Vec<ApiKeyEntry>) -> Result<Self, ApiKeyFileError> {
        let mut out: Vec<([u8; 32], ApiKeyEntry)> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let error = |reason: String| ApiKeyFileError::Entry {
                index,
                subject: entry.subject.escape_debug().to_string(),
                reason,
            };
            let hash = parse_hex32(&entry.hash).ok_or_else(|| error("hash must be 64 hexadecimal digits".into()))?;
            check_subject(&entry.subject).map_err(|why| error(why.to_string()))?;
            check_roles(&entry.roles).map_err(error)?;
            if out.iter().any(|(h, _)| *h == hash) {
                return Err(error("the same hash is listed twice".into()));
            }
            out.push((hash, entry));
        }
        Ok(Self { entries: out })
    }

    /// Parses a key file's text: JSON when `json`, else TOML.
    pub fn parse(text: &str, json: bool) -> Result<Self, ApiKeyFileError> {
        let file: ApiKeyFile = if json {
            serde_json::from_str(text).map_err(|e| ApiKeyFileError::Parse(e.to_string()))?
        } else {
            toml::from_str(text)
                .map_err(|e| ApiKeyFileError::Parse(e.message().split_whitespace().collect::<Vec<_>>().join(" ")))?
        };
        Self::from_entries(file.keys)
    }

    /// Reads a key file: JSON when its name ends in `.json`, else TOML.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ApiKeyFileError> {
        let path = path.as_ref();
        let shown = || path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ApiKeyFileError::Read { path: shown(), source })?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(ApiKeyFileError::TooLarge { path: shown() });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ApiKeyFileError::Read { path: shown(), source })?;
        let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, json)
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks a presented key and returns the identity it stands for.
    pub fn verify(&self, key: &str) -> Result<Identity, ApiKeyError> {
        let random = key.strip_prefix(API_KEY_PREFIX).ok_or(ApiKeyError::Malformed)?;
        if random.is_empty() || key.len() > MAX_KEY_LEN || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiKeyError::Malformed);
        }
        let presented = digest(&SHA256, key.as_bytes());
        // Every entry is compared, with no early exit.
        let mut found = None;
        for (hash, entry) in &self.entries {
            if bool::from(hash.as_slice().ct_eq(presented.as_ref())) {
                found = Some(entry);
            }
        }
        let entry = found.ok_or(ApiKeyError::Unknown)?;
        Ok(Identity::new(entry.subject.clone(), entry.roles.clone(), Method::ApiKey))
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_verify_and_others_do_not() {
        let (key, entry) = generate("ci-bot", &["deployer".to_string()]).unwrap();
        assert!(key.starts_with("mwk_") && key.len() == 4 + API_KEY_RANDOM_LEN, "{key}");
        assert!(key[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(entry.hash, hash_key(&key));
        assert!(!entry.hash.contains(&key[4..]));
        let (other_key, other) = generate("alice", &[]).unwrap();
        assert_ne!(key, other_key);
        let keys = ApiKeys::from_entries(vec![entry, other]).unwrap();
        let id = keys.verify(&key).unwrap();
        assert_eq!(id, Identity::new("ci-bot", vec!["deployer".into()], Method::ApiKey));
        assert_eq!(keys.verify(&other_key).unwrap().subject, "alice");

        let mut wrong = key.clone();
        wrong.pop();
        wrong.push(if key.ends_with('a') { 'b' } else { 'a' });
        assert_eq!(keys.verify(&wrong), Err(ApiKeyError::Unknown));
        assert_eq!(keys.verify("mwk_"), Err(ApiKeyError::Malformed));
        assert_eq!(keys.verify(&key[4..]), Err(ApiKeyError::Malformed));
        assert_eq!(keys.verify("mwk_abc def"), Err(ApiKeyError::Malformed));
        assert_eq!(keys.verify(&format!("mwk_{}", "a".repeat(200))), Err(ApiKeyError::Malformed));
        assert_eq!(keys.verify("mwk_é"), Err(ApiKeyError::Malformed));
    }

    #[test]
    fn key_files_in_toml_and_json() {
        let (key, entry) = generate("ci-bot", &["deployer".to_string(), "admin".to_string()]).unwrap();
        let toml_text = toml::to_string(&ApiKeyFile { keys: vec![entry.clone()] }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("keys.toml");
        std::fs::write(&toml_path, &toml_text).unwrap();
        assert_eq!(ApiKeys::from_file(&toml_path).unwrap().verify(&key).unwrap().roles, ["deployer", "admin"]);
        let json_path = dir.path().join("keys.JSON");
        std::fs::write(&json_path, serde_json::to_string(&ApiKeyFile { keys: vec![entry] }).unwrap()).unwrap();
        assert_eq!(ApiKeys::from_file(&json_path).unwrap().verify(&key).unwrap().subject, "ci-bot");
        // Upper-case hex is fine.
        let upper = format!("[[keys]]\nhash = \"{}\"\nsubject = \"x\"\n", hash_key(&key).to_uppercase());
        assert!(ApiKeys::parse(&upper, false).unwrap().verify(&key).is_ok());
    }

    #[test]
    fn bad_key_files_are_refused_with_the_reason() {
        let hash = "ab".repeat(32);
        let err = |text: &str| ApiKeys::parse(text, false).unwrap_err().to_string();
        assert!(err("[[keys]]\nhash = \"abc\"\nsubject = \"x\"\n").contains("64 hexadecimal digits"));
        assert!(err(&format!("[[keys]]\nhash = \"{hash}\"\nsubject = \"\"\n")).contains("subject"));
        assert!(err(&format!("[[keys]]\nhash = \"{hash}\"\nsubject = \"x\"\nroles = [\"a b\"]\n")).contains("role"));
        let twice =
            format!("[[keys]]\nhash = \"{hash}\"\nsubject = \"x\"\n[[keys]]\nhash = \"{hash}\"\nsubject = \"y\"\n");
        assert!(err(&twice).contains("key 1 (subject \"y\"): the same hash"));
        assert!(
            err(&format!("[[keys]]\nhash = \"{hash}\"\nsubject = \"x\"\nplaintext = \"mwk_x\"\n"))
                .contains("unknown field")
        );
        assert!(
            ApiKeys::from_file("/nonexistent/keys.toml").unwrap_err().to_string().contains("/nonexistent/keys.toml")
        );
        assert!(generate("", &[]).is_err());
        assert!(generate("x", &["no spaces".into()]).is_err());
    }
}
