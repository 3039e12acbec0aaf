//! Short codes from ids. An id leased from the store maps to a 7-character base62 code through
//! a bijection of `[0, 62^7)` (multiply by a constant coprime to 62^7, add an offset), so codes
//! are unique exactly when ids are, yet consecutive ids do not give guessable neighbours.

use meshwork_common::base62_encode;

/// Length of generated codes.
pub const CODE_LEN: usize = 7;
/// Number of distinct generated codes: 62^7.
pub const CODE_SPACE: u64 = 3_521_614_606_208;
// Odd and not a multiple of 31, hence coprime to 62^7 = 2^7 * 31^7.
const MULTIPLIER: u64 = 1_580_030_173;
const OFFSET: u64 = 2_385_436_591_123;

/// Returns the code of `id`, or `None` once the id space is used up.
pub fn code_for_id(id: u64) -> Option<String> {
    if id >= CODE_SPACE {
        return None;
    }
    let scrambled = (u128::from(id) * u128::from(MULTIPLIER) + u128::from(OFFSET)) % u128::from(CODE_SPACE);
    Some(base62_encode(scrambled as u64, CODE_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn multiplier_is_coprime_to_the_code_space() {
        assert_eq!(MULTIPLIER % 2, 1);
        assert_ne!(MULTIPLIER % 31, 0);
    }

    #[test]
    fn codes_are_seven_characters_and_distinct() {
        let mut seen = HashSet::new();
        for id in 1..200_000u64 {
            let code = code_for_id(id).unwrap();
            assert_eq!(code.len(), CODE_LEN);
            assert!(seen.insert(code), "id {id} collided");
        }
        assert_eq!(code_for_id(CODE_SPACE - 1).map(|c| c.len()), Some(CODE_LEN));
        assert_eq!(code_for_id(CODE_SPACE), None);
    }
}
