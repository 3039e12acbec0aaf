//! ghz's call templates for `-d` and `-m`: Go `text/template` actions over the call data
//! (`{{.RequestNumber}}`, `{{.WorkerID}}`, `{{.UUID}}`, `{{.Timestamp}}`, ...) and the
//! functions `newUUID`, `randomString N` and `randomInt MIN MAX`, plus `{{.Key}}` for a
//! scenario's key list. A template is parsed once; one without per-request actions is
//! rendered once and its request encoded once.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::Error;

/// What a template can refer to that stays the same for every request of a run.
#[derive(Debug, Clone, Default)]
pub struct MethodNames {
    /// `pkg.Service.Method`.
    pub fully_qualified: String,
    /// `Method`.
    pub method: String,
    /// `Service`.
    pub service: String,
    /// Request message name.
    pub input: String,
    /// Response message name.
    pub output: String,
}

/// Per-request values a template can refer to.
#[derive(Debug, Clone, Copy)]
pub struct CallData<'a> {
    /// Unique number of the request in the run, from 0.
    pub request_number: u64,
    /// Number of the worker sending it.
    pub worker_id: usize,
    /// The scenario key chosen for this request, if any.
    pub key: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    RequestNumber,
    WorkerId,
    FullyQualifiedName,
    MethodName,
    ServiceName,
    InputName,
    OutputName,
    IsClientStreaming,
    IsServerStreaming,
    Timestamp,
    TimestampUnix,
    TimestampUnixMilli,
    TimestampUnixNano,
    Uuid,
    Key,
}

impl Field {
    fn per_request(self) -> bool {
        !matches!(
            self,
            Field::FullyQualifiedName
                | Field::MethodName
                | Field::ServiceName
                | Field::InputName
                | Field::OutputName
                | Field::IsClientStreaming
                | Field::IsServerStreaming
        )
    }
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Field(Field),
    NewUuid,
    RandomString(usize),
    RandomInt(i64, i64),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; an unknown action is an error naming it.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| Error::Template(format!("unclosed action in {text:?}")))?;
            parts.push(action(after[..close].trim_matches(|c: char| c == '-' || c.is_whitespace()))?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Returns true when rendering gives a different text per request.
    pub fn is_per_request(&self) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Literal(_) => false,
            Part::Field(f) => f.per_request(),
            _ => true,
        })
    }

    /// Returns true when the template refers to `{{.Key}}`.
    pub fn uses_key(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(Field::Key)))
    }

    /// Renders the template for one request into `out`.
    pub fn render(&self, names: &MethodNames, call: CallData<'_>, rng: &mut impl Rng, out: &mut String) {
        use std::fmt::Write;
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(f) => match f {
                    Field::RequestNumber => {
                        let _ = write!(out, "{}", call.request_number);
                    }
                    Field::WorkerId => {
                        let _ = write!(out, "{}", call.worker_id);
                    }
                    Field::FullyQualifiedName => out.push_str(&names.fully_qualified),
                    Field::MethodName => out.push_str(&names.method),
                    Field::ServiceName => out.push_str(&names.service),
                    Field::InputName => out.push_str(&names.input),
                    Field::OutputName => out.push_str(&names.output),
                    Field::IsClientStreaming | Field::IsServerStreaming => out.push_str("false"),
                    Field::Timestamp => out.push_str(&rfc3339(SystemTime::now())),
                    Field::TimestampUnix => {
                        let _ = write!(out, "{}", unix_nanos() / 1_000_000_000);
                    }
                    Field::TimestampUnixMilli => {
                        let _ = write!(out, "{}", unix_nanos() / 1_000_000);
                    }
                    Field::TimestampUnixNano => {
                        let _ = write!(out, "{}", unix_nanos());
                    }
                    Field::Uuid => push_uuid(rng, out),
                    Field::Key => out.push_str(call.key.unwrap_or("")),
                },
                Part::NewUuid => push_uuid(rng, out),
                Part::RandomString(n) => random_string(*n, rng, out),
                Part::RandomInt(lo, hi) => {
                    let _ = write!(out, "{}", if lo < hi { rng.random_range(*lo..*hi) } else { *lo });
                }
            }
        }
    }
}

fn action(body: &str) -> Result<Part, Error> {
    let words: Vec<&str> = body.split_whitespace().collect();
    let bad = || Error::Template(format!("unsupported action {{{{{body}}}}}"));
    match words.as_slice() {
        [field] if field.starts_with('.') => {
            let f = match &field[1..] {
                "RequestNumber" => Field::RequestNumber,
                "WorkerID" => Field::WorkerId,
                "FullyQualifiedName" => Field::FullyQualifiedName,
                "MethodName" => Field::MethodName,
                "ServiceName" => Field::ServiceName,
                "InputName" => Field::InputName,
                "OutputName" => Field::OutputName,
                "IsClientStreaming" => Field::IsClientStreaming,
                "IsServerStreaming" => Field::IsServerStreaming,
                "Timestamp" => Field::Timestamp,
                "TimestampUnix" => Field::TimestampUnix,
                "TimestampUnixMilli" => Field::TimestampUnixMilli,
                "TimestampUnixNano" => Field::TimestampUnixNano,
                "UUID" => Field::Uuid,
                "Key" => Field::Key,
                _ => return Err(bad()),
            };
            Ok(Part::Field(f))
        }
        ["newUUID"] => Ok(Part::NewUuid),
        ["randomString"] => Ok(Part::RandomString(0)),
        ["randomString", n] => Ok(Part::RandomString(n.parse().map_err(|_| bad())?)),
        ["randomInt", lo, hi] => Ok(Part::RandomInt(lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?)),
        _ => Err(bad()),
    }
}

const CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Appends `n` random letters and digits (2-16 of them when `n` is 0, as ghz does).
fn random_string(n: usize, rng: &mut impl Rng, out: &mut String) {
    let n = if n == 0 { rng.random_range(2..=16) } else { n };
    for _ in 0..n {
        out.push(char::from(CHARSET[rng.random_range(0..CHARSET.len())]));
    }
}

/// Appends a random (version 4) UUID.
fn push_uuid(rng: &mut impl Rng, out: &mut String) {
    use std::fmt::Write;
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Formats `t` as RFC 3339 in UTC with second precision (`2026-11-28T10:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    meshwork_clock::rfc3339_seconds(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Template, n: u64) -> String {
        let mut out = String::new();
        t.render(
            &MethodNames::default(),
            CallData { request_number: n, worker_id: 3, key: Some("k1") },
            &mut rand::rng(),
            &mut out,
        );
        out
    }

    #[test]
    fn renders_fields_and_functions() {
        let t = Template::parse(r#"{"n":"{{.RequestNumber}}","w":"{{ .WorkerID }}","s":"{{randomString 8}}","u":"{{newUUID}}","k":"{{.Key}}"}"#).unwrap();
        assert!(t.is_per_request());
        let out = render(&t, 42);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["n"], "42");
        assert_eq!(v["w"], "3");
        assert_eq!(v["s"].as_str().unwrap().len(), 8);
        let u = v["u"].as_str().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(v["k"], "k1");
    }

    #[test]
    fn static_templates_are_detected() {
        assert!(!Template::parse(r#"{"code":"abc"}"#).unwrap().is_per_request());
        assert!(!Template::parse(r#"{"m":"{{.MethodName}}"}"#).unwrap().is_per_request());
        assert!(Template::parse("{{.Bogus}}").is_err());
        assert!(Template::parse("{{.RequestNumber").is_err());
    }

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(1_764_322_245)), "2025-11-28T09:30:45Z");
    }
}
