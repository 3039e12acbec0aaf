//! Ranked full-text search over the apps, as a projection of the store (DESIGN "Search", the
//! catalog's and library's approach): every replica keeps its own in-memory tantivy index,
//! built from a scan of the apps and kept current by following the store's watch (the generic
//! loop of `meshwork_common::projection`, driven by [`AppProjector`]); the store stays the only
//! source of truth and the hits' listings are read from it, not from the index.
//!
//! Each query word, stemmed like the documents, matches the title (boosted most), the
//! developer's name and the description by BM25, plus a typo-tolerant match with a small
//! constant score (one edit for words of 4+ characters, two for 8+), so exact words rank above
//! typos. Words are OR-ed: more matching words rank higher. A category filter is required and
//! adds nothing to the score. A search without words lists the apps by package name.

pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use meshwork_common::paging::PageToken;
use meshwork_common::projection::Projector;
use meshwork_common::record::Record;
use meshwork_common::{ServiceError, ServiceResult};
use meshwork_storage::{Entry, EventKind, WatchEvent};
use tantivy::collector::sort_key::SortByString;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::schema::document::Value;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};
use tokio::sync::watch;

use crate::keys::Keys;
use crate::model::AppRecord;
use schema::Fields;

/// Weight of a title match.
pub const TITLE_BOOST: f32 = 3.0;
/// Weight of a developer-name match.
pub const DEVELOPER_BOOST: f32 = 2.0;
/// Weight of a description match.
pub const DESCRIPTION_BOOST: f32 = 1.0;
/// The constant score of a typo-tolerant match.
pub const FUZZY_SCORE: f32 = 0.3;
/// Most distinct words of a query that are searched.
pub const MAX_QUERY_TERMS: usize = 32;
/// Deepest hit a page may reach.
pub const MAX_SEARCH_WINDOW: usize = 1_000;

/// How long a search waits for the first index of a starting replica.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Memory of the index writer's arena (tantivy's minimum is 15 MB).
const WRITER_MEMORY: usize = 20_000_000;

/// One built index and its reader (reloaded after each commit).
pub struct Searchable {
    pub index: Index,
    pub reader: IndexReader,
    pub fields: Fields,
}

/// A validated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParams {
    pub query: String,
    /// A category filter, if any.
    pub category: Option<String>,
    pub page_size: usize,
    /// Hits to skip (from the page token).
    pub offset: usize,
    /// The query's fingerprint, for the next page token.
    pub fingerprint: u32,
}

