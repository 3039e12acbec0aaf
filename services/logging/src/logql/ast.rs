//! The syntax tree of the LogQL subset: log queries (a stream selector and a pipeline of line
//! filters, parsers, label filters and `line_format`) and metric queries (range aggregations
//! over a log query, then vector aggregations).

use std::time::Duration;

/// How a stream matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~` (anchored regex)
    Re,
    /// `!~` (anchored regex)
    NotRe,
}

/// One `name op "value"` of a stream selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or pattern as written.
    pub value: String,
    /// The compiled anchored pattern for `=~`/`!~`.
    pub re: Option<regex::Regex>,
}

impl Matcher {
    /// Returns true when a label value (`""` when absent) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Eq => value == self.value,
            MatchOp::Ne => value != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

/// A line filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `|= "term"`: the line contains the term.
    Contains,
    /// `!= "term"`: the line does not contain the term.
    NotContains,
    /// `|~ "re"`: the regex matches somewhere in the line.
    Matches,
    /// `!~ "re"`: the regex matches nowhere in the line.
    NotMatches,
}

/// A line filter.
#[derive(Debug, Clone)]
pub struct LineFilter {
    /// The operator.
    pub op: FilterOp,
    /// The term or pattern as written.
    pub pattern: String,
    /// The compiled regex for `|~` and `!~`.
    pub re: Option<regex::bytes::Regex>,
}

/// A comparison in a label filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// What a label filter compares with.
#[derive(Debug, Clone)]
pub enum FilterValue {
    /// A string (with `=`, `!=`, `=~`, `!~`).
    Str(String, Option<regex::Regex>),
    /// A number (any operator): the label's value is parsed as a number.
    Num(f64),
}

/// `| name op value`, after a parser.
#[derive(Debug, Clone)]
pub struct LabelFilter {
    /// The label compared.
    pub name: String,
    /// The comparison.
    pub op: CmpOp,
    /// The value.
    pub value: FilterValue,
}

/// A piece of a `line_format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Text(String),
    /// `{{.name}}`: a label's value (empty when absent).
    Field(String),
}

/// One stage of a log pipeline.
#[derive(Debug, Clone)]
pub enum Stage {
    /// A line filter.
    Line(LineFilter),
    /// `| json`: the line's JSON fields become labels (nested keys joined by `_`).
    Json,
    /// `| logfmt`: the line's `key=value` pairs become labels.
    Logfmt,
    /// A label filter.
    Label(LabelFilter),
    /// `| line_format "..."`: the line is replaced by the rendered template.
    LineFormat(Vec<TemplatePart>),
}

/// A log query: which streams, then what happens to each line.
#[derive(Debug, Clone)]
pub struct LogQuery {
    /// The stream selector's matchers.
    pub matchers: Vec<Matcher>,
    /// The pipeline.
    pub stages: Vec<Stage>,
}

impl LogQuery {
    /// Returns true when the pipeline has a parser or `line_format` (lines or labels change).
    pub fn has_transforms(&self) -> bool {
        self.stages.iter().any(|s| matches!(s, Stage::Json | Stage::Logfmt | Stage::LineFormat(_) | Stage::Label(_)))
    }

    /// Returns the literal terms every result line must contain (the `|=` filters before any
    /// `line_format`): what the chunk blooms are asked about.
    pub fn required_terms(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for s in &self.stages {
            match s {
                Stage::Line(f) if f.op == FilterOp::Contains => out.push(f.pattern.as_str()),
                Stage::LineFormat(_) => break,
                _ => {}
            }
        }
        out
    }
}

/// A range aggregation over a log query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    /// Lines in the range.
    CountOverTime,
    /// Lines per second in the range.
    Rate,
    /// Line bytes in the range.
    BytesOverTime,
    /// Line bytes per second in the range.
    BytesRate,
}

/// A vector aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `max`
    Max,
    /// `min`
    Min,
    /// `count`
    Count,
    /// `topk(k, ...)`
    TopK(usize),
    /// `bottomk(k, ...)`
    BottomK(usize),
}

/// `by (...)` or `without (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// True for `without`.
    pub without: bool,
    /// The label names.
    pub labels: Vec<String>,
}

/// A metric query.
#[derive(Debug, Clone)]
pub enum MetricQuery {
    /// `op(log [range])`
    Range {
        /// The aggregation.
        op: RangeOp,
        /// The lines counted.
        log: LogQuery,
        /// The range.
        range: Duration,
    },
    /// `op by (...) (inner)`
    Vector {
        /// The aggregation.
        op: VectorOp,
        /// The grouping; none aggregates everything into one series.
        grouping: Option<Grouping>,
        /// What is aggregated.
        inner: Box<MetricQuery>,
    },
}

impl MetricQuery {
    /// Returns the log query at the bottom and its range.
    pub fn source(&self) -> (&LogQuery, Duration) {
        match self {
            MetricQuery::Range { log, range, .. } => (log, *range),
            MetricQuery::Vector { inner, .. } => inner.source(),
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone)]
pub enum Query {
    /// Log lines.
    Log(LogQuery),
    /// Numbers over time.
    Metric(MetricQuery),
}
