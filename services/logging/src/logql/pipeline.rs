//! Runs a log query's pipeline over a block of entries. The first `|=` term is searched over the
//! block's whole text with `memchr::memmem` (one pass, as ripgrep does, instead of a search per
//! line); the remaining filters run on the candidate lines only. Parsers (`json`, `logfmt`)
//! turn fields into labels (structured metadata is visible as labels too), label filters test
//! them and `line_format` rewrites the line.

use std::borrow::Cow;
use std::collections::BTreeMap;

use memchr::memmem;

use super::ast::*;
use crate::chunk::Columns;
use crate::labels::{LabelSet, sanitize_name};

/// A compiled pipeline.
pub struct Pipeline<'q> {
    query: &'q LogQuery,
    /// The first stage, when it is a `|=` term usable for the whole-text search.
    lead: Option<memmem::Finder<'q>>,
    /// Finders of the `|=`/`!=` terms by stage index.
    finders: Vec<Option<memmem::Finder<'q>>>,
    transforms: bool,
}

/// One entry that passed the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Unix nanoseconds.
    pub ts: i64,
    /// The line (rewritten by `line_format` if any).
    pub line: String,
    /// The labels after parsers, or `None` when they are the stream's own.
    pub labels: Option<LabelSet>,
}

/// Counters of a scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Lines examined (in the time range).
    pub lines: u64,
    /// Bytes of the block's text.
    pub bytes: u64,
}

