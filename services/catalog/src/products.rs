//! The product operations over the store: create (idempotent by `request_id`, sku unique),
//! get, update (optimistic, by etag), list by category, and the category tree. Each write is
//! one store transaction that also keeps the per-category listing entries and ACTIVE counts
//! and appends the change to the catalog's event log (`catalog.product_created` /
//! `catalog.product_updated`, payload: the `Product` message), so the three never disagree.

use std::ops::Bound;
use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_common::events::EventLog;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::paging::PageToken;
use meshwork_common::record::Record;
use meshwork_common::{Clock, ServiceError, ServiceResult};
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, Txn, prefix_end, scan_all, transact};
use prost::Message;

use crate::categories;
use crate::keys;
use crate::model::{CategoryCount, ProductRecord, Status};
use crate::validate::{self, ProductInput};

/// Event type of a created product.
pub const PRODUCT_CREATED: &str = "catalog.product_created";
/// Event type of an updated product.
pub const PRODUCT_UPDATED: &str = "catalog.product_updated";

/// Roles that may create and update products (when the call carries an identity).
pub const WRITER_ROLES: [&str; 2] = ["admin", "catalog"];

/// The catalog's products on a store.
pub struct Products {
    store: DynStore,
    clock: Arc<dyn Clock>,
    events: EventLog,
    requests: Idempotency,
}

/// Checks that `caller` (if any: anonymous calls are allowed) may write products.
fn may_write(caller: Option<&Caller>) -> ServiceResult<()> {
    match caller {
        Some(c) if !WRITER_ROLES.iter().any(|r| c.has_role(r)) => Err(ServiceError::PermissionDenied(format!(
            "changing products needs role \"admin\" or \"catalog\"; \"{}\" has neither",
            c.subject.escape_debug()
        ))),
        _ => Ok(()),
    }
}

/// Reads and decodes a product through `tx`.
async fn read_product(tx: &Txn, sku: &str) -> ServiceResult<Option<ProductRecord>> {
    match tx.get(&keys::product(sku)).await? {
        Some(found) => Ok(Some(ProductRecord::decode(&found.value)?)),
        None => Ok(None),
    }
}

/// Buffers the count changes of a product moving between categories/statuses.
async fn adjust_counts(tx: &Txn, before: Option<&str>, after: Option<&str>) -> ServiceResult<()> {
    for (path, delta) in categories::count_deltas(before, after) {
        let key = keys::category(&path);
        let current = match tx.get(&key).await? {
            Some(found) => CategoryCount::decode(&found.value)?.count,
            None => 0,
        };
        let count = current + delta;
        if count <= 0 {
            tx.delete(key);
        } else {
            tx.put(key, CategoryCount { count }.encode()?);
        }
    }
    Ok(())
}

/// Buffers the record and its listing entries (one per ancestor category), deleting the
/// entries of a category it left.
fn write_product(tx: &Txn, record: &ProductRecord, bytes: &[u8], previous_category: Option<&str>) {
    tx.put(keys::product(&record.sku), bytes.to_vec());
    let now = categories::ancestors(&record.category);
    if let Some(previous) = previous_category {
        for path in categories::ancestors(previous) {
            if !now.contains(&path) {
                tx.delete(keys::category_product(&path, &record.sku));
            }
        }
    }
    for path in &now {
        tx.put(keys::category_product(path, &record.sku), bytes.to_vec());
    }
}

