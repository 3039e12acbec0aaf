//! ISBN parsing: an ISBN-10 or ISBN-13 as people type it (hyphens and spaces anywhere), its
//! check digit verified, normalised to the 13 digits of the ISBN-13 under which a title is
//! stored. An ISBN-10 becomes `978` + its first nine digits + a new ISBN-13 check digit, so
//! both spellings of one book name the same title.

/// Why a string is not an ISBN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsbnError {
    #[error("required")]
    Empty,
    #[error("must be 10 or 13 digits (hyphens and spaces allowed), got {0} digits")]
    Length(usize),
    #[error("may only contain digits, hyphens and spaces (and a final X in an ISBN-10)")]
    Character,
    #[error("check digit does not match (expected {expected})")]
    CheckDigit { expected: char },
    #[error("an ISBN-13 starts with 978 or 979")]
    Prefix,
}

/// Returns the ISBN-10 check character of nine digits (`0`-`9` or `X`).
fn isbn10_check(digits: &[u8]) -> char {
    let sum: u32 = digits.iter().enumerate().map(|(i, d)| (10 - i as u32) * u32::from(*d)).sum();
    match (11 - sum % 11) % 11 {
        10 => 'X',
        n => char::from(b'0' + n as u8),
    }
}

/// Returns the ISBN-13 check digit of twelve digits.
fn isbn13_check(digits: &[u8]) -> u8 {
    let sum: u32 = digits.iter().enumerate().map(|(i, d)| if i % 2 == 0 { 1 } else { 3 } * u32::from(*d)).sum();
    ((10 - sum % 10) % 10) as u8
}

/// Parses an ISBN-10 or ISBN-13 and returns its ISBN-13 (13 ASCII digits).
pub fn normalize(input: &str) -> Result<String, IsbnError> {
    let compact: Vec<char> = input.chars().filter(|c| *c != '-' && *c != ' ').collect();
    if compact.is_empty() {
        return Err(IsbnError::Empty);
    }
    let ascii_len = compact.len();
    match ascii_len {
        10 => {
            let mut digits = Vec::with_capacity(9);
            for c in &compact[..9] {
                digits.push(c.to_digit(10).ok_or(IsbnError::Character)? as u8);
            }
            let last = compact[9].to_ascii_uppercase();
            if !(last.is_ascii_digit() || last == 'X') {
                return Err(IsbnError::Character);
            }
            let expected = isbn10_check(&digits);
            if last != expected {
                return Err(IsbnError::CheckDigit { expected });
            }
            let mut twelve = vec![9, 7, 8];
            twelve.extend_from_slice(&digits);
            let check = isbn13_check(&twelve);
            twelve.push(check);
            Ok(twelve.iter().map(|d| char::from(b'0' + d)).collect())
        }
        13 => {
            let mut digits = Vec::with_capacity(13);
            for c in &compact {
                digits.push(c.to_digit(10).ok_or(IsbnError::Character)? as u8);
            }
            if digits[..3] != [9, 7, 8] && digits[..3] != [9, 7, 9] {
                return Err(IsbnError::Prefix);
            }
            let expected = isbn13_check(&digits[..12]);
            if digits[12] != expected {
                return Err(IsbnError::CheckDigit { expected: char::from(b'0' + expected) });
            }
            Ok(digits.iter().map(|d| char::from(b'0' + d)).collect())
        }
        n if compact.iter().all(|c| c.is_ascii_digit() || *c == 'X' || *c == 'x') => Err(IsbnError::Length(n)),
        _ => Err(IsbnError::Character),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isbn13_with_and_without_hyphens() {
        assert_eq!(normalize("978-0-306-40615-7").unwrap(), "9780306406157");
        assert_eq!(normalize("9780306406157").unwrap(), "9780306406157");
        assert_eq!(normalize(" 979 10 90636 07 1").unwrap(), "9791090636071");
    }

    #[test]
    fn isbn10_becomes_isbn13() {
        assert_eq!(normalize("0-306-40615-2").unwrap(), "9780306406157");
        // An X check digit, either case.
        assert_eq!(normalize("0-8044-2957-X").unwrap(), "9780804429573");
        assert_eq!(normalize("080442957x").unwrap(), "9780804429573");
    }

    #[test]
    fn wrong_check_digits_are_refused() {
        assert_eq!(normalize("978-0-306-40615-8"), Err(IsbnError::CheckDigit { expected: '7' }));
        assert_eq!(normalize("0-306-40615-3"), Err(IsbnError::CheckDigit { expected: '2' }));
        assert_eq!(normalize("0-8044-2957-1"), Err(IsbnError::CheckDigit { expected: 'X' }));
    }

    #[test]
    fn malformed_isbns_are_refused() {
        assert_eq!(normalize(""), Err(IsbnError::Empty));
        assert_eq!(normalize(" - "), Err(IsbnError::Empty));
        assert_eq!(normalize("12345"), Err(IsbnError::Length(5)));
        assert_eq!(normalize("97803064061570"), Err(IsbnError::Length(14)));
        assert_eq!(normalize("978030640615X"), Err(IsbnError::Character));
        assert_eq!(normalize("X306406152"), Err(IsbnError::Character));
        assert_eq!(normalize("978-0-306-4O615-7"), Err(IsbnError::Character));
        assert_eq!(normalize("１２３４５６７８９X"), Err(IsbnError::Character), "full-width digits");
        assert_eq!(normalize("1234567890128"), Err(IsbnError::Prefix));
    }

    #[test]
    fn every_isbn10_check_digit_round_trips() {
        for n in 0..2000u32 {
            let nine: Vec<u8> = format!("{:09}", n * 4_999).bytes().map(|b| b - b'0').collect();
            let ten: String = nine.iter().map(|d| char::from(b'0' + d)).chain([isbn10_check(&nine)]).collect();
            let thirteen = normalize(&ten).unwrap();
            assert_eq!(thirteen.len(), 13);
            assert_eq!(normalize(&thirteen).unwrap(), thirteen);
        }
    }
}
