//! Input checks of every request field, run before anything touches the store: each failure is
//! INVALID_ARGUMENT naming the proto field and what it accepts.

use meshwork_common::fields;
use meshwork_common::{ServiceError, ServiceResult};

use crate::rollout;

/// Longest package name.
pub const MAX_PACKAGE_CHARS: usize = 150;
/// Longest title and developer name.
pub const MAX_TITLE_CHARS: usize = 100;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// Highest price in minor units (1,000,000.00 of a two-decimal currency).
pub const MAX_PRICE_MINOR: i64 = 100_000_000;
/// Largest artifact: 4 GiB.
pub const MAX_SIZE_BYTES: i64 = 4 << 30;
/// Highest SDK level accepted.
pub const MAX_SDK: i32 = 1_000;
/// Default and largest page of search and charts.
pub const DEFAULT_PAGE: usize = 20;
/// Largest page of search and charts.
pub const MAX_PAGE: usize = 100;
/// Longest search query.
pub const MAX_QUERY_CHARS: usize = 200;

/// Checks a package name: reverse-DNS, at least two dot-separated segments of
/// `[a-z][a-z0-9_]*`, at most 150 characters.
pub fn package_name(field: &str, p: &str) -> ServiceResult<()> {
    if p.is_empty() {
        return Err(ServiceError::invalid(field, "required: a reverse-DNS package name such as com.example.notes"));
    }
    if p.len() > MAX_PACKAGE_CHARS {
        return Err(ServiceError::invalid(field, format!("at most {MAX_PACKAGE_CHARS} characters")));
    }
    let segments: Vec<&str> = p.split('.').collect();
    let segment_ok = |s: &&str| {
        let mut bytes = s.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if segments.len() < 2 || !segments.iter().all(segment_ok) {
        return Err(ServiceError::invalid(
            field,
            "must be at least two dot-separated segments of [a-z][a-z0-9_]* (com.example.notes)",
        ));
    }
    Ok(())
}

/// Checks a developer id: 3-40 characters of `[a-z0-9-]`, starting with a letter.
pub fn developer_id(field: &str, id: &str) -> ServiceResult<()> {
    let ok = (3..=40).contains(&id.len())
        && id.as_bytes()[0].is_ascii_lowercase()
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(ServiceError::invalid(field, "must be 3-40 characters of [a-z0-9-], starting with a letter"));
    }
    Ok(())
}

/// Checks a category: `[A-Z][A-Z0-9_]{1,39}`; empty allowed when not `required`.
pub fn category(field: &str, c: &str, required: bool) -> ServiceResult<()> {
    if c.is_empty() && !required {
        return Ok(());
    }
    let ok = (2..=40).contains(&c.len())
        && c.as_bytes()[0].is_ascii_uppercase()
        && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(ServiceError::invalid(field, "must match [A-Z][A-Z0-9_]{1,39} (TOOLS, GAME_PUZZLE)"));
    }
    Ok(())
}

/// Checks an icon URL: empty, or http(s) and at most 2048 characters without spaces.
pub fn icon_url(field: &str, url: &str) -> ServiceResult<()> {
    if url.is_empty() {
        return Ok(());
    }
    let ok = url.len() <= 2048
        && (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(ServiceError::invalid(field, "must be an http(s) URL of at most 2048 characters, or empty"));
    }
    Ok(())
}

/// Checks a price and its currency: 0 with no currency (free), or 1 to [`MAX_PRICE_MINOR`] minor units with an
/// ISO 4217 currency.
pub fn price(price_field: &str, currency_field: &str, minor: i64, currency: &str) -> ServiceResult<()> {
    if !(0..=MAX_PRICE_MINOR).contains(&minor) {
        return Err(ServiceError::invalid(price_field, format!("must be 0 (free) to {MAX_PRICE_MINOR} minor units")));
    }
    if minor == 0 {
        if !currency.is_empty() {
            return Err(ServiceError::invalid(currency_field, "must be empty for a free app"));
        }
        return Ok(());
    }
    fields::currency(currency_field, currency)
}

/// Checks a version code: positive.
pub fn version_code(field: &str, v: i64) -> ServiceResult<()> {
    if v <= 0 {
        return Err(ServiceError::invalid(field, "must be positive"));
    }
    Ok(())
}

