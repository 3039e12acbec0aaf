//! A hand-written recursive-descent parser of the LogQL subset, with positions: every error
//! reads `logql: at column N: expected X, found Y` (columns count characters from 1).

use std::time::Duration;

use super::ast::*;
use crate::labels::{unquote, valid_name};

/// A parse error: the column (1-based, in characters) and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("logql: at column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Where, 1-based.
    pub column: usize,
    /// What would have been valid.
    pub expected: String,
    /// What was there.
    pub found: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Dur(Duration),
    Op(&'static str),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Dur(d) => format!("duration {d:?}"),
            Tok::Op(o) => format!("`{o}`"),
            Tok::End => "end of query".into(),
        }
    }
}

const OPS: [&str; 20] =
    ["|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "=", ">", "<", "|", "{", "}", "(", ")", "[", "]", ",", "-"];

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    tok: Tok,
    tok_start: usize,
}

/// Parses a LogQL query.
pub fn parse(src: &str) -> Result<Query, ParseError> {
    let mut p = Parser { src, pos: 0, tok: Tok::End, tok_start: 0 };
    p.advance()?;
    let q = if matches!(p.tok, Tok::Op("{")) { Query::Log(p.log_query()?) } else { Query::Metric(p.metric()?) };
    if p.tok != Tok::End {
        return Err(p.error("end of query"));
    }
    Ok(q)
}

/// Parses one stream selector (`{a="b"}`) alone, as the Series API takes them.
pub fn parse_selector(src: &str) -> Result<Vec<Matcher>, ParseError> {
    let mut p = Parser { src, pos: 0, tok: Tok::End, tok_start: 0 };
    p.advance()?;
    let m = p.selector()?;
    if p.tok != Tok::End {
        return Err(p.error("end of selector"));
    }
    Ok(m)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
        // A part or a sum past `Duration::MAX` (~584 billion years) is refused, not a panic.
        total = total.checked_add(Duration::try_from_secs_f64(n * secs).ok()?)?;
    }
    Some(total)
}

/// Parses a Prometheus-style duration (`5m`, `1h30m`, `250ms`) as LogQL ranges and steps take.
pub fn duration(s: &str) -> Option<Duration> {
    parse_duration(s)
}

