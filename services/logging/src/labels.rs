//! Stream label sets: parsing Loki's label string form (`{a="b", c="d"}`), validation (names
//! `[a-zA-Z_][a-zA-Z0-9_]*`, 1 to 15 labels), the canonical sorted form and its stable 64-bit
//! fingerprint, which names the stream in keys and in memory.

use std::fmt;

/// Most labels a stream may carry (Loki's `max_label_names_per_series`).
pub const MAX_LABELS: usize = 15;
/// Longest label name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Longest label value, in bytes.
pub const MAX_VALUE_BYTES: usize = 2048;

/// Why a label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The text is not of the `{name="value", ...}` form, or a name/value is malformed.
    #[error("{0}")]
    Malformed(String),
    /// More than [`MAX_LABELS`] labels.
    #[error("{0} labels, more than the {MAX_LABELS} allowed")]
    TooMany(usize),
}

/// A stream's labels, sorted by name, names unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LabelSet(Vec<(String, String)>);

/// Returns true when `name` is a valid label name.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_BYTES
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Returns `name` with every character not allowed in a label name replaced by `_` (and a
/// leading digit prefixed by `_`), as Loki does for OTLP attribute names and parsed fields.
pub fn sanitize_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out
}

impl LabelSet {
    /// Builds a validated set from pairs in any order.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<LabelSet, LabelError> {
        let mut v: Vec<(String, String)> = pairs.into_iter().collect();
        if v.is_empty() {
            return Err(LabelError::Malformed("at least one label is required".into()));
        }
        if v.len() > MAX_LABELS {
            return Err(LabelError::TooMany(v.len()));
        }
        for (name, value) in &v {
            if !valid_name(name) {
                return Err(LabelError::Malformed(format!("label name {name:?} is not [a-zA-Z_][a-zA-Z0-9_]*")));
            }
            if value.is_empty() || value.len() > MAX_VALUE_BYTES || value.contains('\0') {
                return Err(LabelError::Malformed(format!(
                    "label {name}: value must be 1 to {MAX_VALUE_BYTES} bytes without NUL"
                )));
            }
        }
        v.sort();
        if v.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(LabelError::Malformed("duplicate label name".into()));
        }
        Ok(LabelSet(v))
    }

    /// Builds a set without validation (extracted labels of a query, already sanitized).
    pub fn from_sorted_unchecked(pairs: Vec<(String, String)>) -> LabelSet {
        LabelSet(pairs)
    }

    /// Parses Loki's label string form, `{name="value", other="x"}` (values with Go string
    /// escapes).
    pub fn parse(text: &str) -> Result<LabelSet, LabelError> {
        let mut p = Cursor { s: text.as_bytes(), i: 0 };
        p.ws();
        p.expect(b'{')?;
        let mut pairs = Vec::new();
        p.ws();
        if p.peek() != Some(b'}') {
            loop {
                p.ws();
                let start = p.i;
                while p.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    p.i += 1;
                }
                let name = text[start..p.i].to_string();
                p.ws();
                p.expect(b'=')?;
                p.ws();
                let value = p.string(text)?;
                pairs.push((name, value));
                p.ws();
                match p.peek() {
                    Some(b',') => p.i += 1,
                    Some(b'}') => break,
                    _ => return Err(p.err("`,` or `}`")),
                }
            }
        }
        p.expect(b'}')?;
        p.ws();
        if p.i != p.s.len() {
            return Err(p.err("end of labels"));
        }
        LabelSet::from_pairs(pairs)
    }

    /// Returns the labels, sorted by name.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Returns the value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.0[i].1.as_str())
    }

    /// Returns the stable 64-bit fingerprint (FNV-1a over the sorted pairs).
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (n, v) in &self.0 {
            for b in n.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
}

impl fmt::Display for LabelSet {
    /// Writes Loki's form, `{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={}", quote(v))?;
        }
        f.write_str("}")
    }
}

/// Returns `s` as a double-quoted Go string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn err(&self, expected: &str) -> LabelError {
        LabelError::Malformed(format!("labels: at column {}: expected {expected}", self.i + 1))
    }

    fn expect(&mut self, c: u8) -> Result<(), LabelError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("`{}`", c as char)))
        }
    }

    fn string(&mut self, text: &str) -> Result<String, LabelError> {
        let (value, end) = unquote(text, self.i)
            .map_err(|col| LabelError::Malformed(format!("labels: at column {}: expected a quoted string", col + 1)))?;
        self.i = end;
        Ok(value)
    }
}

/// Parses a Go string literal (`"..."` with escapes, or a raw `` `...` ``) starting at byte `at`
/// of `text`; returns the value and the byte after it, or the byte offset of the problem.
pub fn unquote(text: &str, at: usize) -> Result<(String, usize), usize> {
    let b = text.as_bytes();
    match b.get(at) {
        Some(b'`') => {
            let rest = &text[at + 1..];
            let end = rest.find('`').ok_or(at)?;
            Ok((rest[..end].to_string(), at + 1 + end + 1))
        }
        Some(b'"') => {
            let mut out = String::new();
            let mut chars = text[at + 1..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => return Ok((out, at + 1 + i + 1)),
                    '\\' => match chars.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 't')) => out.push('\t'),
                        Some((_, 'r')) => out.push('\r'),
                        Some((_, '"')) => out.push('"'),
                        Some((_, '\\')) => out.push('\\'),
                        Some((_, '\'')) => out.push('\''),
                        Some((_, c)) => {
                            // Unknown escapes keep the backslash (regexes like `\d` are common).
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err(at + 1 + i),
                    },
                    c => out.push(c),
                }
            }
            Err(text.len())
        }
        _ => Err(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sorts_and_prints() {
        let l = LabelSet::parse(r#"{service="api", level="error", msg="a \"q\""}"#).unwrap();
        assert_eq!(l.to_string(), r#"{level="error", msg="a \"q\"", service="api"}"#);
        assert_eq!(LabelSet::parse(&l.to_string()).unwrap(), l);
        assert_eq!(l.get("service"), Some("api"));
        assert_eq!(
            l.fingerprint(),
            LabelSet::parse(r#"{msg="a \"q\"",level="error",service="api"}"#).unwrap().fingerprint()
        );
    }

    #[test]
    fn refuses_bad_sets() {
        for bad in ["", "{}", "{a=b}", r#"{1a="x"}"#, r#"{a="x",a="y"}"#, r#"{a=""}"#, r#"{a="x""#, r#"{a="x"} x"#] {
            assert!(LabelSet::parse(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..16).map(|i| format!("l{i}=\"v\"")).collect();
        assert_eq!(LabelSet::parse(&format!("{{{}}}", many.join(","))), Err(LabelError::TooMany(16)));
    }
}
