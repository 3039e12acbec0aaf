//! Ranked full-text search over the titles, as a projection of the store (DESIGN "Search"):
//! every replica keeps its own in-memory tantivy index, built from a scan of the titles at
//! start and kept current by following the store's watch ([`follow`]); the store stays the only
//! source of truth, and the hits' availability counts are read from it, not from the index.
//!
//! Each query word, stemmed like the documents, matches the title (boosted most), the authors
//! and the subjects by BM25, plus a typo-tolerant match with a small constant score (one edit
//! for words of 4+ characters, two for 8+), so exact words rank above typos. Words are OR-ed:
//! more matching words rank higher. A search without words lists every title by ISBN.

pub mod follow;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::paging::PageToken;
use meshwork_common::{ServiceError, ServiceResult};
use tantivy::collector::sort_key::SortByString;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::schema::document::Value;
use tantivy::{DocAddress, Index, IndexReader, Order, TantivyDocument, Term};
use tokio::sync::watch;

use crate::validate::{MAX_SEARCH_WINDOW, SearchParams};
use schema::Fields;

/// Weight of a title match.
pub const TITLE_BOOST: f32 = 3.0;
/// Weight of an author match.
pub const AUTHOR_BOOST: f32 = 2.0;
/// Weight of a subject match.
pub const SUBJECT_BOOST: f32 = 1.5;
/// The constant score of a typo-tolerant match.
pub const FUZZY_SCORE: f32 = 0.3;
/// Most distinct words of a query that are searched.
pub const MAX_QUERY_TERMS: usize = 32;

/// How long a search waits for the first index of a starting replica.
const READY_WAIT: Duration = Duration::from_secs(10);

/// One built index and its reader (reloaded after each commit).
pub struct Searchable {
    pub index: Index,
    pub reader: IndexReader,
    pub fields: Fields,
}

/// What a search found: ISBNs with scores, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub hits: Vec<(String, f32)>,
    pub total: usize,
    pub next_page_token: String,
}

/// The replica's search index: the current [`Searchable`], or none while the first scan runs.
pub struct SearchIndex {
    current: watch::Sender<Option<Arc<Searchable>>>,
}

impl Default for SearchIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl SearchIndex {
    /// Returns an index with nothing loaded yet; [`follow::run`] loads and follows it.
    pub fn new() -> Self {
        SearchIndex { current: watch::Sender::new(None) }
    }

    /// Publishes a freshly built index.
    pub(crate) fn publish(&self, searchable: Arc<Searchable>) {
        self.current.send_replace(Some(searchable));
    }

    /// Returns the current index, waiting (bounded) for the first one.
    async fn ready(&self) -> ServiceResult<Arc<Searchable>> {
        let mut rx = self.current.subscribe();
        match tokio::time::timeout(READY_WAIT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(current)) => {
                current.clone().ok_or_else(|| ServiceError::Unavailable("the search index is loading; retry".into()))
            }
            _ => Err(ServiceError::Unavailable("the search index is still loading; retry".into())),
        }
    }

    /// Runs a search on the blocking pool.
    pub async fn search(&self, params: SearchParams) -> ServiceResult<Found> {
        let searchable = self.ready().await?;
        tokio::task::spawn_blocking(move || execute(&searchable, &params))
            .await
            .map_err(|e| ServiceError::Internal(format!("search task failed: {e}")))?
    }
}

fn internal(e: tantivy::TantivyError) -> ServiceError {
    ServiceError::Internal(format!("search index: {e}"))
}

/// Returns the distinct analyzed words of `text`, in order, at most [`MAX_QUERY_TERMS`].
pub fn query_terms(text: &str) -> Vec<String> {
    let mut analyzer = schema::analyzer();
    let mut out: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let token = &stream.token().text;
        if out.len() >= MAX_QUERY_TERMS {
            break;
        }
        if !token.is_empty() && !out.contains(token) {
            out.push(token.clone());
        }
    }
    out
}

