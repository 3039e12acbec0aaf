//! HPACK (RFC 7541), our own: the maintained crates were not safe against hostile input
//! (`hpack` 0.3 and `fluke-hpack` 0.3 unwrap the integer of a table size update and assert on
//! its value, so a garbage block panics; neither bounds the decoded list; `httlib-hpack` 0.1
//! has had no release since 2021 and bounds no list either).

mod decoder;
mod encoder;
pub mod huffman;
mod table;

pub use decoder::Decoder;
pub use encoder::{Encoder, MAX_TABLE_SIZE};

use bytes::Bytes;

/// A decoded header list, in order: (name, value).
pub type HeaderList = Vec<(Bytes, Bytes)>;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The block is not valid HPACK: a connection error (COMPRESSION_ERROR).
    #[error("HPACK: {0}")]
    Compression(&'static str),
    /// The block decoded fine (the table is in step) but its list is over the size limit.
    #[error("header list over SETTINGS_MAX_HEADER_LIST_SIZE")]
    ListTooLarge,
    /// The list is far over the size limit (an HPACK bomb): decoding stopped there, so the
    /// table is out of step and the connection must end (ENHANCE_YOUR_CALM).
    #[error("header list far over SETTINGS_MAX_HEADER_LIST_SIZE")]
    ListFarTooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<_>>().into()
    }

    fn decode(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut out = HeaderList::new();
        d.decode(&hex(block), &mut out).unwrap();
        out.into_iter()
            .map(|(n, v)| (String::from_utf8(n.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
            .collect()
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    const REQ1: &[(&str, &str)] =
        &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];

    #[test]
    fn rfc7541_c2_1_literal_with_indexing() {
        let mut d = Decoder::new(4096, 16384);
        let got = decode(&mut d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(got, fields(&[("custom-key", "custom-header")]));
        assert_eq!(d.table_size(), 55);
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        let mut d = Decoder::new(4096, 16384);
        assert_eq!(decode(&mut d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"), fields(REQ1));
        assert_eq!(d.table_size(), 57);
        assert_eq!(decode(&mut d, "8286 84be 5808 6e6f 2d63 6163 6865"), fields(REQ2));
        assert_eq!(d.table_size(), 110);
        assert_eq!(
            decode(&mut d, "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
            fields(REQ3)
        );
        assert_eq!(d.table_size(), 164);
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new(4096, 16384);
        assert_eq!(decode(&mut d, "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"), fields(REQ1));
        assert_eq!(decode(&mut d, "8286 84be 5886 a8eb 1064 9cbf"), fields(REQ2));
        assert_eq!(decode(&mut d, "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"), fields(REQ3));
        assert_eq!(d.table_size(), 164);
    }

    const RESP1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
    ];

    #[test]
    fn rfc7541_c5_responses_with_eviction() {
        let mut d = Decoder::new(256, 16384);
        let b1 = "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                  2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                  6c65 2e63 6f6d";
        assert_eq!(decode(&mut d, b1), fields(RESP1));
        assert_eq!(d.table_size(), 222);
        assert_eq!(decode(&mut d, "4803 3330 37c1 c0bf"), fields(RESP2));
        assert_eq!(d.table_size(), 222);
        let b3 = "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                  54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                  5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                  3d31";
        assert_eq!(decode(&mut d, b3), fields(RESP3));
        assert_eq!(d.table_size(), 215);
    }

    #[test]
    fn rfc7541_c6_responses_with_huffman() {
        let mut d = Decoder::new(256, 16384);
        let b1 = "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                  2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3";
        assert_eq!(decode(&mut d, b1), fields(RESP1));
        assert_eq!(d.table_size(), 222);
        assert_eq!(decode(&mut d, "4883 640e ffc1 c0bf"), fields(RESP2));
        let b3 = "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                  77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                  9587 3160 65c0 03ed 4ee5 b106 3d50 07";
        assert_eq!(decode(&mut d, b3), fields(RESP3));
        assert_eq!(d.table_size(), 215);
    }

    fn list(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(n, v)| (Bytes::copy_from_slice(n.as_bytes()), Bytes::copy_from_slice(v.as_bytes())))
            .collect()
    }

    #[test]
    fn encoder_round_trips_through_the_decoder_across_blocks() {
        let mut e = Encoder::default();
        let mut d = Decoder::new(4096, 16384);
        let call = |timeout: &str| {
            list(&[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/meshwork.echo.v1.Echo/Echo"),
                (":authority", "localhost:50051"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", timeout),
                ("authorization", "Bearer secret"),
                ("user-agent", "tonic/0.14"),
            ])
        };
        let mut sizes = Vec::new();
        for i in 0..50 {
            let fields = call(&format!("{i}m"));
            let mut block = bytes::BytesMut::new();
            e.encode(fields.iter().map(|(n, v)| (n, v)), &mut block);
            sizes.push(block.len());
            let mut out = HeaderList::new();
            d.decode(&block.freeze(), &mut out).unwrap();
            assert_eq!(out, fields);
        }
        // Repeated fields come from the dynamic table after the first call.
        assert!(sizes[1] < sizes[0] / 2, "{sizes:?}");
    }

    #[test]
    fn encoder_announces_table_size_changes() {
        let mut e = Encoder::default();
        let mut d = Decoder::new(4096, 16384);
        let fields = list(&[("x-a", "1"), ("x-b", "2")]);
        for peer_size in [4096, 0, 100, 50, 4096, 4096] {
            e.set_peer_max_table_size(peer_size);
            let mut block = bytes::BytesMut::new();
            e.encode(fields.iter().map(|(n, v)| (n, v)), &mut block);
            let mut out = HeaderList::new();
            d.decode(&block.freeze(), &mut out).unwrap();
            assert_eq!(out, fields);
            assert!(d.table_size() <= peer_size);
        }
    }

    #[test]
    fn hostile_blocks_are_errors_not_panics() {
        let bad = [
            "80",                   // index 0
            "be",                   // dynamic index beyond an empty table
            "ff ff ff ff ff ff 7f", // integer overflow
            "3fe2 1f",              // table size update above the setting (4097 > 4096)
            "82 20",                // size update after a field
            "40 7f ff ff ff 0f",    // string length beyond the block
            "40 85 ff ff ff ff ff", // Huffman EOS
            "00 03 61 62",          // name cut short
        ];
        for b in bad {
            let mut d = Decoder::new(4096, 16384);
            let mut out = HeaderList::new();
            assert!(matches!(d.decode(&hex(b), &mut out), Err(DecodeError::Compression(_))), "{b}");
        }
        // Random garbage never panics.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut d = Decoder::new(4096, 16384);
        for _ in 0..20_000 {
            let n = (next() % 48) as usize;
            let block: Bytes = (0..n).map(|_| next() as u8).collect::<Vec<_>>().into();
            let mut out = HeaderList::new();
            let _ = d.decode(&block, &mut out);
            assert!(d.table_size() <= 4096);
        }
    }

    #[test]
    fn oversized_list_is_refused_but_keeps_the_table_in_step() {
        let mut e = Encoder::default();
        let mut d = Decoder::new(4096, 200);
        let big = list(&[("x-a", &"a".repeat(100)), ("x-b", &"b".repeat(100)), ("x-c", "c")]);
        let mut block = bytes::BytesMut::new();
        e.encode(big.iter().map(|(n, v)| (n, v)), &mut block);
        let mut out = HeaderList::new();
        assert_eq!(d.decode(&block.freeze(), &mut out), Err(DecodeError::ListTooLarge));
        assert!(out.is_empty());
        // The next block, which refers to entries the refused one inserted, still decodes.
        let small = list(&[("x-c", "c")]);
        let mut block = bytes::BytesMut::new();
        e.encode(small.iter().map(|(n, v)| (n, v)), &mut block);
        d.decode(&block.freeze(), &mut out).unwrap();
        assert_eq!(out, small);
    }

    #[test]
    fn a_list_far_over_the_limit_stops_decoding() {
        // One 100-byte entry referenced 100 times: ~13 KB decoded against a limit of 200.
        let mut e = Encoder::default();
        let mut d = Decoder::new(4096, 200);
        let one = list(&[("x-a", &"a".repeat(100))]);
        let mut block = bytes::BytesMut::new();
        e.encode(one.iter().map(|(n, v)| (n, v)), &mut block);
        let mut out = HeaderList::new();
        d.decode(&block.freeze(), &mut out).unwrap();
        let bomb = bytes::Bytes::from(vec![0xbe; 100]);
        assert_eq!(d.decode(&bomb, &mut out.clone()), Err(DecodeError::ListFarTooLarge));
        // Twice the limit is only refused.
        let twice = bytes::Bytes::from(vec![0xbe; 3]);
        assert_eq!(d.decode(&twice, &mut HeaderList::new()), Err(DecodeError::ListTooLarge));
    }
}
