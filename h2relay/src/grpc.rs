//! gRPC's message framing, as far as the relay reads it: the 5-byte length prefix of each
//! message, for the size caps ([`crate::Route::max_request_message`]).

/// Follows gRPC length-prefixed messages (1 flag byte, 4 length bytes, payload) across body
/// chunks.
#[derive(Debug, Clone, Default)]
pub struct MessageMeter {
    /// Bytes of the current 5-byte prefix seen so far.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
}

impl MessageMeter {
    /// Feeds the next chunk; returns the length of the first message larger than `cap`.
    pub fn feed(&mut self, mut chunk: &[u8], cap: u32) -> Result<(), u64> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let take = (self.remaining as usize).min(chunk.len());
                self.remaining -= take as u64;
                chunk = &chunk[take..];
                continue;
            }
            let take = (5 - self.prefix_len).min(chunk.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&chunk[..take]);
            self.prefix_len += take;
            chunk = &chunk[take..];
            if self.prefix_len == 5 {
                let len =
                    u64::from(u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]));
                if len > u64::from(cap) {
                    return Err(len);
                }
                self.remaining = len;
                self.prefix_len = 0;
            }
        }
        Ok(())
    }
}