/// Returns the Levenshtein distance tolerated for a term of `chars` characters.
fn fuzzy_distance(chars: usize) -> u8 {
    match chars {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Returns the scoring query of `terms`: any word in any text field.
pub fn text_query(fields: &Fields, terms: &[String]) -> Box<dyn Query> {
    let mut words: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for term in terms {
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in
            [(fields.title, TITLE_BOOST), (fields.authors, AUTHOR_BOOST), (fields.subjects, SUBJECT_BOOST)]
        {
            let exact = TermQuery::new(Term::from_field_text(field, term), IndexRecordOption::WithFreqs);
            alternatives.push((Occur::Should, Box::new(BoostQuery::new(Box::new(exact), boost))));
        }
        let distance = fuzzy_distance(term.chars().count());
        if distance > 0 {
            let fuzzy = FuzzyTermQuery::new(Term::from_field_text(fields.fuzzy, term), distance, true);
            alternatives.push((Occur::Should, Box::new(ConstScoreQuery::new(Box::new(fuzzy), FUZZY_SCORE))));
        }
        words.push((Occur::Should, Box::new(BooleanQuery::new(alternatives))));
    }
    Box::new(BooleanQuery::new(words))
}

/// Runs `params` on `s` (blocking).
pub fn execute(s: &Searchable, params: &SearchParams) -> ServiceResult<Found> {
    let searcher = s.reader.searcher();
    let fields = &s.fields;
    let terms = query_terms(&params.query);
    let limit = params.page_size.min(MAX_SEARCH_WINDOW.saturating_sub(params.offset)).max(1);
    let top = TopDocs::with_limit(limit).and_offset(params.offset);
    let (docs, total): (Vec<(f32, DocAddress)>, usize) = if terms.is_empty() {
        let by_isbn = (SortByString::for_field("isbn"), Order::Asc);
        let (docs, total) = searcher.search(&AllQuery, &(top.order_by(by_isbn), Count)).map_err(internal)?;
        (docs.into_iter().map(|(_, d)| (0.0, d)).collect(), total)
    } else {
        searcher.search(&text_query(fields, &terms), &(top.order_by_score(), Count)).map_err(internal)?
    };
    let mut hits = Vec::with_capacity(docs.len());
    for (score, address) in docs {
        let doc: TantivyDocument = searcher.doc(address).map_err(internal)?;
        let isbn = doc
            .get_first(fields.isbn)
            .and_then(|v| v.as_str())
            .ok_or_else(|| ServiceError::Internal("search document without its isbn".into()))?;
        hits.push((isbn.to_string(), score));
    }
    let end = params.offset + hits.len();
    let next_page_token = if !hits.is_empty() && end < total && end < MAX_SEARCH_WINDOW {
        PageToken { resume_key: (end as u64).to_be_bytes().to_vec(), fingerprint: params.fingerprint }.encode()
    } else {
        String::new()
    };
    Ok(Found { hits, total, next_page_token })
}

#[cfg(test)]
mod tests {
    use tantivy::{IndexWriter, ReloadPolicy};

    use super::*;
    use crate::model::TitleRecord;

    fn title(isbn: &str, text: &str, authors: &[&str], subjects: &[&str]) -> TitleRecord {
        TitleRecord {
            isbn: isbn.into(),
            title: text.into(),
            authors: authors.iter().map(|s| s.to_string()).collect(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            copies: Vec::new(),
            shelf: Vec::new(),
            holds: Vec::new(),
            create_time_ms: 1,
        }
    }

    fn searchable(titles: &[TitleRecord]) -> Searchable {
        let (index, fields) = schema::new_index();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for t in titles {
            writer.add_document(schema::document(&fields, t)).unwrap();
        }
        writer.commit().unwrap();
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().unwrap();
        Searchable { index, reader, fields }
    }

    fn isbns(s: &Searchable, query: &str) -> Vec<String> {
        let params = SearchParams { query: query.into(), page_size: 10, offset: 0, fingerprint: 1 };
        execute(s, &params).unwrap().hits.into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn titles_rank_above_authors_and_subjects_and_typos_match() {
        let s = searchable(&[
            title("1", "The Garden Book", &["Ann Lee"], &["horticulture"]),
            title("2", "Cooking at home", &["Sam Garden"], &["food"]),
            title("3", "Weeds", &["Bo Y"], &["gardening"]),
            title("4", "Space", &["Carl Sagan"], &["astronomy"]),
        ]);
        assert_eq!(isbns(&s, "garden"), vec!["1", "2", "3"]);
        assert_eq!(isbns(&s, "sagan"), vec!["4"]);
        assert_eq!(isbns(&s, "astronmy"), vec!["4"], "one typo");
        assert_eq!(isbns(&s, ""), vec!["1", "2", "3", "4"], "every title by isbn");
        assert!(isbns(&s, "zzz").is_empty());
    }
}
