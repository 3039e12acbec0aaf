//! Ranked full-text search over the products, as a projection of the store (DESIGN "Search"):
//! every replica keeps its own in-memory tantivy index, built from a scan of the products at
//! start and kept current by following the store's watch ([`follow`]); the store stays the only
//! source of truth. Only ACTIVE products are indexed, so archived ones never appear. A hit is
//! hydrated from the product record stored in the index.
//!
//! [`SearchIndex`] hands out the current index (swapped whole after a rescan) and answers
//! searches on the blocking pool: BM25 with stemming and typo tolerance ([`query`]), filters,
//! sorting, offset paging bounded by [`MAX_SEARCH_WINDOW`], the total and facet counts over the
//! whole match set.

pub mod follow;
pub mod query;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::paging::PageToken;
use meshwork_common::record::Record;
use meshwork_common::{ServiceError, ServiceResult};
use meshwork_proto::pb::catalog::v1 as pb;
use tantivy::collector::sort_key::{SortByStaticFastValue, SortByString};
use tantivy::collector::{Count, FacetCollector, FacetCounts, TopDocs};
use tantivy::schema::Facet;
use tantivy::schema::document::Value;
use tantivy::{DocAddress, Index, IndexReader, Order, Searcher, TantivyDocument};
use tokio::sync::watch;

use crate::model::ProductRecord;
use crate::validate::MAX_SEARCH_WINDOW;
use query::{SearchParams, SearchSort};
use schema::Fields;

/// Most values of one facet.
pub const MAX_FACET_VALUES: usize = 20;

/// How long a search waits for the first index of a starting replica.
const READY_WAIT: Duration = Duration::from_secs(10);

/// One built index and its reader (reloaded after each commit).
pub struct Searchable {
    pub index: Index,
    pub reader: IndexReader,
    pub fields: Fields,
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
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(READY_WAIT, wait).await {
            Ok(Ok(current)) => {
                current.clone().ok_or_else(|| ServiceError::Unavailable("search index is loading".into()))
            }
            _ => Err(ServiceError::Unavailable("the search index is still loading; retry".into())),
        }
    }

    /// Runs a search.
    pub async fn search(&self, params: SearchParams) -> ServiceResult<pb::SearchProductsResponse> {
        let searchable = self.ready().await?;
        tokio::task::spawn_blocking(move || execute(&searchable, &params))
            .await
            .map_err(|e| ServiceError::Internal(format!("search task failed: {e}")))?
    }
}

fn internal(e: tantivy::TantivyError) -> ServiceError {
    ServiceError::Internal(format!("search index: {e}"))
}

/// Runs `params` on `s` (blocking).
pub fn execute(s: &Searchable, params: &SearchParams) -> ServiceResult<pb::SearchProductsResponse> {
    let searcher = s.reader.searcher();
    let fields = &s.fields;
    let mut analyzer = schema::analyzer();
    let terms = query::query_terms(&mut analyzer, &params.query);
    let query = query::build(fields, &terms, params);
    let limit = params.page_size.min(MAX_SEARCH_WINDOW.saturating_sub(params.offset)).max(1);
    let top = TopDocs::with_limit(limit).and_offset(params.offset);

    let category_root = match &params.category {
        Some(path) => schema::category_facet(path),
        None => Facet::root(),
    };
    let mut categories = FacetCollector::for_field("category");
    categories.add_facet(category_root.clone());
    let mut attributes = FacetCollector::for_field("attributes");
    attributes.add_facet(Facet::root());

    let by_sku = || (SortByString::for_field("sku"), Order::Asc);
    let (docs, total, category_counts, attribute_counts): (Vec<(f32, DocAddress)>, usize, FacetCounts, FacetCounts) =
        match params.sort {
            SearchSort::Relevance if !terms.is_empty() => {
                searcher.search(&query, &(top.order_by_score(), Count, categories, attributes)).map_err(internal)?
            }
            SearchSort::Relevance | SearchSort::Newest => {
                let key = ((SortByStaticFastValue::<i64>::for_field("created"), Order::Desc), by_sku());
                let (docs, total, c, a) =
                    searcher.search(&query, &(top.order_by(key), Count, categories, attributes)).map_err(internal)?;
                (docs.into_iter().map(|(_, d)| (0.0, d)).collect(), total, c, a)
            }
            SearchSort::PriceAsc | SearchSort::PriceDesc => {
                let order = if params.sort == SearchSort::PriceAsc { Order::Asc } else { Order::Desc };
                let key = ((SortByStaticFastValue::<i64>::for_field("price"), order), by_sku());
                let (docs, total, c, a) =
                    searcher.search(&query, &(top.order_by(key), Count, categories, attributes)).map_err(internal)?;
                (docs.into_iter().map(|(_, d)| (0.0, d)).collect(), total, c, a)
            }
        };

    let hits = docs
        .into_iter()
        .map(|(score, address)| Ok(pb::SearchHit { product: Some(hydrate(&searcher, fields, address)?), score }))
        .collect::<ServiceResult<Vec<_>>>()?;
    let end = params.offset + hits.len();
    let next_page_token = if !hits.is_empty() && end < total && end < MAX_SEARCH_WINDOW {
        PageToken { resume_key: (end as u64).to_be_bytes().to_vec(), fingerprint: params.fingerprint }.encode()
    } else {
        String::new()
    };
    let mut facets = vec![category_facet(&category_counts, &category_root)];
    facets.extend(attribute_facets(&attribute_counts));
    Ok(pb::SearchProductsResponse { hits, total_size: total as i64, facets, next_page_token })
}