impl Parser<'_> {
    fn column(&self, byte: usize) -> usize {
        self.src[..byte.min(self.src.len())].chars().count() + 1
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError { column: self.column(self.tok_start), expected: expected.into(), found: self.tok.describe() }
    }

    fn advance(&mut self) -> Result<(), ParseError> {
        let b = self.src.as_bytes();
        while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        self.tok_start = self.pos;
        if self.pos >= b.len() {
            self.tok = Tok::End;
            return Ok(());
        }
        let c = b[self.pos];
        if c == b'"' || c == b'`' {
            let (s, end) = unquote(self.src, self.pos).map_err(|at| ParseError {
                column: self.column(at),
                expected: "a closed string".into(),
                found: "an unterminated string".into(),
            })?;
            self.pos = end;
            self.tok = Tok::Str(s);
            return Ok(());
        }
        if c.is_ascii_digit() {
            let start = self.pos;
            while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'.') {
                self.pos += 1;
            }
            let text = &self.src[start..self.pos];
            self.tok = if let Ok(n) = text.parse::<f64>() {
                Tok::Num(n)
            } else if let Some(d) = parse_duration(text) {
                Tok::Dur(d)
            } else {
                return Err(ParseError {
                    column: self.column(start),
                    expected: "a number or a duration".into(),
                    found: format!("`{text}`"),
                });
            };
            return Ok(());
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = self.pos;
            while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'_') {
                self.pos += 1;
            }
            self.tok = Tok::Ident(self.src[start..self.pos].to_string());
            return Ok(());
        }
        for op in OPS {
            if self.src[self.pos..].starts_with(op) {
                self.pos += op.len();
                self.tok = Tok::Op(op);
                return Ok(());
            }
        }
        let found = self.src[self.pos..].chars().next().map(|c| format!("`{c}`")).unwrap_or_default();
        Err(ParseError { column: self.column(self.pos), expected: "a token".into(), found })
    }

    fn eat(&mut self, op: &'static str) -> Result<(), ParseError> {
        if self.tok == Tok::Op(op) { self.advance() } else { Err(self.error(&format!("`{op}`"))) }
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match &self.tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.advance()?;
                Ok(s)
            }
            _ => Err(self.error(what)),
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        match &self.tok {
            Tok::Ident(s) => {
                let s = s.clone();
                self.advance()?;
                Ok(s)
            }
            _ => Err(self.error(what)),
        }
    }

    fn anchored(&self, pattern: &str, at: usize) -> Result<regex::Regex, ParseError> {
        regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| ParseError {
            column: self.column(at),
            expected: "a valid regular expression".into(),
            found: format!("{pattern:?} ({})", e.to_string().lines().last().unwrap_or_default().trim()),
        })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.eat("{")?;
        let mut matchers = Vec::new();
        loop {
            let name = self.ident("a label name")?;
            let op = match self.tok {
                Tok::Op("=") => MatchOp::Eq,
                Tok::Op("!=") => MatchOp::Ne,
                Tok::Op("=~") => MatchOp::Re,
                Tok::Op("!~") => MatchOp::NotRe,
                _ => return Err(self.error("one of `=`, `!=`, `=~`, `!~`")),
            };
            self.advance()?;
            let at = self.tok_start;
            let value = self.string("a quoted label value")?;
            let re = match op {
                MatchOp::Re | MatchOp::NotRe => Some(self.anchored(&value, at)?),
                _ => None,
            };
            matchers.push(Matcher { name, op, value, re });
            match self.tok {
                Tok::Op(",") => self.advance()?,
                Tok::Op("}") => break,
                _ => return Err(self.error("`,` or `}`")),
            }
        }
        self.eat("}")?;
        if !matchers.iter().any(|m| !m.matches("")) {
            return Err(ParseError {
                column: 1,
                expected: "at least one matcher that does not match the empty value".into(),
                found: "only matchers that match every stream".into(),
            });
        }
        Ok(matchers)
    }

    fn log_query(&mut self) -> Result<LogQuery, ParseError> {
        let matchers = self.selector()?;
        let mut stages = Vec::new();
        loop {
            let op = match self.tok {
                Tok::Op("|=") => Some(FilterOp::Contains),
                Tok::Op("!=") => Some(FilterOp::NotContains),
                Tok::Op("|~") => Some(FilterOp::Matches),
                Tok::Op("!~") => Some(FilterOp::NotMatches),
                _ => None,
            };
            if let Some(op) = op {
                self.advance()?;
                let at = self.tok_start;
                let pattern = self.string("a quoted filter term")?;
                let re = match op {
                    FilterOp::Matches | FilterOp::NotMatches => {
                        Some(regex::bytes::Regex::new(&pattern).map_err(|e| ParseError {
                            column: self.column(at),
                            expected: "a valid regular expression".into(),
                            found: format!("{pattern:?} ({})", e.to_string().lines().last().unwrap_or_default().trim()),
                        })?)
                    }
                    _ => None,
                };
                stages.push(Stage::Line(LineFilter { op, pattern, re }));
                continue;
            }
            if self.tok != Tok::Op("|") {
                break;
            }
            self.advance()?;
            match self.tok.clone() {
                Tok::Ident(k) if k == "json" => {
                    self.advance()?;
                    stages.push(Stage::Json);
                }
                Tok::Ident(k) if k == "logfmt" => {
                    self.advance()?;
                    stages.push(Stage::Logfmt);
                }
                Tok::Ident(k) if k == "line_format" => {
                    self.advance()?;
                    let at = self.tok_start;
                    let t = self.string("a quoted template")?;
                    stages.push(Stage::LineFormat(self.template(&t, at)?));
                }
                Tok::Ident(_) => stages.push(Stage::Label(self.label_filter()?)),
                _ => return Err(self.error("`json`, `logfmt`, `line_format` or a label filter")),
            }
        }
        Ok(LogQuery { matchers, stages })
    }

    fn template(&self, t: &str, at: usize) -> Result<Vec<TemplatePart>, ParseError> {
        let mut parts = Vec::new();
        let mut rest = t;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| ParseError {
                column: self.column(at),
                expected: "`}}` closing a template action".into(),
                found: format!("{t:?}"),
            })?;
            let inner = after[..close].trim();
            let name = inner.strip_prefix('.').filter(|n| valid_name(n)).ok_or_else(|| ParseError {
                column: self.column(at),
                expected: "a field reference like `{{.name}}`".into(),
                found: format!("`{{{{{inner}}}}}`"),
            })?;
            parts.push(TemplatePart::Field(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        Ok(parts)
    }

    fn label_filter(&mut self) -> Result<LabelFilter, ParseError> {
        let name = self.ident("a label name")?;
        let op = match self.tok {
            Tok::Op("=") | Tok::Op("==") => CmpOp::Eq,
            Tok::Op("!=") => CmpOp::Ne,
            Tok::Op("=~") => CmpOp::Re,
            Tok::Op("!~") => CmpOp::NotRe,
            Tok::Op(">") => CmpOp::Gt,
            Tok::Op(">=") => CmpOp::Ge,
            Tok::Op("<") => CmpOp::Lt,
            Tok::Op("<=") => CmpOp::Le,
            _ => return Err(self.error("a comparison (`=`, `!=`, `=~`, `!~`, `>`, `>=`, `<`, `<=`)")),
        };
        self.advance()?;
        let at = self.tok_start;
        let value = match (self.tok.clone(), op) {
            (Tok::Str(s), CmpOp::Eq | CmpOp::Ne) => {
                self.advance()?;
                FilterValue::Str(s, None)
            }
            (Tok::Str(s), CmpOp::Re | CmpOp::NotRe) => {
                self.advance()?;
                let re = self.anchored(&s, at)?;
                FilterValue::Str(s, Some(re))
            }
            (Tok::Num(n), CmpOp::Eq | CmpOp::Ne | CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le) => {
                self.advance()?;
                FilterValue::Num(n)
            }
            (Tok::Op("-"), CmpOp::Eq | CmpOp::Ne | CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le) => {
                self.advance()?;
                match self.tok {
                    Tok::Num(n) => {
                        self.advance()?;
                        FilterValue::Num(-n)
                    }
                    _ => return Err(self.error("a number")),
                }
            }
            (_, CmpOp::Re | CmpOp::NotRe) => return Err(self.error("a quoted regular expression")),
            (_, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le) => return Err(self.error("a number")),
            _ => return Err(self.error("a quoted string or a number")),
        };
        Ok(LabelFilter { name, op, value })
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = match &self.tok {
            Tok::Ident(k) if k == "by" => false,
            Tok::Ident(k) if k == "without" => true,
            _ => return Ok(None),
        };
        self.advance()?;
        self.eat("(")?;
        let mut labels = Vec::new();
        if self.tok != Tok::Op(")") {
            loop {
                labels.push(self.ident("a label name")?);
                if self.tok == Tok::Op(",") {
                    self.advance()?;
                } else {
                    break;
                }
            }
        }
        self.eat(")")?;
        Ok(Some(Grouping { without, labels }))
    }

    fn metric(&mut self) -> Result<MetricQuery, ParseError> {
        let name = match &self.tok {
            Tok::Ident(n) => n.clone(),
            _ => return Err(self.error("a stream selector `{...}` or a metric function")),
        };
        let range_op = match name.as_str() {
            "count_over_time" => Some(RangeOp::CountOverTime),
            "rate" => Some(RangeOp::Rate),
            "bytes_over_time" => Some(RangeOp::BytesOverTime),
            "bytes_rate" => Some(RangeOp::BytesRate),
            _ => None,
        };
        if let Some(op) = range_op {
            self.advance()?;
            self.eat("(")?;
            let log = self.log_query()?;
            self.eat("[")?;
            let range = match self.tok {
                Tok::Dur(d) if !d.is_zero() => d,
                _ => return Err(self.error("a range duration like `5m`")),
            };
            self.advance()?;
            self.eat("]")?;
            self.eat(")")?;
            return Ok(MetricQuery::Range { op, log, range });
        }
        let simple = match name.as_str() {
            "sum" => Some(VectorOp::Sum),
            "avg" => Some(VectorOp::Avg),
            "max" => Some(VectorOp::Max),
            "min" => Some(VectorOp::Min),
            "count" => Some(VectorOp::Count),
            "topk" | "bottomk" => None,
            _ => {
                return Err(self.error(
                    "a stream selector `{...}` or one of count_over_time, rate, bytes_over_time, bytes_rate, sum, avg, max, min, count, topk, bottomk",
                ));
            }
        };
        self.advance()?;
        let mut grouping = self.grouping()?;
        self.eat("(")?;
        let op = match simple {
            Some(op) => op,
            None => {
                let k = match self.tok {
                    Tok::Num(n) if n >= 1.0 && n.fract() == 0.0 && n <= 10_000.0 => n as usize,
                    _ => return Err(self.error("k, a whole number from 1 to 10000")),
                };
                self.advance()?;
                self.eat(",")?;
                if name == "topk" { VectorOp::TopK(k) } else { VectorOp::BottomK(k) }
            }
        };
        let inner = self.metric()?;
        self.eat(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        Ok(MetricQuery::Vector { op, grouping, inner: Box::new(inner) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset() {
        for ok in [
            r#"{app="x"}"#,
            r#"{app="x", level=~"warn|error", host!="a", env!~"dev.*"} |= "error" != "timeout" |~ "code=5\\d\\d" !~ `^DEBUG`"#,
            r#"{app="x"} | json | status >= 500 | method="GET" | line_format "{{.method}} {{ .path }}""#,
            r#"{app="x"} | logfmt | duration > 1.5 | level=~"err.*""#,
            r#"count_over_time({app="x"} |= "err" [5m])"#,
            r#"sum by (level) (rate({app="x"}[1m]))"#,
            r#"sum(bytes_over_time({app="x"}[1h])) without (host)"#,
            r#"topk(3, sum by (host) (count_over_time({app="x"}[5m])))"#,
            r#"avg(count_over_time({app="x"}[30s]))"#,
        ] {
            parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        let cases = [
            (r#"{app="x""#, 9, "`,` or `}`"),
            (r#"{app=x}"#, 6, "a quoted label value"),
            (r#"{app="x"} |= error"#, 14, "a quoted filter term"),
            (r#"{app="x"} | foo 1"#, 17, "a comparison"),
            (r#"{app="x"} | foo ~ 1"#, 17, "a token"),
            (r#"count_over_time({app="x"})"#, 26, "`[`"),
            (r#"sum(count_over_time({app="x"}[5m]"#, 34, "`)`"),
            (r#"{app=~"("}"#, 7, "a valid regular expression"),
            (r#"{app="x"} extra"#, 11, "end of query"),
            (r#"{app=""}"#, 1, "at least one matcher"),
            ("", 1, "a stream selector"),
        ];
        for (q, col, expected) in cases {
            let e = parse(q).unwrap_err();
            assert_eq!(e.column, col, "{q}: {e}");
            assert!(e.expected.starts_with(expected), "{q}: {e}");
            assert!(e.to_string().starts_with(&format!("logql: at column {col}: expected")));
        }
    }

    #[test]
    fn no_prefix_or_mangling_of_a_query_panics() {
        let queries = [
            r#"topk by (a) (3, sum without (b) (rate({app="é\"x", b=~"(a|b)+"} |= "ü" !~ `x` | json | n >= -1.5 | line_format "{{.a}}é" [5m])))"#,
            r#"{a!~"x"} | logfmt | s="v" | t=~"\d+" | line_format "{{ .a }"#,
        ];
        for q in queries {
            for (i, _) in q.char_indices() {
                let _ = parse(&q[..i]);
                let _ = parse(&q[i..]);
                let _ = crate::labels::LabelSet::parse(&q[i..]);
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(duration("5x"), None);
        // Found by fuzzing (fuzz/corpus/logql/regression-huge-duration): too long for a
        // `Duration`, alone or summed, panicked.
        assert_eq!(duration(&format!("1h{}30m", "7".repeat(74))), None);
        assert_eq!(duration("99999999999999999999y"), None);
        assert_eq!(duration("500000000000y500000000000y"), None);
        let e = parse(r#"count_over_time({app="x"}[99999999999999999999y])"#).unwrap_err();
        assert_eq!((e.column, e.expected.as_str()), (27, "a number or a duration"));
    }
}
