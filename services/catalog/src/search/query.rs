//! Turns a validated search into a tantivy query, purely (unit-tested on a small index in
//! `search`): each query word, analyzed like the documents (stemmed), matches the title
//! (boosted), the category's words, the attribute values and the description by BM25, plus
//! typo-tolerant fuzzy matches with small constant scores, one on the title (boosted) and one
//! on all the words (Levenshtein distance 1 for terms of 4+ characters, 2 for 8+): an exact
//! word also matches its fuzzy queries, so exact matches always rank above typo matches in
//! the same field. Words are OR-ed: more matching
//! words rank higher. Filters (category facet, price range, attribute facets: OR within a
//! filter, AND across) are required and add nothing to the score.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;

use super::schema::{Fields, attribute_facet, category_facet};

/// Weight of a title match against the other text fields.
pub const TITLE_BOOST: f32 = 3.0;
/// Weight of a category-word match.
pub const CATEGORY_BOOST: f32 = 1.5;
/// Weight of an attribute-value match.
pub const ATTRIBUTE_BOOST: f32 = 1.0;
/// Weight of a description match.
pub const DESCRIPTION_BOOST: f32 = 1.0;
/// The constant score of a fuzzy match (an exact match scores its BM25 on top of it).
pub const FUZZY_SCORE: f32 = 0.5;
/// Most distinct words of a query that are searched (the rest are ignored).
pub const MAX_QUERY_TERMS: usize = 32;

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchSort {
    /// Best BM25 match first; newest first when the query has no words.
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

/// One attribute filter: the product's value of `name` is any of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeFilter {
    pub name: String,
    pub values: Vec<String>,
}

/// A validated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParams {
    pub query: String,
    /// Category path (with subcategories), if any.
    pub category: Option<String>,
    /// Inclusive bounds in minor units.
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub attribute_filters: Vec<AttributeFilter>,
    pub sort: SearchSort,
    pub page_size: usize,
    /// Hits to skip (from the page token).
    pub offset: usize,
    /// The query's fingerprint, for the next page token.
    pub fingerprint: u32,
}

/// One analyzed query word and the edit distance it tolerates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryTerm {
    /// The analyzed (stemmed) term.
    pub text: String,
    pub distance: u8,
}

/// Returns the Levenshtein distance tolerated for a term of `chars` characters.
pub fn fuzzy_distance(chars: usize) -> u8 {
    match chars {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Returns the distinct analyzed words of `text`, in order, at most [`MAX_QUERY_TERMS`].
pub fn query_terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<QueryTerm> {
    let mut out: Vec<QueryTerm> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let token = stream.token();
        if out.len() >= MAX_QUERY_TERMS {
            break;
        }
        if token.text.is_empty() || out.iter().any(|t| t.text == token.text) {
            continue;
        }
        out.push(QueryTerm { text: token.text.clone(), distance: fuzzy_distance(token.text.chars().count()) });
    }
    out
}

/// Returns the text fields and their weights.
fn text_fields(fields: &Fields) -> [(Field, f32); 4] {
    [
        (fields.title, TITLE_BOOST),
        (fields.category_text, CATEGORY_BOOST),
        (fields.attribute_text, ATTRIBUTE_BOOST),
        (fields.description, DESCRIPTION_BOOST),
    ]
}

/// Returns the scoring query of the words: any word in any text field.
pub fn text_query(fields: &Fields, terms: &[QueryTerm]) -> Box<dyn Query> {
    let mut words: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for term in terms {
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in text_fields(fields) {
            let exact = TermQuery::new(Term::from_field_text(field, &term.text), IndexRecordOption::WithFreqs);
            alternatives.push((Occur::Should, Box::new(BoostQuery::new(Box::new(exact), boost))));
        }
        if term.distance > 0 {
            // A typo in the title weighs like the title; anywhere else, the base score.
            for (field, score) in [(fields.title, FUZZY_SCORE * TITLE_BOOST), (fields.fuzzy, FUZZY_SCORE)] {
                let fuzzy = FuzzyTermQuery::new(Term::from_field_text(field, &term.text), term.distance, true);
                alternatives.push((Occur::Should, Box::new(ConstScoreQuery::new(Box::new(fuzzy), score))));
            }
        }
        words.push((Occur::Should, Box::new(BooleanQuery::new(alternatives))));
    }
    Box::new(BooleanQuery::new(words))
}

/// Returns the filters of `params`, each a query that must match.
pub fn filters(fields: &Fields, params: &SearchParams) -> Vec<Box<dyn Query>> {
    let mut out: Vec<Box<dyn Query>> = Vec::new();
    if let Some(category) = &params.category {
        let term = Term::from_facet(fields.category, &category_facet(category));
        out.push(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
    }
    if params.min_price.is_some() || params.max_price.is_some() {
        let bound = |v: Option<i64>| match v {
            Some(v) => Bound::Included(Term::from_field_i64(fields.price, v)),
            None => Bound::Unbounded,
        };
        out.push(Box::new(RangeQuery::new(bound(params.min_price), bound(params.max_price))));
    }
    for filter in &params.attribute_filters {
        let any: Vec<(Occur, Box<dyn Query>)> = filter
            .values
            .iter()
            .map(|value| {
                let term = Term::from_facet(fields.attributes, &attribute_facet(&filter.name, value));
                (Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>)
            })
            .collect();
        out.push(Box::new(BooleanQuery::new(any)));
    }
    out
}

/// Returns the whole query: the words (or every product when there are none) and the filters,
/// which do not change the score.
pub fn build(fields: &Fields, terms: &[QueryTerm], params: &SearchParams) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    if terms.is_empty() {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    } else {
        clauses.push((Occur::Must, text_query(fields, terms)));
    }
    for filter in filters(fields, params) {
        clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
    }
    Box::new(BooleanQuery::new(clauses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::schema::analyzer;

    #[test]
    fn distances_grow_with_the_term() {
        assert_eq!(fuzzy_distance(3), 0);
        assert_eq!(fuzzy_distance(4), 1);
        assert_eq!(fuzzy_distance(7), 1);
        assert_eq!(fuzzy_distance(8), 2);
    }

    #[test]
    fn query_words_are_stemmed_and_deduplicated() {
        let mut a = analyzer();
        let terms = query_terms(&mut a, "Running shoes, running SHOE!");
        let texts: Vec<&str> = terms.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, vec!["run", "shoe"]);
        assert_eq!(terms[0].distance, 0);
        assert_eq!(terms[1].distance, 1);
        let typo = query_terms(&mut a, "hedphones");
        assert_eq!(typo, vec![QueryTerm { text: "hedphon".into(), distance: 1 }]);
        assert!(query_terms(&mut a, "  !! ").is_empty());
        let many = (0..50).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(query_terms(&mut a, &many).len(), MAX_QUERY_TERMS);
    }
}
