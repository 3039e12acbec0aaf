//! LogQL, the query language Grafana Loki's users know: a parser with positions ([`parser`]),
//! the syntax tree ([`ast`]), the per-block pipeline ([`pipeline`]) and the metric
//! evaluation over steps ([`metric`]).

pub mod ast;
pub mod metric;
pub mod parser;
pub mod pipeline;

pub use ast::{LogQuery, MetricQuery, Query};
pub use parser::{ParseError, parse, parse_selector};
