//! The verified identity and its wire form: one metadata entry, `meshwork-identity`, whose value
//! is the unpadded base64url encoding of a small JSON object
//! (`{"v":1,"sub":"alice","roles":["admin"],"method":"jwt"}`). base64url keeps the value a valid
//! header whatever the subject holds, JSON keeps it unambiguous, and [`Identity::decode`] checks
//! every field and never panics, whatever bytes it is given.

use serde::{Deserialize, Serialize};

use crate::{b64url, b64url_decode, check_roles, check_subject};

/// The metadata key that carries the verified identity from the gateway to the services.
pub const IDENTITY_HEADER: &str = "meshwork-identity";

/// Longest encoded identity accepted, in bytes.
pub const MAX_ENCODED_LEN: usize = 8 * 1024;

/// The wire format's version.
const VERSION: u32 = 1;

/// How the gateway verified the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A JSON Web Token signed by a key of the configured JWKS.
    Jwt,
    /// An API key listed (hashed) in the configured key file.
    ApiKey,
}

impl Method {
    /// The method's name as encoded: `jwt` or `api_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Jwt => "jwt",
            Method::ApiKey => "api_key",
        }
    }
}

/// A caller the gateway has verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Who calls: the token's `sub`, or the API key's subject.
    pub subject: String,
    /// What the caller may do, as role names.
    pub roles: Vec<String>,
    /// How the caller was verified.
    pub method: Method,
}

/// Why a `meshwork-identity` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The value is longer than [`MAX_ENCODED_LEN`].
    #[error("meshwork-identity is longer than {MAX_ENCODED_LEN} bytes")]
    TooLong,
    /// The value is not unpadded base64url.
    #[error("meshwork-identity is not base64url")]
    NotBase64,
    /// The decoded value is not the expected JSON object.
    #[error("meshwork-identity is not a valid identity: {0}")]
    Invalid(String),
    /// The value was written by a newer gateway in a format this service does not know.
    #[error("meshwork-identity has unknown version {0}")]
    UnknownVersion(u32),
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    v: u32,
    #[serde(borrow)]
    sub: std::borrow::Cow<'a, str>,
    roles: Vec<String>,
    method: Method,
}

impl Identity {
    /// An identity with `subject`, `roles` and `method`.
    pub fn new(subject: impl Into<String>, roles: Vec<String>, method: Method) -> Self {
        Self { subject: subject.into(), roles, method }
    }

    /// Whether the identity holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Returns the `meshwork-identity` value: base64url (no padding) of the JSON form.
    pub fn encode(&self) -> String {
        let wire =
            Wire { v: VERSION, sub: self.subject.as_str().into(), roles: self.roles.clone(), method: self.method };
        // Serialising strings, a number and a unit enum into a Vec cannot fail; an empty value
        // would be refused by `decode` anyway.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        b64url(&json)
    }

    /// Reads a `meshwork-identity` value, checking the subject and every role.
    pub fn decode(value: &[u8]) -> Result<Self, IdentityError> {
        if value.len() > MAX_ENCODED_LEN {
            return Err(IdentityError::TooLong);
        }
        let text = std::str::from_utf8(value).map_err(|_| IdentityError::NotBase64)?;
        let json = b64url_decode(text).ok_or(IdentityError::NotBase64)?;
        let wire: Wire<'_> = serde_json::from_slice(&json).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        if wire.v != VERSION {
            return Err(IdentityError::UnknownVersion(wire.v));
        }
        check_subject(&wire.sub).map_err(|why| IdentityError::Invalid(why.to_string()))?;
        check_roles(&wire.roles).map_err(IdentityError::Invalid)?;
        Ok(Self { subject: wire.sub.into_owned(), roles: wire.roles, method: wire.method })
    }
}

#[cfg(test)]
mod tests {
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    use super::*;

    #[test]
    fn round_trip() {
        let id = Identity::new("alice@example.com", vec!["admin".into(), "ops:read".into()], Method::Jwt);
        let encoded = id.encode();
        assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Identity::decode(encoded.as_bytes()).unwrap(), id);
        let key = Identity::new("svc \"quoted\" é", vec![], Method::ApiKey);
        assert_eq!(Identity::decode(key.encode().as_bytes()).unwrap(), key);
    }

    #[test]
    fn refuses_bad_values() {
        assert_eq!(Identity::decode(b"not base64!"), Err(IdentityError::NotBase64));
        assert_eq!(Identity::decode(&[0xff, 0xfe]), Err(IdentityError::NotBase64));
        assert!(matches!(Identity::decode(b""), Err(IdentityError::Invalid(_))));
        assert_eq!(Identity::decode(&vec![b'a'; MAX_ENCODED_LEN + 1]), Err(IdentityError::TooLong));
        let padded = format!("{}=", b64url(br#"{"v":1,"sub":"a","roles":[],"method":"jwt"}"#));
        assert_eq!(Identity::decode(padded.as_bytes()), Err(IdentityError::NotBase64));
        let cases = [
            (r#"{"v":2,"sub":"a","roles":[],"method":"jwt"}"#, "version"),
            (r#"{"v":1,"sub":"","roles":[],"method":"jwt"}"#, "subject"),
            (r#"{"v":1,"sub":"a","roles":["has space"],"method":"jwt"}"#, "role"),
            (r#"{"v":1,"sub":"a","roles":[],"method":"password"}"#, "method"),
            (r#"{"v":1,"sub":"a","method":"jwt"}"#, "roles"),
            (r#"["a"]"#, "array"),
        ];
        for (json, what) in cases {
            assert!(Identity::decode(b64url(json.as_bytes()).as_bytes()).is_err(), "{what}");
        }
    }

    #[derive(Clone, Debug)]
    struct Bytes(Vec<u8>);

    impl Arbitrary for Bytes {
        fn arbitrary(g: &mut Gen) -> Self {
            // Half the time: base64url of arbitrary (often JSON-like) bytes, to get past the
            // first check.
            let raw: Vec<u8> = Arbitrary::arbitrary(g);
            if bool::arbitrary(g) {
                let text: String = Arbitrary::arbitrary(g);
                let json = format!(r#"{{"v":1,"sub":{text:?},"roles":[{text:?}],"method":"jwt"}}"#);
                return Bytes(b64url(if raw.is_empty() { json.as_bytes() } else { &raw }).into_bytes());
            }
            Bytes(raw)
        }
    }

    #[test]
    fn garbage_never_panics() {
        fn prop(input: Bytes) -> bool {
            match Identity::decode(&input.0) {
                // Whatever decodes re-encodes to something that decodes to the same identity.
                Ok(id) => Identity::decode(id.encode().as_bytes()).as_ref() == Ok(&id),
                Err(_) => true,
            }
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Bytes) -> bool);
    }

    #[test]
    fn arbitrary_identities_round_trip() {
        fn prop(subject: String, roles: Vec<u8>, api_key: bool) -> bool {
            let roles: Vec<String> = roles.iter().take(8).map(|n| format!("role-{n}")).collect();
            let method = if api_key { Method::ApiKey } else { Method::Jwt };
            let id = Identity::new(subject, roles, method);
            match Identity::decode(id.encode().as_bytes()) {
                Ok(back) => back == id,
                // Only subjects that break the rules are refused.
                Err(_) => check_subject(&id.subject).is_err(),
            }
        }
        QuickCheck::new().tests(1000).quickcheck(prop as fn(String, Vec<u8>, bool) -> bool);
    }
}
