//! The cryptography of the Exposure Notification Cryptography Specification v1.2: the
//! `ENIntervalNumber` (10-minute windows since the Unix epoch), the Rolling Proximity
//! Identifier Key and Associated Encrypted Metadata Key (HKDF-SHA256 of the Temporary Exposure
//! Key with no salt and the infos `EN-RPIK` / `EN-AEMK`, 16 bytes each), the Rolling Proximity
//! Identifier (AES-128 of the padded data `EN-RPI` ‖ 6 zero bytes ‖ ENIntervalNumber as a
//! little-endian u32) and the Associated Encrypted Metadata (AES-128-CTR keyed by the AEMK with
//! the RPI as the counter block).

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use sha2::Sha256;

/// Length of a Temporary Exposure Key, an RPIK, an AEMK and an RPI.
pub const KEY_LEN: usize = 16;
/// Seconds in one ENIntervalNumber.
pub const INTERVAL_SECONDS: i64 = 600;
/// The TEKRollingPeriod: intervals a key lives (24 hours).
pub const TEK_ROLLING_PERIOD: u32 = 144;

/// A 16-byte key or identifier.
pub type Block = [u8; KEY_LEN];

/// Returns the ENIntervalNumber of a Unix time in seconds (10-minute windows since the epoch).
pub fn interval_number(unix_seconds: i64) -> u32 {
    u32::try_from(unix_seconds.max(0) / INTERVAL_SECONDS).unwrap_or(u32::MAX)
}

/// Returns the Unix day (days since 1970-01-01 UTC) an ENIntervalNumber falls in.
pub fn day_of_interval(interval: u32) -> u32 {
    interval / TEK_ROLLING_PERIOD
}

fn hkdf16(tek: &Block, info: &[u8]) -> Block {
    let mut out = [0u8; KEY_LEN];
    // 16 bytes is far below HKDF-SHA256's 255 * 32 byte limit, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(None, tek).expand(info, &mut out);
    out
}

/// RPIK = HKDF-SHA256(TEK, salt = none, info = "EN-RPIK", 16).
pub fn rpik(tek: &Block) -> Block {
    hkdf16(tek, b"EN-RPIK")
}

/// AEMK = HKDF-SHA256(TEK, salt = none, info = "EN-AEMK", 16).
pub fn aemk(tek: &Block) -> Block {
    hkdf16(tek, b"EN-AEMK")
}

/// The padded data the RPI encrypts: `EN-RPI` ‖ 6 zero bytes ‖ interval (little-endian u32).
pub fn padded_data(interval: u32) -> Block {
    let mut data = [0u8; KEY_LEN];
    data[..6].copy_from_slice(b"EN-RPI");
    data[12..].copy_from_slice(&interval.to_le_bytes());
    data
}

/// Derives the RPIs of one key, with an AES key schedule made once.
#[derive(Clone)]
pub struct RpiGenerator {
    cipher: Aes128,
}

impl RpiGenerator {
    /// Returns the generator of the RPIs of `tek`.
    pub fn for_tek(tek: &Block) -> Self {
        Self::for_rpik(&rpik(tek))
    }

    /// Returns the generator keyed by an RPIK directly.
    pub fn for_rpik(rpik: &Block) -> Self {
        RpiGenerator { cipher: Aes128::new(rpik.into()) }
    }

    /// RPI = AES-128(RPIK, PaddedData(interval)).
    pub fn rpi(&self, interval: u32) -> Block {
        let mut block = aes::Block::from(padded_data(interval));
        self.cipher.encrypt_block(&mut block);
        block.into()
    }
}

/// RPI = AES-128(RPIK(tek), PaddedData(interval)).
pub fn rpi(tek: &Block, interval: u32) -> Block {
    RpiGenerator::for_tek(tek).rpi(interval)
}

/// AES-128-CTR with key `aemk` and initial counter block `rpi` over `data`: encrypts the
/// Bluetooth metadata into the AEM and, being a stream cipher, decrypts it back.
pub fn aem_apply(aemk: &Block, rpi: &Block, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut cipher = ctr::Ctr128BE::<Aes128>::new(aemk.into(), rpi.into());
    cipher.apply_keystream(&mut out);
    out
}

/// AEM = AES-128-CTR(AEMK(tek), IV = RPI, metadata).
pub fn aem_encrypt(tek: &Block, rpi: &Block, metadata: &[u8]) -> Vec<u8> {
    aem_apply(&aemk(tek), rpi, metadata)
}

/// Decrypts an AEM seen beside `rpi` with the key it matched.
pub fn aem_decrypt(tek: &Block, rpi: &Block, aem: &[u8]) -> Vec<u8> {
    aem_apply(&aemk(tek), rpi, aem)
}