/// What a search found: package names with scores, best first.
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
    /// Returns an index with nothing loaded yet; an [`AppProjector`] loads and follows it.
    pub fn new() -> Self {
        SearchIndex { current: watch::Sender::new(None) }
    }

    fn publish(&self, searchable: Arc<Searchable>) {
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

/// The published index, its writer and the text digest of every indexed app, by package.
type Following = (Arc<Searchable>, IndexWriter, HashMap<String, [u8; 32]>);

/// Keeps a [`SearchIndex`] a projection of the apps under a root (see the module docs): a
/// rebuild publishes a fresh index (the old one answers until then); changes of an app's text
/// rewrite its document, other changes of its record (releases, rollouts) are skipped.
pub struct AppProjector {
    index: Arc<SearchIndex>,
    keys: Keys,
    state: Option<Following>,
}

impl AppProjector {
    /// Returns a projector that publishes into `index`.
    pub fn new(index: Arc<SearchIndex>, keys: Keys) -> Self {
        AppProjector { index, keys, state: None }
    }
}

/// Decodes a stored app, or `None` (logged) for a record this release cannot read.
fn decode(key: &[u8], value: &[u8]) -> Option<AppRecord> {
    match AppRecord::decode(value) {
        Ok(app) => Some(app),
        Err(e) => {
            tracing::error!(error = %e, key = %String::from_utf8_lossy(key), "unreadable app left out of search");
            None
        }
    }
}

impl Projector for AppProjector {
    type Error = tantivy::TantivyError;

    fn rebuild(&mut self, entries: Vec<Entry>) -> Result<(), Self::Error> {
        let (index, fields) = schema::new_index();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let mut digests = HashMap::new();
        for entry in &entries {
            if self.keys.package_of(&entry.key).is_none() {
                continue;
            }
            if let Some(app) = decode(&entry.key, &entry.value) {
                writer.add_document(schema::document(&fields, &app))?;
                digests.insert(app.package_name.clone(), schema::text_digest(&app));
            }
        }
        writer.commit()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let searchable = Arc::new(Searchable { index, reader, fields });
        self.index.publish(searchable.clone());
        self.state = Some((searchable, writer, digests));
        Ok(())
    }

    fn apply(&mut self, changes: Vec<WatchEvent>) -> Result<(), Self::Error> {
        let Some((searchable, writer, digests)) = self.state.as_mut() else {
            return Err(tantivy::TantivyError::InternalError("changes before the first scan".into()));
        };
        let fields = searchable.fields;
        let mut changed = false;
        for change in &changes {
            let Some(package) = self.keys.package_of(&change.key) else { continue };
            let app = match change.kind {
                EventKind::Put => decode(&change.key, &change.value),
                EventKind::Delete => None,
            };
            let digest = app.as_ref().map(schema::text_digest);
            if digest.is_some() && digests.get(package) == digest.as_ref() {
                continue;
            }
            writer.delete_term(schema::package_term(&fields, package));
            digests.remove(package);
            if let (Some(app), Some(digest)) = (app, digest) {
                writer.add_document(schema::document(&fields, &app))?;
                digests.insert(package.to_string(), digest);
            }
            changed = true;
        }
        if changed {
            writer.commit()?;
            searchable.reader.reload()?;
        }
        Ok(())
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
            [(fields.title, TITLE_BOOST), (fields.developer, DEVELOPER_BOOST), (fields.description, DESCRIPTION_BOOST)]
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
    let filter: Option<Box<dyn Query>> = params.category.as_ref().map(|c| {
        let q: Box<dyn Query> =
            Box::new(TermQuery::new(Term::from_field_text(fields.category, c), IndexRecordOption::Basic));
        Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>
    });
    let (docs, total): (Vec<(f32, DocAddress)>, usize) = if terms.is_empty() {
        let query: Box<dyn Query> = filter.unwrap_or_else(|| Box::new(AllQuery));
        let by_package = (SortByString::for_field("package"), Order::Asc);
        let (docs, total) = searcher.search(&query, &(top.order_by(by_package), Count)).map_err(internal)?;
        (docs.into_iter().map(|(_, d)| (0.0, d)).collect(), total)
    } else {
        let mut query = text_query(fields, &terms);
        if let Some(filter) = filter {
            query = Box::new(BooleanQuery::new(vec![(Occur::Must, query), (Occur::Must, filter)]));
        }
        searcher.search(&query, &(top.order_by_score(), Count)).map_err(internal)?
    };
    let mut hits = Vec::with_capacity(docs.len());
    for (score, address) in docs {
        let doc: TantivyDocument = searcher.doc(address).map_err(internal)?;
        let package = doc
            .get_first(fields.package)
            .and_then(|v| v.as_str())
            .ok_or_else(|| ServiceError::Internal("search document without its package".into()))?;
        hits.push((package.to_string(), score));
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
    use meshwork_storage::Entry;

    use super::*;

    fn app(package: &str, title: &str, developer: &str, description: &str, category: &str) -> AppRecord {
        AppRecord {
            package_name: package.into(),
            developer_id: "dev".into(),
            developer_name: developer.into(),
            owner_user_id: "u".into(),
            title: title.into(),
            category: category.into(),
            description: description.into(),
            icon_url: String::new(),
            price_minor: 0,
            currency: String::new(),
            create_time_ms: 1,
            last_version_code: 0,
            tracks: Default::default(),
        }
    }

    fn searchable(apps: &[AppRecord]) -> Arc<Searchable> {
        let keys = Keys::new("t");
        let index = Arc::new(SearchIndex::new());
        let mut p = AppProjector::new(index.clone(), keys.clone());
        let entries = apps
            .iter()
            .map(|a| Entry { key: keys.app(&a.package_name), value: a.encode().unwrap(), version: 1 })
            .collect();
        p.rebuild(entries).unwrap();
        index.current.borrow().clone().unwrap()
    }

    fn packages(s: &Searchable, query: &str, category: Option<&str>) -> Vec<String> {
        let params = SearchParams {
            query: query.into(),
            category: category.map(String::from),
            page_size: 10,
            offset: 0,
            fingerprint: 1,
        };
        execute(s, &params).unwrap().hits.into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn titles_rank_above_developers_and_descriptions() {
        let s = searchable(&[
            app("a.notes", "Notes", "Acme", "write things down", "PRODUCTIVITY"),
            app("b.todo", "Todo", "Notes Inc", "lists", "PRODUCTIVITY"),
            app("c.game", "Puzzle", "Fun", "take notes of your scores", "GAME_PUZZLE"),
            app("d.chess", "Chess", "Fun", "a board game", "GAME_BOARD"),
        ]);
        assert_eq!(packages(&s, "notes", None), ["a.notes", "b.todo", "c.game"]);
        assert_eq!(packages(&s, "notes", Some("GAME_PUZZLE")), ["c.game"]);
        assert_eq!(packages(&s, "chass", None), ["d.chess"], "one typo");
        assert_eq!(packages(&s, "", Some("PRODUCTIVITY")), ["a.notes", "b.todo"]);
        assert_eq!(packages(&s, "", None).len(), 4);
        assert!(packages(&s, "zzz", None).is_empty());
    }
}