impl Products {
    /// Returns the products on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        let events = EventLog::new(store.clone(), keys::EVENT_LOG_SERVICE).with_clock(clock.clone());
        let requests = Idempotency::new(store.clone(), keys::PRODUCT_REQUESTS_SERVICE).with_clock(clock.clone());
        Products { store, clock, events, requests }
    }

    /// Returns the catalog's event log.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// CreateProduct.
    pub async fn create(
        &self,
        req: pb::CreateProductRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::CreateProductResponse> {
        may_write(caller)?;
        let input = validate::create_product(&req)?;
        let fingerprint = Fingerprint::of(&req);
        self.requests
            .transact(&req.request_id, fingerprint, |tx| {
                let input = input.clone();
                Box::pin(async move {
                    if read_product(&tx, &input.sku).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("product {:?}", input.sku) });
                    }
                    let now = self.clock.now_ms();
                    let record = self.record(input, 1, now, now, Status::Active);
                    let bytes = record.encode()?;
                    write_product(&tx, &record, &bytes, None);
                    adjust_counts(&tx, None, record.is_active().then_some(record.category.as_str())).await?;
                    let product = record.to_proto();
                    self.events.append(&tx, PRODUCT_CREATED, product.encode_to_vec()).await?;
                    Ok(pb::CreateProductResponse { product: Some(product) })
                })
            })
            .await
    }

    fn record(&self, input: ProductInput, version: u64, created: i64, now: i64, default: Status) -> ProductRecord {
        let mut record = ProductRecord {
            sku: input.sku,
            title: input.title,
            description: input.description,
            category: input.category,
            price_minor: input.price_minor,
            currency: input.currency,
            attributes: input.attributes,
            status: input.status.unwrap_or(default),
            version,
            etag: String::new(),
            create_time_ms: created,
            update_time_ms: now,
        };
        record.etag = record.compute_etag();
        record
    }

    /// GetProduct.
    pub async fn get(&self, req: pb::GetProductRequest) -> ServiceResult<pb::GetProductResponse> {
        validate::get_product(&req)?;
        let found = self.store.get(&keys::product(&req.sku)).await?;
        let Some(found) = found else {
            return Err(ServiceError::not_found(format!("product {:?}", req.sku)));
        };
        Ok(pb::GetProductResponse { product: Some(ProductRecord::decode(&found.value)?.to_proto()) })
    }

    /// Returns the stored product `sku`, if any (for carts and checkout).
    pub async fn find(store: &DynStore, sku: &str) -> ServiceResult<Option<ProductRecord>> {
        match store.get(&keys::product(sku)).await? {
            Some(found) => Ok(Some(ProductRecord::decode(&found.value)?)),
            None => Ok(None),
        }
    }

    /// UpdateProduct: replaces every mutable field when `etag` is current (ABORTED otherwise).
    /// An unset status keeps the stored one.
    pub async fn update(
        &self,
        req: pb::UpdateProductRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::UpdateProductResponse> {
        may_write(caller)?;
        let input = validate::update_product(&req)?;
        let etag = req.etag;
        transact(&self.store, |tx| {
            let input = input.clone();
            let etag = etag.clone();
            Box::pin(async move {
                let Some(old) = read_product(&tx, &input.sku).await? else {
                    return Err(ServiceError::not_found(format!("product {:?}", input.sku)));
                };
                if old.etag != etag {
                    return Err(ServiceError::Aborted(format!(
                        "product {:?} changed since etag {etag:?} (now {:?}); read it again",
                        old.sku, old.etag
                    )));
                }
                let now = self.clock.now_ms().max(old.update_time_ms);
                let record = self.record(input, old.version + 1, old.create_time_ms, now, old.status);
                let bytes = record.encode()?;
                write_product(&tx, &record, &bytes, Some(&old.category));
                adjust_counts(
                    &tx,
                    old.is_active().then_some(old.category.as_str()),
                    record.is_active().then_some(record.category.as_str()),
                )
                .await?;
                let product = record.to_proto();
                self.events.append(&tx, PRODUCT_UPDATED, product.encode_to_vec()).await?;
                Ok(pb::UpdateProductResponse { product: Some(product) })
            })
        })
        .await
    }

    /// ListProducts: by sku, within a category and its subcategories.
    pub async fn list(&self, req: pb::ListProductsRequest) -> ServiceResult<pb::ListProductsResponse> {
        let list = validate::list_products(&req)?;
        let prefix = match &list.category {
            Some(path) => keys::category_products_prefix(path),
            None => keys::PRODUCTS.as_bytes().to_vec(),
        };
        let mut start = match list.resume_key {
            Some(key) if key.starts_with(&prefix) => key,
            Some(_) => return Err(ServiceError::invalid("page_token", "is not a token returned by this query")),
            None => prefix.clone(),
        };
        let end = match prefix_end(&prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let mut products = Vec::with_capacity(list.page_size);
        let mut next_page_token = String::new();
        'pages: loop {
            let range = KeyRange { start: Bound::Included(start.clone()), end: end.clone() };
            let page = self.store.scan(range, list.page_size + 1 - products.len(), Direction::Forward).await?;
            for entry in page.entries {
                let record = ProductRecord::decode(&entry.value)?;
                if !record.is_active() && !list.include_archived {
                    continue;
                }
                if products.len() == list.page_size {
                    // One more to show: the next page starts at it.
                    next_page_token = PageToken { resume_key: entry.key, fingerprint: list.fingerprint }.encode();
                    break 'pages;
                }
                products.push(record.to_proto());
            }
            match page.next {
                Some(next) => start = next,
                None => break,
            }
        }
        Ok(pb::ListProductsResponse { products, next_page_token })
    }

    /// ListCategories: the tree under `parent` with ACTIVE counts.
    pub async fn categories(&self, req: pb::ListCategoriesRequest) -> ServiceResult<pb::ListCategoriesResponse> {
        let parent = validate::list_categories(&req)?;
        let entries =
            scan_all(&self.store, KeyRange::prefix(keys::categories_below(&parent)), Direction::Forward).await?;
        let mut counts = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(path) = keys::category_of(&entry.key) else { continue };
            counts.push((path.to_string(), CategoryCount::decode(&entry.value)?.count));
        }
        Ok(pb::ListCategoriesResponse { categories: categories::tree(&parent, &counts) })
    }
}