impl<'q> Pipeline<'q> {
    /// Compiles `query`'s pipeline.
    pub fn new(query: &'q LogQuery) -> Pipeline<'q> {
        let finders = query
            .stages
            .iter()
            .map(|s| match s {
                Stage::Line(f) if matches!(f.op, FilterOp::Contains | FilterOp::NotContains) => {
                    Some(memmem::Finder::new(f.pattern.as_bytes()))
                }
                _ => None,
            })
            .collect();
        let lead = match query.stages.first() {
            Some(Stage::Line(f))
                if f.op == FilterOp::Contains && !f.pattern.is_empty() && !f.pattern.contains('\n') =>
            {
                Some(memmem::Finder::new(f.pattern.as_bytes()))
            }
            _ => None,
        };
        Pipeline { query, lead, finders, transforms: query.has_transforms() }
    }

    /// Returns false when no line of a block whose lines joined by `\n` are `text` can pass:
    /// the query's leading `|=` term (which holds no `\n`, so a match never spans two lines)
    /// does not occur in it. True when there is no such term.
    pub fn may_match_text(&self, text: &[u8]) -> bool {
        self.lead.as_ref().is_none_or(|f| f.find(text).is_some())
    }

    /// Runs the pipeline over the entries of `cols` with `start <= ts < end`, calling `emit`
    /// for each entry that passes.
    pub fn scan(
        &self,
        stream: &LabelSet,
        cols: &Columns,
        start: i64,
        end: i64,
        mut emit: impl FnMut(Hit),
    ) -> ScanStats {
        let mut stats = ScanStats { lines: 0, bytes: cols.text.len() as u64 };
        let first_stage = usize::from(self.lead.is_some());
        let mut check = |i: usize, stats: &mut ScanStats| {
            let ts = cols.ts[i];
            if ts < start || ts >= end {
                return;
            }
            stats.lines += 1;
            if let Some(hit) = self.entry(stream, cols, i, first_stage) {
                emit(hit);
            }
        };
        match &self.lead {
            Some(finder) => {
                // Lines counted as scanned: all of the block's in range, as a per-line scan would.
                let text = &cols.text;
                let mut pos = 0;
                let mut line = 0;
                while let Some(off) = finder.find(&text[pos..]) {
                    let at = (pos + off) as u32;
                    // Advance to the line holding the match (lines end at `ends[line]`).
                    while line < cols.len() && cols.ends[line] < at + finder.needle().len() as u32 {
                        line += 1;
                    }
                    if line >= cols.len() {
                        break;
                    }
                    check(line, &mut stats);
                    pos = cols.ends[line] as usize + 1;
                    line += 1;
                    if pos >= text.len() {
                        break;
                    }
                }
                stats.lines = cols.ts.iter().filter(|&&t| t >= start && t < end).count() as u64;
            }
            None => {
                for i in 0..cols.len() {
                    check(i, &mut stats);
                }
            }
        }
        stats
    }

    fn line_passes(&self, idx: usize, f: &LineFilter, line: &[u8]) -> bool {
        match f.op {
            FilterOp::Contains => self.finders[idx].as_ref().is_some_and(|m| m.find(line).is_some()),
            FilterOp::NotContains => self.finders[idx].as_ref().is_some_and(|m| m.find(line).is_none()),
            FilterOp::Matches => f.re.as_ref().is_some_and(|r| r.is_match(line)),
            FilterOp::NotMatches => !f.re.as_ref().is_some_and(|r| r.is_match(line)),
        }
    }

    fn entry(&self, stream: &LabelSet, cols: &Columns, i: usize, skip: usize) -> Option<Hit> {
        let raw = cols.line(i);
        if !self.transforms {
            for (idx, stage) in self.query.stages.iter().enumerate().skip(skip) {
                if let Stage::Line(f) = stage
                    && !self.line_passes(idx, f, raw)
                {
                    return None;
                }
            }
            return Some(Hit { ts: cols.ts[i], line: String::from_utf8_lossy(raw).into_owned(), labels: None });
        }
        let mut line: Cow<'_, [u8]> = Cow::Borrowed(raw);
        let mut labels: BTreeMap<String, String> = stream.pairs().iter().cloned().collect();
        for (k, v) in cols.metadata(i) {
            labels.entry(k).or_insert(v);
        }
        for (idx, stage) in self.query.stages.iter().enumerate().skip(skip) {
            match stage {
                Stage::Line(f) => {
                    if !self.line_passes(idx, f, &line) {
                        return None;
                    }
                }
                Stage::Json => extract_json(&line, &mut labels),
                Stage::Logfmt => extract_logfmt(&String::from_utf8_lossy(&line), &mut labels),
                Stage::Label(f) => {
                    if !label_passes(f, labels.get(&f.name).map(String::as_str)) {
                        return None;
                    }
                }
                Stage::LineFormat(parts) => {
                    let mut out = String::new();
                    for p in parts {
                        match p {
                            TemplatePart::Text(t) => out.push_str(t),
                            TemplatePart::Field(n) => out.push_str(labels.get(n).map(String::as_str).unwrap_or("")),
                        }
                    }
                    line = Cow::Owned(out.into_bytes());
                }
            }
        }
        let labels = LabelSet::from_sorted_unchecked(labels.into_iter().filter(|(_, v)| !v.is_empty()).collect());
        Some(Hit { ts: cols.ts[i], line: String::from_utf8_lossy(&line).into_owned(), labels: Some(labels) })
    }
}

fn label_passes(f: &LabelFilter, value: Option<&str>) -> bool {
    let v = value.unwrap_or("");
    match (&f.value, f.op) {
        (FilterValue::Str(s, _), CmpOp::Eq) => v == s,
        (FilterValue::Str(s, _), CmpOp::Ne) => v != s,
        (FilterValue::Str(_, re), CmpOp::Re) => re.as_ref().is_some_and(|r| r.is_match(v)),
        (FilterValue::Str(_, re), CmpOp::NotRe) => !re.as_ref().is_some_and(|r| r.is_match(v)),
        (FilterValue::Num(n), op) => {
            // A value that is not a number fails every numeric comparison (Loki marks it an
            // error and drops it from the results).
            let Ok(x) = v.trim().parse::<f64>() else { return false };
            match op {
                CmpOp::Eq => x == *n,
                CmpOp::Ne => x != *n,
                CmpOp::Gt => x > *n,
                CmpOp::Ge => x >= *n,
                CmpOp::Lt => x < *n,
                CmpOp::Le => x <= *n,
                CmpOp::Re | CmpOp::NotRe => false,
            }
        }
        (FilterValue::Str(..), _) => false,
    }
}

fn insert_extracted(labels: &mut BTreeMap<String, String>, name: &str, value: String) {
    let mut name = sanitize_name(name);
    if labels.contains_key(&name) {
        // A parsed field never overwrites a stream label: it is renamed, as Loki does.
        name.push_str("_extracted");
    }
    labels.insert(name, value);
}

fn flatten(prefix: &str, v: &serde_json::Value, labels: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}_{k}") };
                flatten(&key, v, labels);
            }
        }
        serde_json::Value::Array(_) => {}
        serde_json::Value::String(s) => insert_extracted(labels, prefix, s.clone()),
        serde_json::Value::Null => insert_extracted(labels, prefix, String::new()),
        other => insert_extracted(labels, prefix, other.to_string()),
    }
}