/// The 4 bytes of Bluetooth metadata an AEM carries (Bluetooth spec v1.2, "Encrypted
/// Metadata"): byte 0 is the version (major in bits 7-6, minor in bits 5-4), byte 1 the
/// transmit power in dBm (signed), bytes 2-3 reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Major version (1 for v1.x).
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Calibrated transmit power, dBm.
    pub tx_power_dbm: i8,
}

impl Metadata {
    /// Parses decrypted metadata; None unless it is 4 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Metadata> {
        let [version, power, _, _] = <[u8; 4]>::try_from(bytes).ok()?;
        Some(Metadata { major: version >> 6, minor: (version >> 4) & 0b11, tx_power_dbm: power as i8 })
    }

    /// Encodes the metadata (reserved bytes zero).
    pub fn encode(&self) -> [u8; 4] {
        [(self.major & 0b11) << 6 | (self.minor & 0b11) << 4, self.tx_power_dbm as u8, 0, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn block(s: &str) -> Block {
        hex(s).try_into().unwrap()
    }

    // Test vectors of the Exposure Notification Cryptography Specification v1.2, as published in
    // google/exposure-notifications-internals,
    // app/src/androidTest/java/com/google/samples/exposurenotification/testing/TestVectors.java
    // (from the specification's TestVectors.h): the key generated at 1585785600 s, its
    // interval number, RPIK, AEMK, the BLE metadata 40 08 00 00, and the RPI/AEM of the first
    // ten of the key's 144 intervals.
    const KEY_GENERATION_SECONDS: i64 = 1_585_785_600;
    const INTERVAL_OF_KEY: u32 = 2_642_976;
    const TEK: &str = "75c734c6dd1a782de7a965da5eb93125";
    const RPIK: &str = "185ad91db69ec7dd048960f1f3ba6175";
    const AEMK: &str = "d57c46af7a1d83965b9bed8bd152936a";
    const BLE_METADATA: &str = "40080000";
    const ADVERTISED: [(&str, &str); 10] = [
        ("8be6cd371c5c891604bfbe49df845096", "72033874"),
        ("3c9a1de5dd6b02afa7fded7b570b3e56", "c29211b1"),
        ("243ffe9a3b08bded3094bac8630bb8ad", "6adfad03"),
        ("dfc3ed265e97d0eabb630e168b4214ed", "f1e2f80b"),
        ("b3b85a69ebaec78db739852d1f34e0fa", "5668c474"),
        ("298abd6fdad29efbf0f85a63956cf188", "f7b97e84"),
        ("105e8221dd603d25b94aba0c3cc8dee1", "eeabfdc7"),
        ("9888ca7e6738ec4bc6e420b20f878b3a", "9f84a9a6"),
        ("8694a79ae99671be3f18aaf6b090657a", "c11acb4d"),
        ("b8cde28ad20d1cd2fdd7369dc0c6f7c8", "1f8d53de"),
    ];

    #[test]
    fn published_test_vectors_reproduce_byte_for_byte() {
        assert_eq!(interval_number(KEY_GENERATION_SECONDS), INTERVAL_OF_KEY);
        let tek = block(TEK);
        assert_eq!(rpik(&tek), block(RPIK));
        assert_eq!(aemk(&tek), block(AEMK));
        let generator = RpiGenerator::for_tek(&tek);
        for (i, (want_rpi, want_aem)) in ADVERTISED.iter().enumerate() {
            let interval = INTERVAL_OF_KEY + i as u32;
            let got = generator.rpi(interval);
            assert_eq!(got, block(want_rpi), "RPI of interval {i}");
            assert_eq!(rpi(&tek, interval), got);
            let aem = aem_encrypt(&tek, &got, &hex(BLE_METADATA));
            assert_eq!(aem, hex(want_aem), "AEM of interval {i}");
            assert_eq!(aem_decrypt(&tek, &got, &aem), hex(BLE_METADATA));
        }
    }

    #[test]
    fn padded_data_and_metadata_layout() {
        let data = padded_data(0x0102_0304);
        assert_eq!(&data[..6], b"EN-RPI");
        assert_eq!(&data[6..12], &[0; 6]);
        assert_eq!(&data[12..], &[4, 3, 2, 1]);
        let meta = Metadata::parse(&hex(BLE_METADATA)).unwrap();
        assert_eq!(meta, Metadata { major: 1, minor: 0, tx_power_dbm: 8 });
        assert_eq!(meta.encode().to_vec(), hex(BLE_METADATA));
        let low = Metadata { major: 1, minor: 2, tx_power_dbm: -20 };
        assert_eq!(Metadata::parse(&low.encode()), Some(low));
        assert_eq!(Metadata::parse(&[1, 2, 3]), None);
        assert_eq!(interval_number(-5), 0);
        assert_eq!(day_of_interval(INTERVAL_OF_KEY), 18354);
    }
}
