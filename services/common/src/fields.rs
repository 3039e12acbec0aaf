//! Field rules and conversions more than one service needs: ISO 4217 currencies, commerce
//! skus, user ids, page sizes, and `google.protobuf.Timestamp`/`Duration` to and from
//! milliseconds. Each check answers INVALID_ARGUMENT naming the field and the reason.

use std::time::Duration;

use crate::error::{ServiceError, ServiceResult};

/// Default page size of `List*` calls.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size of `List*` calls.
pub const MAX_PAGE_SIZE: usize = 1000;

/// ISO 4217 codes of the currencies in use (the active list, without funds and metals).
const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC",
    "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD",
    "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// Checks that `code` is an ISO 4217 currency in use (`USD`, `EUR`, `INR`).
pub fn currency(field: &str, code: &str) -> ServiceResult<()> {
    if code.is_empty() {
        return Err(ServiceError::invalid(field, "required: an ISO 4217 currency code such as USD"));
    }
    if CURRENCIES.binary_search(&code).is_err() {
        return Err(ServiceError::invalid(field, format!("{code:?} is not an ISO 4217 currency code")));
    }
    Ok(())
}

/// Checks a product code: `[A-Z0-9-]{3,40}`.
pub fn sku(field: &str, sku: &str) -> ServiceResult<()> {
    if sku.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if !(3..=40).contains(&sku.len()) || !sku.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ServiceError::invalid(field, "must match [A-Z0-9-]{3,40}"));
    }
    Ok(())
}

/// Checks a user id: 1-128 characters, no control characters.
pub fn user_id(field: &str, user: &str) -> ServiceResult<()> {
    if user.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if user.chars().count() > 128 || user.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must be 1-128 characters without control characters"));
    }
    Ok(())
}

/// Checks free text of at most `max` characters (`required` when it may not be empty).
pub fn text(field: &str, value: &str, max: usize, required: bool) -> ServiceResult<()> {
    if required && value.trim().is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if value.chars().count() > max {
        return Err(ServiceError::invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// Checks a postal address (`meshwork.orders.v1.Address`, which checkout takes and orders
/// keep) under `field`: present; name, line1, city (1-100 characters) and postal_code (1-20)
/// not blank; line2 and region at most 100; no control characters anywhere; country an ISO
/// 3166-1 alpha-2 code. One rule for both services, so that an address checkout accepted is
/// never refused by orders halfway through the saga.
pub fn address(field: &str, address: Option<&meshwork_proto::pb::orders::v1::Address>) -> ServiceResult<()> {
    let Some(a) = address else {
        return Err(ServiceError::invalid(field, "required"));
    };
    for (name, value, max, required) in [
        ("name", &a.name, 100, true),
        ("line1", &a.line1, 100, true),
        ("line2", &a.line2, 100, false),
        ("city", &a.city, 100, true),
        ("region", &a.region, 100, false),
        ("postal_code", &a.postal_code, 20, true),
    ] {
        let part = format!("{field}.{name}");
        text(&part, value, max, required)?;
        if value.chars().any(char::is_control) {
            return Err(ServiceError::invalid(part, "must not contain control characters"));
        }
    }
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ServiceError::invalid(
            format!("{field}.country"),
            format!("{:?} is not an ISO 3166-1 alpha-2 code (two upper-case letters)", a.country),
        ));
    }
    Ok(())
}

/// Returns the page size of a `List*` request: 0 means [`DEFAULT_PAGE_SIZE`]; negative or
/// above [`MAX_PAGE_SIZE`] is INVALID_ARGUMENT.
pub fn page_size(field: &str, requested: i32) -> ServiceResult<usize> {
    page_size_within(field, requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
}

/// [`page_size`] with another default and maximum.
pub fn page_size_within(field: &str, requested: i32, default: usize, max: usize) -> ServiceResult<usize> {
    match requested {
        0 => Ok(default),
        n if n < 0 => Err(ServiceError::invalid(field, "must not be negative")),
        n if n as usize > max => Err(ServiceError::invalid(field, format!("at most {max}"))),
        n => Ok(n as usize),
    }
}

/// Returns the protobuf timestamp of `ms` milliseconds since the Unix epoch.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// Returns `ms` as a timestamp, or `None` for 0 (an unset time).
pub fn timestamp_opt(ms: i64) -> Option<prost_types::Timestamp> {
    (ms != 0).then(|| timestamp(ms))
}

/// Returns a timestamp as milliseconds since the Unix epoch; an invalid one (nanos out of
/// range) is INVALID_ARGUMENT on `field`.
pub fn millis(field: &str, ts: &prost_types::Timestamp) -> ServiceResult<i64> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(ServiceError::invalid(field, "nanos must be 0 to 999,999,999"));
    }
    ts.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .ok_or_else(|| ServiceError::invalid(field, "out of range"))
}

/// Returns a protobuf duration as a [`Duration`]; negative or invalid is INVALID_ARGUMENT.
pub fn duration(field: &str, d: &prost_types::Duration) -> ServiceResult<Duration> {
    if d.seconds < 0 || !(0..1_000_000_000).contains(&d.nanos) {
        return Err(ServiceError::invalid(field, "must be a non-negative duration"));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_sorted_for_the_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        assert!(currency("c", "USD").is_ok());
        assert!(currency("c", "usd").is_err());
        assert!(currency("c", "XXX").is_err());
        assert!(currency("c", "").is_err());
    }

    #[test]
    fn skus_and_page_sizes() {
        assert!(sku("s", "AB-12").is_ok());
        assert!(sku("s", "ab").is_err());
        assert!(sku("s", &"A".repeat(41)).is_err());
        assert_eq!(page_size("p", 0).unwrap(), 50);
        assert!(page_size("p", -1).is_err());
        assert!(page_size("p", 1001).is_err());
    }

    #[test]
    fn addresses_are_one_rule() {
        use meshwork_proto::pb::orders::v1::Address;
        let good = Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..Default::default()
        };
        assert!(address("a", Some(&good)).is_ok());
        let field = |a: Address| match address("a", Some(&a)) {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Address { name: "  ".into(), ..good.clone() }), "a.name");
        assert_eq!(field(Address { line2: "x\u{7}".into(), ..good.clone() }), "a.line2");
        assert_eq!(field(Address { postal_code: "1".repeat(21), ..good.clone() }), "a.postal_code");
        assert_eq!(field(Address { country: "de".into(), ..good.clone() }), "a.country");
        assert!(address("a", None).is_err());
    }

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            assert_eq!(millis("t", &timestamp(ms)).unwrap(), ms);
        }
        assert!(millis("t", &prost_types::Timestamp { seconds: 0, nanos: -1 }).is_err());
    }
}