/// Adds the fields of a JSON object line to `labels` (nested keys joined by `_`).
pub fn extract_json(line: &[u8], labels: &mut BTreeMap<String, String>) {
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(line) {
        flatten("", &v, labels);
    }
}

/// Adds the `key=value` pairs of a logfmt line to `labels`.
pub fn extract_logfmt(line: &str, labels: &mut BTreeMap<String, String>) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[ks..i];
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            match crate::labels::unquote(line, i) {
                Ok((v, end)) => {
                    i = end;
                    v
                }
                Err(_) => {
                    let v = line[i + 1..].to_string();
                    i = b.len();
                    v
                }
            }
        } else {
            let vs = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            line[vs..i].to_string()
        };
        if !key.is_empty() {
            insert_extracted(labels, key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::parser::parse;

    fn run(q: &str, lines: &[&str]) -> Vec<String> {
        let Query::Log(lq) = parse(q).unwrap() else { panic!("not a log query") };
        let stream = LabelSet::parse(r#"{app="x"}"#).unwrap();
        let mut cols = Columns::default();
        for (i, l) in lines.iter().enumerate() {
            cols.push(i as i64, l, &[]);
        }
        let mut out = Vec::new();
        Pipeline::new(&lq).scan(&stream, &cols, 0, i64::MAX, |h| out.push(h.line));
        out
    }

    #[test]
    fn filters_parsers_and_format() {
        let lines = ["error a", "ok b error", "fine", "erro", "error"];
        assert_eq!(run(r#"{app="x"} |= "error""#, &lines), vec!["error a", "ok b error", "error"]);
        assert_eq!(run(r#"{app="x"} |= "error" != "ok""#, &lines), vec!["error a", "error"]);
        assert_eq!(run(r#"{app="x"} != "error""#, &lines), vec!["fine", "erro"]);
        assert_eq!(run(r#"{app="x"} |~ "^e.*a$""#, &lines), vec!["error a"]);
        let json = [
            r#"{"status":500,"req":{"method":"GET"},"app":"y"}"#,
            r#"{"status":200,"req":{"method":"PUT"}}"#,
            "not json",
        ];
        assert_eq!(
            run(r#"{app="x"} | json | status >= 500 | line_format "{{.req_method}} {{.app_extracted}}""#, &json),
            vec!["GET y"]
        );
        let lf = [r#"level=error msg="disk full" dur=1.5"#, "level=info msg=ok dur=0.2"];
        assert_eq!(run(r#"{app="x"} | logfmt | level="error" | line_format "{{.msg}}""#, &lf), vec!["disk full"]);
        assert_eq!(run(r#"{app="x"} | logfmt | dur < 1"#, &lf), vec!["level=info msg=ok dur=0.2"]);
    }

    #[test]
    fn whole_text_search_finds_every_line_once() {
        let lines = ["aa", "a", "aaa", "baab", "xa", "ab"];
        assert_eq!(run(r#"{app="x"} |= "aa""#, &lines), vec!["aa", "aaa", "baab"]);
        assert_eq!(run(r#"{app="x"} |= "ab""#, &lines), vec!["baab", "ab"]);
    }
}
