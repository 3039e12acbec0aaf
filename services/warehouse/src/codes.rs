//! Location codes, pure: a STORAGE bin is `zone-aisle-rack-level` (`A-03-2-B`: zone `A`,
//! aisle 3, rack 2, level `B`), docks are named by their type. The code gives the bin's place
//! on the aisle graph the pick paths walk: its aisle and its distance from the front cross
//! aisle (rack × rack pitch).

/// A parsed bin code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinCode {
    /// Aisle number (two digits in the code).
    pub aisle: u32,
    /// Rack number along the aisle (one or two digits).
    pub rack: u32,
}

/// Parses a STORAGE bin code `[A-Z]{1,3}-NN-R(R)-L`, or says what is wrong with it.
pub fn parse_bin(code: &str) -> Result<BinCode, String> {
    const SHAPE: &str = "must look like A-03-2-B (zone of 1-3 letters, two-digit aisle, 1-2 digit rack, level letter)";
    let parts: Vec<&str> = code.split('-').collect();
    let [zone, aisle, rack, level] = parts.as_slice() else {
        return Err(SHAPE.into());
    };
    let letters = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_uppercase());
    let digits =
        |s: &str, min: usize, max: usize| (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !letters(zone, 3) || !digits(aisle, 2, 2) || !digits(rack, 1, 2) || !letters(level, 1) {
        return Err(SHAPE.into());
    }
    Ok(BinCode {
        aisle: aisle.parse().map_err(|_| SHAPE.to_string())?,
        rack: rack.parse().map_err(|_| SHAPE.to_string())?,
    })
}

/// The dock codes CreateWarehouse makes (one per dock type).
pub const RECEIVING: &str = "RECEIVING";
/// Picked units wait here.
pub const PACKING: &str = "PACKING";
/// Packed cartons wait here.
pub const SHIPPING: &str = "SHIPPING";
/// Lost units are booked here.
pub const LOSS: &str = "LOSS";

/// Checks any location code a request names (a bin or a dock), without looking it up.
pub fn check_code(code: &str) -> Result<(), String> {
    if [RECEIVING, PACKING, SHIPPING, LOSS].contains(&code) {
        return Ok(());
    }
    parse_bin(code).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_codes() {
        assert_eq!(parse_bin("A-03-2-B"), Ok(BinCode { aisle: 3, rack: 2 }));
        assert_eq!(parse_bin("ZZZ-19-12-Z"), Ok(BinCode { aisle: 19, rack: 12 }));
        for bad in [
            "",
            "A-3-2-B",
            "a-03-2-B",
            "A-03-2",
            "A-03-123-B",
            "ABCD-03-2-B",
            "A-03-2-BB",
            "A-03-2-1",
            "A_03_2_B",
            "A--2-B",
        ] {
            assert!(parse_bin(bad).is_err(), "{bad}");
        }
        assert!(check_code("LOSS").is_ok());
        assert!(check_code("loss").is_err());
    }
}
