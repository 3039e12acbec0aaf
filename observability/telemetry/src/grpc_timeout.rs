//! The `grpc-timeout` header: parsing (`1S`, `250m`, `100000u`...) and formatting the time left,
//! for every hop that passes a deadline on: the gateway towards its upstreams, and a service's
//! mesh client towards the services it calls.

use std::time::Duration;

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `d` as a `grpc-timeout` value with at most 8 digits, in the finest unit that fits,
/// rounded up to that unit. The gateway writes one per call: integer arithmetic on `u64` and
/// digits written by hand (with `u128` division and `format!` it took about 870 instructions).
pub fn format_grpc_timeout(d: Duration) -> String {
    const MAX: u64 = 99_999_999;
    const UNITS: [(u64, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    // Past u64 nanoseconds (584 years) the value is the largest one, as past 99,999,999 hours.
    let largest = (MAX, b'H');
    let (mut value, unit) = match u64::try_from(d.as_nanos()) {
        Ok(nanos) => {
            UNITS.iter().map(|&(per, unit)| (nanos.div_ceil(per), unit)).find(|&(v, _)| v <= MAX).unwrap_or(largest)
        }
        Err(_) => largest,
    };
    let mut text = [0u8; 9];
    let mut start = text.len() - 1;
    text[start] = unit;
    loop {
        start -= 1;
        text[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    text[start..].iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_grpc_timeout(b"1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout(b"99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_grpc_timeout(b"5n"), Some(Duration::from_nanos(5)));
        assert_eq!(parse_grpc_timeout(b"30000000u"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [&b""[..], b"S", b"1", b"123456789S", b"1s", b"1x", b"-1S", b"+1S", b"1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_in_eight_digits_and_round_trips() {
        for d in [
            Duration::from_nanos(1),
            Duration::from_millis(1500),
            Duration::from_secs(3),
            Duration::from_secs(100_000),
            Duration::from_secs(100_000_000),
        ] {
            let text = format_grpc_timeout(d);
            assert!(text.len() <= 9, "{text}");
            let back = parse_grpc_timeout(text.as_bytes()).unwrap();
            assert!(back >= d, "{d:?} -> {text} -> {back:?}");
        }
        assert_eq!(format_grpc_timeout(Duration::from_millis(1500)), "1500000u");
        assert_eq!(format_grpc_timeout(Duration::ZERO), "0n");
        assert_eq!(format_grpc_timeout(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(format_grpc_timeout(Duration::from_nanos(100_000_001)), "100001u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(3600 * 99_999_999)), "99999999H");
        assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
    }
}