/// Checks an SDK level: 1 to [`MAX_SDK`].
pub fn sdk(field: &str, level: i32) -> ServiceResult<()> {
    if !(1..=MAX_SDK).contains(&level) {
        return Err(ServiceError::invalid(field, format!("must be 1 to {MAX_SDK}")));
    }
    Ok(())
}

/// Checks an artifact digest: 64 lower-case hex digits.
pub fn sha256_hex(field: &str, h: &str) -> ServiceResult<()> {
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ServiceError::invalid(field, "must be a SHA-256: 64 lower-case hex digits"));
    }
    Ok(())
}

/// Checks an artifact size: 1 byte to 4 GiB.
pub fn size_bytes(field: &str, n: i64) -> ServiceResult<()> {
    if !(1..=MAX_SIZE_BYTES).contains(&n) {
        return Err(ServiceError::invalid(field, "must be 1 byte to 4 GiB"));
    }
    Ok(())
}

/// Checks a track name; empty is allowed (production) when `allow_empty`.
pub fn track<'a>(field: &str, t: &'a str, allow_empty: bool) -> ServiceResult<&'a str> {
    if t.is_empty() && allow_empty {
        return Ok("production");
    }
    if rollout::track_index(t).is_none() {
        return Err(ServiceError::invalid(field, "must be internal, alpha, beta or production"));
    }
    Ok(t)
}

/// Checks a user fraction in (0, 1] and returns it in parts per million.
pub fn fraction(field: &str, f: f64) -> ServiceResult<u32> {
    rollout::fraction_to_ppm(f).ok_or_else(|| ServiceError::invalid(field, "must be above 0 and at most 1"))
}

/// Checks a device id: 1-128 characters of `[A-Za-z0-9._:-]`.
pub fn device_id(field: &str, d: &str) -> ServiceResult<()> {
    let ok = (1..=128).contains(&d.len())
        && d.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !ok {
        return Err(ServiceError::invalid(field, "must be 1-128 characters of [A-Za-z0-9._:-]"));
    }
    Ok(())
}

/// Checks a required text of at most `max` characters.
pub fn text(field: &str, value: &str, max: usize, required: bool) -> ServiceResult<()> {
    fields::text(field, value, max, required)
}

/// Checks a page size: 0 means [`DEFAULT_PAGE`], at most [`MAX_PAGE`].
pub fn page_size(field: &str, n: i32) -> ServiceResult<usize> {
    fields::page_size_within(field, n, DEFAULT_PAGE, MAX_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: ServiceResult<()>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn package_names() {
        for ok in ["com.example.notes", "a.b", "org.x_1.y2", &format!("a.{}", "b".repeat(148))] {
            assert!(package_name("p", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "com",
            "Com.example",
            "com..x",
            "com.1x",
            "com.ex-ample",
            ".a.b",
            "a.b.",
            &format!("a.{}", "b".repeat(149)),
        ] {
            assert_eq!(field_of(package_name("p", bad)), "p", "{bad}");
        }
    }

    #[test]
    fn other_fields() {
        assert!(developer_id("d", "acme-1").is_ok());
        assert_eq!(field_of(developer_id("d", "Acme")), "d");
        assert_eq!(field_of(developer_id("d", "1ab")), "d");
        assert!(category("c", "GAME_PUZZLE", true).is_ok());
        assert!(category("c", "", false).is_ok());
        assert_eq!(field_of(category("c", "", true)), "c");
        assert_eq!(field_of(category("c", "tools", true)), "c");
        assert!(price("p", "c", 0, "").is_ok());
        assert_eq!(field_of(price("p", "c", 0, "USD")), "c");
        assert_eq!(field_of(price("p", "c", 99, "")), "c");
        assert_eq!(field_of(price("p", "c", MAX_PRICE_MINOR + 1, "USD")), "p");
        assert_eq!(field_of(price("p", "c", -1, "")), "p");
        assert!(sha256_hex("s", &"ab".repeat(32)).is_ok());
        assert_eq!(field_of(sha256_hex("s", &"AB".repeat(32))), "s");
        assert_eq!(track("t", "", true).unwrap(), "production");
        assert!(track("t", "", false).is_err());
        assert!(track("t", "gamma", true).is_err());
        assert_eq!(fraction("f", 0.25).unwrap(), 250_000);
        assert!(fraction("f", 0.0).is_err());
        assert_eq!(field_of(device_id("d", "a/b")), "d");
        assert_eq!(field_of(icon_url("i", "ftp://x")), "i");
    }
}
