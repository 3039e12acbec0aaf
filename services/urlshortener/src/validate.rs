//! Validation of every request field, pure and unit-tested. Each failure names the field.

use meshwork_common::ServiceError;

/// Longest accepted long URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest accepted TTL: ten years.
pub const MAX_TTL_SECONDS: i64 = 10 * 366 * 24 * 3600;
/// Longest accepted code or alias in lookups.
pub const MAX_CODE_LEN: usize = 64;
/// Longest accepted referrer.
pub const MAX_REFERRER_LEN: usize = 256;

/// Aliases that would shadow gateway paths or mislead users.
pub const RESERVED_ALIASES: &[&str] = &[
    "admin", "api", "app", "assets", "debug", "favicon", "grpc", "health", "healthz", "help", "index", "login",
    "logout", "metrics", "ready", "robots", "signin", "signup", "static", "stats", "status", "support", "www",
];

/// Checks a long URL: http or https, a host, at most [`MAX_URL_LEN`] bytes, no credentials,
/// no whitespace or control characters. Returns it normalised by the URL parser.
pub fn long_url(raw: &str) -> Result<String, ServiceError> {
    let field = "long_url";
    if raw.is_empty() {
        return Err(ServiceError::invalid(field, "must not be empty"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(ServiceError::invalid(field, format!("is {} bytes, longer than {MAX_URL_LEN}", raw.len())));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServiceError::invalid(field, "must not contain whitespace or control characters"));
    }
    let parsed = url::Url::parse(raw).map_err(|e| ServiceError::invalid(field, format!("is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(ServiceError::invalid(field, format!("scheme {other:?} is not allowed; use http or https")));
        }
    }
    let Some(host) = parsed.host_str() else {
        return Err(ServiceError::invalid(field, "must have a host"));
    };
    if let Some(url::Host::Domain(domain)) = parsed.host() {
        let labels_ok = domain.split('.').enumerate().all(|(i, label)| {
            // A trailing dot (fully qualified name) leaves one empty last label.
            (label.is_empty() && i > 0 && domain.ends_with('.') && i == domain.split('.').count() - 1)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
        if !labels_ok {
            return Err(ServiceError::invalid(field, format!("host {host:?} is malformed")));
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::invalid(field, "must not contain a user name or password"));
    }
    let normalised = parsed.to_string();
    if normalised.len() > MAX_URL_LEN {
        return Err(ServiceError::invalid(field, format!("is longer than {MAX_URL_LEN} bytes once normalised")));
    }
    Ok(normalised)
}

/// Checks a custom alias: 3-32 characters of `[A-Za-z0-9_-]`, not reserved.
pub fn custom_alias(alias: &str) -> Result<(), ServiceError> {
    let field = "custom_alias";
    let len = alias.chars().count();
    if !(3..=32).contains(&len) {
        return Err(ServiceError::invalid(field, format!("must be 3 to 32 characters, got {len}")));
    }
    if let Some(bad) = alias.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(ServiceError::invalid(field, format!("character {bad:?} is not allowed; use A-Z a-z 0-9 _ -")));
    }
    if RESERVED_ALIASES.contains(&alias.to_ascii_lowercase().as_str()) {
        return Err(ServiceError::invalid(field, format!("{alias:?} is reserved")));
    }
    Ok(())
}

/// Checks a TTL: 0 (never expires) or 1 second to ten years.
pub fn ttl_seconds(ttl: i64) -> Result<(), ServiceError> {
    if ttl < 0 {
        return Err(ServiceError::invalid("ttl_seconds", "must not be negative (0 means never expires)"));
    }
    if ttl > MAX_TTL_SECONDS {
        return Err(ServiceError::invalid("ttl_seconds", format!("must be at most {MAX_TTL_SECONDS} (ten years)")));
    }
    Ok(())
}

/// Checks a code in a lookup: 1-64 characters of `[A-Za-z0-9_-]`.
pub fn code(code: &str) -> Result<(), ServiceError> {
    if code.is_empty() {
        return Err(ServiceError::invalid("code", "must not be empty"));
    }
    if code.len() > MAX_CODE_LEN {
        return Err(ServiceError::invalid("code", format!("is longer than {MAX_CODE_LEN} characters")));
    }
    if !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ServiceError::invalid("code", "may contain only A-Z a-z 0-9 _ -"));
    }
    Ok(())
}

/// Normalises a referrer to a lower-case host (a full URL is reduced to its host); empty means
/// a direct visit. Fails when it is too long or not a host name.
pub fn referrer(raw: &str) -> Result<String, ServiceError> {
    if raw.is_empty() {
        return Ok("(direct)".to_string());
    }
    if raw.len() > MAX_REFERRER_LEN {
        return Err(ServiceError::invalid("referrer", format!("is longer than {MAX_REFERRER_LEN} characters")));
    }
    let host = match url::Url::parse(raw) {
        Ok(u) if u.host_str().is_some() => u.host_str().unwrap_or_default().to_string(),
        _ => raw.to_string(),
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b)) {
        return Err(ServiceError::invalid("referrer", "must be a host name or a URL"));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<impl std::fmt::Debug, ServiceError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn long_urls() {
        assert_eq!(long_url("https://example.com/a?b=c").unwrap(), "https://example.com/a?b=c");
        assert_eq!(long_url("http://Example.COM").unwrap(), "http://example.com/");
        assert!(reason(long_url("")).contains("long_url: must not be empty"));
        assert!(reason(long_url(&format!("https://e.com/{}", "a".repeat(2048)))).contains("longer than 2048"));
        assert!(reason(long_url("ftp://e.com/")).contains("scheme \"ftp\""));
        assert!(reason(long_url("javascript:alert(1)")).contains("scheme \"javascript\""));
        assert!(reason(long_url("https://user:pw@e.com/")).contains("user name or password"));
        assert!(reason(long_url("https://user@e.com/")).contains("user name or password"));
        assert!(reason(long_url("https://exa mple.com/")).contains("whitespace"));
        assert!(reason(long_url("https://")).starts_with("long_url:"));
        assert!(reason(long_url("https://a..b/")).starts_with("long_url:"));
        assert!(reason(long_url("not a url")).starts_with("long_url:"));
        assert!(reason(long_url("https://[zz]/")).starts_with("long_url:"));
        assert!(reason(long_url("https://exa$mple.com/")).contains("malformed"));
        assert!(reason(long_url("https://-a.com/")).contains("malformed"));
        assert!(long_url("https://example.com./").is_ok());
        assert!(long_url("http://127.0.0.1:8080/x").is_ok());
        assert!(long_url("http://[::1]/x").is_ok());
        assert!(long_url("https://bücher.de/").is_ok());
    }

    #[test]
    fn aliases() {
        assert!(custom_alias("my-link_1").is_ok());
        assert!(reason(custom_alias("ab")).contains("3 to 32"));
        assert!(reason(custom_alias(&"a".repeat(33))).contains("3 to 32"));
        assert!(reason(custom_alias("a/b/c")).contains("'/'"));
        assert!(reason(custom_alias("héllo")).contains("'é'"));
        assert!(reason(custom_alias("Admin")).contains("reserved"));
        assert!(reason(custom_alias("healthz")).contains("reserved"));
    }

    #[test]
    fn ttls_codes_referrers() {
        assert!(ttl_seconds(0).is_ok());
        assert!(ttl_seconds(60).is_ok());
        assert!(reason(ttl_seconds(-1)).contains("ttl_seconds: must not be negative"));
        assert!(reason(ttl_seconds(i64::MAX)).contains("ten years"));
        assert!(code("abc123X").is_ok());
        assert!(reason(code("")).contains("code: must not be empty"));
        assert!(reason(code("a b")).contains("code:"));
        assert_eq!(referrer("").unwrap(), "(direct)");
        assert_eq!(referrer("https://News.Example.com/x?y").unwrap(), "news.example.com");
        assert_eq!(referrer("twitter.com").unwrap(), "twitter.com");
        assert!(referrer("bad/host").is_err());
    }
}
