//! The verification certificate: a JWT signed ES256 (ECDSA P-256 with SHA-256, the signature
//! as the 64 bytes r ‖ s, base64url without padding), as the GAEN verification server issues
//! it. Its claims bind the upload to one verification code (`jti`, the code's id) and to the
//! HMAC of the keys (`tekhmac`), with the diagnosis (`reportType`, `symptomOnsetInterval`) the
//! health authority gave. Pure: signing and verifying take the keys and the time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The certificate's issuer.
pub const ISSUER: &str = "meshwork-contacttracing-verification";
/// The certificate's audience: this key server.
pub const AUDIENCE: &str = "meshwork-contacttracing-keyserver";
/// Key id in the header.
pub const KEY_ID: &str = "v1";

/// The claims of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer ([`ISSUER`]).
    pub iss: String,
    /// Audience ([`AUDIENCE`]).
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// The verification code's id: one upload per code.
    pub jti: String,
    /// Standard base64 of the HMAC of the keys.
    pub tekhmac: String,
    /// `confirmed` or `likely`.
    #[serde(rename = "reportType")]
    pub report_type: String,
    /// ENIntervalNumber of symptom onset, 0 when unknown.
    #[serde(rename = "symptomOnsetInterval")]
    pub symptom_onset_interval: u32,
    /// Geohash-5 cell of the patient's area (for the area counts), or empty.
    #[serde(default)]
    pub area: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// Returns the signed certificate of `claims`.
pub fn sign(claims: &Claims, key: &SigningKey) -> String {
    let header = Header { alg: "ES256".into(), typ: "JWT".into(), kid: KEY_ID.into() };
    // Serializing plain structs of strings and integers cannot fail.
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{header}.{body}");
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Verifies a certificate with `key` at `now_s` (Unix seconds): the form, the ES256 signature,
/// issuer, audience, and that it is issued (with 60 s of skew) and not expired. The error says
/// what is wrong.
pub fn verify(certificate: &str, key: &VerifyingKey, now_s: i64) -> Result<Claims, String> {
    let mut parts = certificate.split('.');
    let (Some(header), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT (three base64url parts separated by dots)".into());
    };
    let decode = |part: &str, what: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| format!("{what} is not base64url"));
    let head: Header =
        serde_json::from_slice(&decode(header, "header")?).map_err(|_| "header is not a JWT header".to_string())?;
    if head.alg != "ES256" {
        return Err(format!("algorithm {:?} is not ES256", head.alg));
    }
    let signature = Signature::from_slice(&decode(signature, "signature")?)
        .map_err(|_| "signature is not an ES256 signature".to_string())?;
    let input_len = header.len() + 1 + body.len();
    key.verify(&certificate.as_bytes()[..input_len], &signature)
        .map_err(|_| "signature does not verify with the verification key".to_string())?;
    let claims: Claims =
        serde_json::from_slice(&decode(body, "claims")?).map_err(|e| format!("claims are malformed: {e}"))?;
    if claims.iss != ISSUER || claims.aud != AUDIENCE {
        return Err("issuer or audience is not this server's".into());
    }
    if claims.iat > now_s + 60 {
        return Err("issued in the future".into());
    }
    if claims.exp <= now_s {
        return Err("expired".into());
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use meshwork_gaen::export::generate_signing_key;

    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: 1000,
            exp: 1900,
            jti: "cd_x".into(),
            tekhmac: "aGk=".into(),
            report_type: "confirmed".into(),
            symptom_onset_interval: 0,
            area: "tdr1v".into(),
        }
    }

    #[test]
    fn signs_verifies_and_refuses_forgeries_and_expiry() {
        let key = generate_signing_key();
        let cert = sign(&claims(), &key);
        assert_eq!(verify(&cert, key.verifying_key(), 1500), Ok(claims()));
        assert!(verify(&cert, key.verifying_key(), 1900).unwrap_err().contains("expired"));
        assert!(verify(&cert, key.verifying_key(), 900).unwrap_err().contains("future"));
        let other = generate_signing_key();
        assert!(verify(&sign(&claims(), &other), key.verifying_key(), 1500).unwrap_err().contains("signature"));
        // Changed claims under the old signature.
        let forged_body =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Claims { jti: "cd_y".into(), ..claims() }).unwrap());
        let parts: Vec<&str> = cert.split('.').collect();
        let forged = format!("{}.{forged_body}.{}", parts[0], parts[2]);
        assert!(verify(&forged, key.verifying_key(), 1500).unwrap_err().contains("signature"));
        assert!(verify("a.b", key.verifying_key(), 1500).is_err());
        let wrong_aud = sign(&Claims { aud: "x".into(), ..claims() }, &key);
        assert!(verify(&wrong_aud, key.verifying_key(), 1500).unwrap_err().contains("audience"));
    }
}