/// Returns the product of a hit, from the record stored in the index.
fn hydrate(searcher: &Searcher, fields: &Fields, address: DocAddress) -> ServiceResult<pb::Product> {
    let doc: TantivyDocument = searcher.doc(address).map_err(internal)?;
    let bytes = doc
        .get_first(fields.record)
        .and_then(|v| v.as_bytes())
        .ok_or_else(|| ServiceError::Internal("search document without its record".into()))?;
    Ok(ProductRecord::decode(bytes)?.to_proto())
}

/// Sorts facet values most frequent first (then by value) and keeps [`MAX_FACET_VALUES`].
pub fn top_values(mut values: Vec<(String, u64)>) -> Vec<pb::FacetValue> {
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(MAX_FACET_VALUES);
    values.into_iter().map(|(value, count)| pb::FacetValue { value, count: count as i64 }).collect()
}

/// The `category` facet: counts of the children of `root` (full paths).
fn category_facet(counts: &FacetCounts, root: &Facet) -> pb::Facet {
    let values = counts.get(root.clone()).map(|(facet, count)| (facet.to_path().join("/"), count)).collect();
    pb::Facet { field: "category".into(), values: top_values(values) }
}

/// The `attributes.<name>` facets, by name.
fn attribute_facets(counts: &FacetCounts) -> Vec<pb::Facet> {
    let mut by_name: std::collections::BTreeMap<String, Vec<(String, u64)>> = Default::default();
    for (facet, count) in counts.get(Facet::root()) {
        let path = facet.to_path();
        let Some(pair) = path.first() else { continue };
        if let Some((name, value)) = pair.split_once('=') {
            by_name.entry(name.to_string()).or_default().push((value.to_string(), count));
        }
    }
    by_name
        .into_iter()
        .map(|(name, values)| pb::Facet { field: format!("attributes.{name}"), values: top_values(values) })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tantivy::{IndexWriter, ReloadPolicy};

    use super::*;
    use crate::model::Status;

    fn record(sku: &str, title: &str, price: i64, created: i64, attributes: &[(&str, &str)]) -> ProductRecord {
        ProductRecord {
            sku: sku.into(),
            title: title.into(),
            description: String::new(),
            category: "shop/things".into(),
            price_minor: price,
            currency: "USD".into(),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            status: Status::Active,
            version: 1,
            etag: "1-0".into(),
            create_time_ms: created,
            update_time_ms: created,
        }
    }

    fn searchable(records: &[ProductRecord]) -> Searchable {
        let (index, fields) = schema::new_index();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for r in records {
            writer.add_document(schema::document(&fields, r, &r.encode().unwrap())).unwrap();
        }
        writer.commit().unwrap();
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().unwrap();
        Searchable { index, reader, fields }
    }

    fn params(query: &str, sort: SearchSort) -> SearchParams {
        SearchParams {
            query: query.into(),
            category: None,
            min_price: None,
            max_price: None,
            attribute_filters: Vec::new(),
            sort,
            page_size: 10,
            offset: 0,
            fingerprint: 7,
        }
    }

    fn skus(r: &pb::SearchProductsResponse) -> Vec<&str> {
        r.hits.iter().map(|h| h.product.as_ref().map(|p| p.sku.as_str()).unwrap_or("")).collect()
    }

    #[test]
    fn exact_words_rank_above_typo_matches() {
        let s = searchable(&[
            record("A-1", "Lamp shade", 100, 1, &[("color", "red")]),
            record("A-2", "Lamb stew", 200, 2, &[("color", "blue")]),
            record("A-3", "Desk lamp", 300, 3, &[("color", "red")]),
        ]);
        let r = execute(&s, &params("lamp", SearchSort::Relevance)).unwrap();
        assert_eq!(r.total_size, 3, "lamb is one edit from lamp");
        assert_eq!(skus(&r)[2], "A-2", "the typo match ranks last");
        let r = execute(&s, &params("lamp", SearchSort::PriceDesc)).unwrap();
        assert_eq!(skus(&r), vec!["A-3", "A-2", "A-1"]);
        assert!(r.hits.iter().all(|h| h.score == 0.0));
        let r = execute(&s, &params("", SearchSort::Relevance)).unwrap();
        assert_eq!(skus(&r), vec!["A-3", "A-2", "A-1"], "newest first without words");
        let colors = r.facets.iter().find(|f| f.field == "attributes.color").unwrap();
        assert_eq!(
            colors.values.iter().map(|v| (v.value.as_str(), v.count)).collect::<Vec<_>>(),
            vec![("red", 2), ("blue", 1)]
        );
        assert_eq!(r.facets[0].values[0].value, "shop");
    }

    #[test]
    fn pages_end_with_an_empty_token() {
        let records: Vec<_> = (0..5).map(|i| record(&format!("P-{i}"), "Pen", 100 + i, i, &[])).collect();
        let s = searchable(&records);
        let mut p = params("pen", SearchSort::PriceAsc);
        p.page_size = 2;
        let first = execute(&s, &p).unwrap();
        assert_eq!(skus(&first), vec!["P-0", "P-1"]);
        assert!(!first.next_page_token.is_empty());
        p.offset = 4;
        let last = execute(&s, &p).unwrap();
        assert_eq!(skus(&last), vec!["P-4"]);
        assert!(last.next_page_token.is_empty());
        p.offset = 6;
        assert!(execute(&s, &p).unwrap().hits.is_empty());
    }

    #[test]
    fn facet_values_are_most_frequent_first_and_capped() {
        let values = (0..25).map(|i| (format!("v{i:02}"), (i % 3) as u64)).collect();
        let top = top_values(values);
        assert_eq!(top.len(), MAX_FACET_VALUES);
        assert_eq!(top[0].value, "v02");
        assert!(top.windows(2).all(|w| w[0].count >= w[1].count));
    }
}
