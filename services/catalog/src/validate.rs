//! Validation of every Catalog and Carts request, before anything touches the store. Each
//! failure is INVALID_ARGUMENT naming the field (`product.title`, `attribute_filters[1].name`)
//! and the reason. Pure and unit-tested.

use std::collections::BTreeMap;

use meshwork_common::idempotency::validate_request_id;
use meshwork_common::paging::{PageToken, fingerprint};
use meshwork_common::{ServiceError, ServiceResult, fields};
use meshwork_proto::pb::catalog::v1 as pb;
use prost::Message;

use crate::cart::MAX_QUANTITY;
use crate::categories;
use crate::model::Status;
use crate::search::query::{AttributeFilter, SearchParams, SearchSort};

/// Most characters in a title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most characters in a description.
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
/// Highest price in minor units.
pub const MAX_PRICE_MINOR: i64 = 100_000_000_000;
/// Most attributes of a product.
pub const MAX_ATTRIBUTES: usize = 30;
/// Most characters in an attribute value.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 200;
/// Most characters in a search query.
pub const MAX_QUERY_CHARS: usize = 500;
/// Most attribute filters in a search.
pub const MAX_ATTRIBUTE_FILTERS: usize = 10;
/// Most values in one attribute filter.
pub const MAX_FILTER_VALUES: usize = 50;
/// Default search page size.
pub const DEFAULT_SEARCH_PAGE: usize = 20;
/// Largest search page size.
pub const MAX_SEARCH_PAGE: usize = 100;
/// How deep search paging goes: hits past this offset are not served (refine the query).
pub const MAX_SEARCH_WINDOW: usize = 10_000;
/// Most characters in an etag.
const MAX_ETAG_CHARS: usize = 64;

/// A product's fields after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInput {
    pub sku: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    pub attributes: BTreeMap<String, String>,
    /// `None` when unset (ACTIVE on create, unchanged on update).
    pub status: Option<Status>,
}

/// Checks an attribute name: `[a-z][a-z0-9_]{0,39}`.
fn attribute_name(field: &str, name: &str) -> ServiceResult<()> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    if !first_ok || name.len() > 40 || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(ServiceError::invalid(field, format!("{name:?} must match [a-z][a-z0-9_]{{0,39}}")));
    }
    Ok(())
}

/// Checks an attribute value: 1-200 characters, no control characters.
fn attribute_value(field: &str, value: &str) -> ServiceResult<()> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > MAX_ATTRIBUTE_VALUE_CHARS {
        return Err(ServiceError::invalid(field, format!("must be 1-{MAX_ATTRIBUTE_VALUE_CHARS} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a category path (required).
pub fn category(field: &str, path: &str) -> ServiceResult<()> {
    match categories::path_error(path) {
        Some(reason) => Err(ServiceError::invalid(field, reason)),
        None => Ok(()),
    }
}

/// Checks a category path that may be empty (meaning every category).
fn category_opt(field: &str, path: &str) -> ServiceResult<Option<String>> {
    if path.is_empty() {
        return Ok(None);
    }
    category(field, path)?;
    Ok(Some(path.to_string()))
}

/// Checks the fields of `product` (named `product.<field>`).
fn product(product: Option<&pb::Product>) -> ServiceResult<ProductInput> {
    let Some(p) = product else {
        return Err(ServiceError::invalid("product", "required"));
    };
    fields::sku("product.sku", &p.sku)?;
    fields::text("product.title", &p.title, MAX_TITLE_CHARS, true)?;
    if p.title.chars().any(char::is_control) {
        return Err(ServiceError::invalid("product.title", "must not contain control characters"));
    }
    fields::text("product.description", &p.description, MAX_DESCRIPTION_CHARS, false)?;
    category("product.category", &p.category)?;
    if !(0..=MAX_PRICE_MINOR).contains(&p.price_minor) {
        return Err(ServiceError::invalid("product.price_minor", format!("must be 0 to {MAX_PRICE_MINOR}")));
    }
    fields::currency("product.currency", &p.currency)?;
    if p.attributes.len() > MAX_ATTRIBUTES {
        return Err(ServiceError::invalid("product.attributes", format!("at most {MAX_ATTRIBUTES} attributes")));
    }
    for (name, value) in &p.attributes {
        attribute_name("product.attributes", name)?;
        attribute_value(&format!("product.attributes[{name}]"), value)?;
    }
    let status = match pb::ProductStatus::try_from(p.status) {
        Ok(pb::ProductStatus::Unspecified) => None,
        Ok(pb::ProductStatus::Active) => Some(Status::Active),
        Ok(pb::ProductStatus::Archived) => Some(Status::Archived),
        Err(_) => return Err(ServiceError::invalid("product.status", format!("unknown status {}", p.status))),
    };
    Ok(ProductInput {
        sku: p.sku.clone(),
        title: p.title.trim().to_string(),
        description: p.description.clone(),
        category: p.category.clone(),
        price_minor: p.price_minor,
        currency: p.currency.clone(),
        attributes: p.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        status,
    })
}

/// Checks a CreateProduct request.
pub fn create_product(req: &pb::CreateProductRequest) -> ServiceResult<ProductInput> {
    validate_request_id(&req.request_id)?;
    product(req.product.as_ref())
}

/// Checks an UpdateProduct request; returns the new fields and the etag.
pub fn update_product(req: &pb::UpdateProductRequest) -> ServiceResult<ProductInput> {
    let input = product(req.product.as_ref())?;
    if req.etag.is_empty() {
        return Err(ServiceError::invalid("etag", "required: the etag of the version being replaced"));
    }
    if req.etag.chars().count() > MAX_ETAG_CHARS {
        return Err(ServiceError::invalid("etag", format!("at most {MAX_ETAG_CHARS} characters")));
    }
    Ok(input)
}

/// Checks a GetProduct request.
pub fn get_product(req: &pb::GetProductRequest) -> ServiceResult<()> {
    fields::sku("sku", &req.sku)
}

/// A checked ListProducts request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListProducts {
    pub category: Option<String>,
    pub include_archived: bool,
    pub page_size: usize,
    /// The store key to continue from.
    pub resume_key: Option<Vec<u8>>,
    pub fingerprint: u32,
}

/// Checks a ListProducts request and decodes its page token.
pub fn list_products(req: &pb::ListProductsRequest) -> ServiceResult<ListProducts> {
    let category = category_opt("category", &req.category)?;
    let page_size = fields::page_size("page_size", req.page_size)?;
    let fingerprint = fingerprint(&[req.category.as_bytes(), &[u8::from(req.include_archived)]]);
    let resume_key = PageToken::decode(&req.page_token, fingerprint)?.map(|t| t.resume_key);
    Ok(ListProducts { category, include_archived: req.include_archived, page_size, resume_key, fingerprint })
}

/// Checks a ListCategories request; returns the parent path (empty for the top level).
pub fn list_categories(req: &pb::ListCategoriesRequest) -> ServiceResult<String> {
    Ok(category_opt("parent", &req.parent)?.unwrap_or_default())
}

/// Returns the fingerprint of a search's query (every field but paging), so a page token only
/// continues its own search.
pub fn search_fingerprint(req: &pb::SearchProductsRequest) -> u32 {
    let canonical = pb::SearchProductsRequest { page_size: 0, page_token: String::new(), ..req.clone() };
    fingerprint(&[&canonical.encode_to_vec()])
}

/// Checks a SearchProducts request and decodes its page token into an offset.
pub fn search_products(req: &pb::SearchProductsRequest) -> ServiceResult<SearchParams> {
    fields::text("query", &req.query, MAX_QUERY_CHARS, false)?;
    let category = category_opt("category", &req.category)?;
    if req.min_price_minor < 0 {
        return Err(ServiceError::invalid("min_price_minor", "must not be negative (0 means no bound)"));
    }
    if req.max_price_minor < 0 {
        return Err(ServiceError::invalid("max_price_minor", "must not be negative (0 means no bound)"));
    }
    if req.max_price_minor != 0 && req.min_price_minor > req.max_price_minor {
        return Err(ServiceError::invalid("max_price_minor", "must not be below min_price_minor"));
    }
    if req.attribute_filters.len() > MAX_ATTRIBUTE_FILTERS {
        return Err(ServiceError::invalid("attribute_filters", format!("at most {MAX_ATTRIBUTE_FILTERS} filters")));
    }
    let mut filters = Vec::with_capacity(req.attribute_filters.len());
    for (i, f) in req.attribute_filters.iter().enumerate() {
        attribute_name(&format!("attribute_filters[{i}].name"), &f.name)?;
        if f.values.is_empty() || f.values.len() > MAX_FILTER_VALUES {
            return Err(ServiceError::invalid(
                format!("attribute_filters[{i}].values"),
                format!("must have 1-{MAX_FILTER_VALUES} values"),
            ));
        }
        for (j, v) in f.values.iter().enumerate() {
            attribute_value(&format!("attribute_filters[{i}].values[{j}]"), v)?;
        }
        filters.push(AttributeFilter { name: f.name.clone(), values: f.values.clone() });
    }
    let sort = match pb::SearchSort::try_from(req.sort) {
        Ok(pb::SearchSort::Unspecified | pb::SearchSort::Relevance) => SearchSort::Relevance,
        Ok(pb::SearchSort::PriceAsc) => SearchSort::PriceAsc,
        Ok(pb::SearchSort::PriceDesc) => SearchSort::PriceDesc,
        Ok(pb::SearchSort::Newest) => SearchSort::Newest,
        Err(_) => return Err(ServiceError::invalid("sort", format!("unknown sort {}", req.sort))),
    };
    let page_size = fields::page_size_within("page_size", req.page_size, DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE)?;
    let fingerprint = search_fingerprint(req);
    let offset = match PageToken::decode(&req.page_token, fingerprint)? {
        None => 0,
        Some(token) => {
            let bytes: [u8; 8] = token
                .resume_key
                .as_slice()
                .try_into()
                .map_err(|_| ServiceError::invalid("page_token", "is not a token returned by this query"))?;
            let offset = u64::from_be_bytes(bytes);
            if offset >= MAX_SEARCH_WINDOW as u64 {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            offset as usize
        }
    };
    Ok(SearchParams {
        query: req.query.clone(),
        category,
        min_price: (req.min_price_minor > 0).then_some(req.min_price_minor),
        max_price: (req.max_price_minor > 0).then_some(req.max_price_minor),
        attribute_filters: filters,
        sort,
        page_size,
        offset,
        fingerprint,
    })
}

/// Checks a cart's `user_id` and `sku`.
fn user_and_sku(user_id: &str, sku: &str) -> ServiceResult<()> {
    fields::user_id("user_id", user_id)?;
    fields::sku("sku", sku)
}

/// Checks a line quantity: 1-999.
fn quantity(quantity: i64) -> ServiceResult<()> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(ServiceError::invalid("quantity", format!("must be 1 to {MAX_QUANTITY}, got {quantity}")));
    }
    Ok(())
}

/// Checks an AddItem request.
pub fn add_item(req: &pb::AddItemRequest) -> ServiceResult<()> {
    user_and_sku(&req.user_id, &req.sku)?;
    quantity(req.quantity)
}

/// Checks an UpdateItem request.
pub fn update_item(req: &pb::UpdateItemRequest) -> ServiceResult<()> {
    user_and_sku(&req.user_id, &req.sku)?;
    quantity(req.quantity)
}

/// Checks a RemoveItem request.
pub fn remove_item(req: &pb::RemoveItemRequest) -> ServiceResult<()> {
    user_and_sku(&req.user_id, &req.sku)
}

/// Checks a GetCart request.
pub fn get_cart(req: &pb::GetCartRequest) -> ServiceResult<()> {
    fields::user_id("user_id", &req.user_id)
}

/// Checks a ClearCart request.
pub fn clear_cart(req: &pb::ClearCartRequest) -> ServiceResult<()> {
    fields::user_id("user_id", &req.user_id)?;
    if req.expected_version < 0 {
        return Err(ServiceError::invalid("expected_version", "must not be negative (0 skips the check)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> pb::Product {
        pb::Product {
            sku: "TEA-1".into(),
            title: "Assam tea".into(),
            category: "food/tea".into(),
            price_minor: 450,
            currency: "EUR".into(),
            attributes: [("origin".to_string(), "assam".to_string())].into(),
            ..Default::default()
        }
    }

    fn field_of(product: pb::Product) -> String {
        match create_product(&pb::CreateProductRequest { request_id: "r".into(), product: Some(product) }) {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn product_fields_are_named() {
        assert!(create_product(&pb::CreateProductRequest { request_id: "r".into(), product: Some(good()) }).is_ok());
        assert_eq!(field_of(pb::Product { sku: "ab".into(), ..good() }), "product.sku");
        assert_eq!(field_of(pb::Product { title: " ".into(), ..good() }), "product.title");
        assert_eq!(field_of(pb::Product { title: "x".repeat(201), ..good() }), "product.title");
        assert_eq!(field_of(pb::Product { description: "x".repeat(5001), ..good() }), "product.description");
        assert_eq!(field_of(pb::Product { category: "Food".into(), ..good() }), "product.category");
        assert_eq!(field_of(pb::Product { price_minor: -1, ..good() }), "product.price_minor");
        assert_eq!(field_of(pb::Product { price_minor: MAX_PRICE_MINOR + 1, ..good() }), "product.price_minor");
        assert_eq!(field_of(pb::Product { currency: "usd".into(), ..good() }), "product.currency");
        assert_eq!(field_of(pb::Product { status: 9, ..good() }), "product.status");
        assert_eq!(
            field_of(pb::Product { attributes: [("Bad".to_string(), "x".to_string())].into(), ..good() }),
            "product.attributes"
        );
        assert_eq!(
            field_of(pb::Product { attributes: [("ok".to_string(), String::new())].into(), ..good() }),
            "product.attributes[ok]"
        );
        let many = (0..31).map(|i| (format!("a{i}"), "v".to_string())).collect();
        assert_eq!(field_of(pb::Product { attributes: many, ..good() }), "product.attributes");
    }

    #[test]
    fn search_requests_are_checked() {
        let ok = search_products(&pb::SearchProductsRequest { query: "tea".into(), ..Default::default() }).unwrap();
        assert_eq!((ok.page_size, ok.offset, ok.sort), (20, 0, SearchSort::Relevance));
        let bad = |req: pb::SearchProductsRequest| match search_products(&req) {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        };
        assert_eq!(bad(pb::SearchProductsRequest { query: "x".repeat(501), ..Default::default() }), "query");
        assert_eq!(bad(pb::SearchProductsRequest { min_price_minor: -1, ..Default::default() }), "min_price_minor");
        assert_eq!(
            bad(pb::SearchProductsRequest { min_price_minor: 5, max_price_minor: 4, ..Default::default() }),
            "max_price_minor"
        );
        assert_eq!(bad(pb::SearchProductsRequest { sort: 42, ..Default::default() }), "sort");
        assert_eq!(bad(pb::SearchProductsRequest { page_size: 101, ..Default::default() }), "page_size");
        assert_eq!(bad(pb::SearchProductsRequest { page_token: "zzz".into(), ..Default::default() }), "page_token");
        let filter = |name: &str, values: Vec<String>| pb::AttributeFilter { name: name.into(), values };
        assert_eq!(
            bad(pb::SearchProductsRequest { attribute_filters: vec![filter("color", vec![])], ..Default::default() }),
            "attribute_filters[0].values"
        );
        assert_eq!(
            bad(pb::SearchProductsRequest {
                attribute_filters: vec![filter("color", vec!["red".into()]), filter("9x", vec!["a".into()])],
                ..Default::default()
            }),
            "attribute_filters[1].name"
        );
    }

    #[test]
    fn page_tokens_belong_to_their_query() {
        let req = pb::SearchProductsRequest { query: "tea".into(), ..Default::default() };
        let token = PageToken { resume_key: 20u64.to_be_bytes().to_vec(), fingerprint: search_fingerprint(&req) };
        let next = pb::SearchProductsRequest { page_token: token.encode(), page_size: 5, ..req.clone() };
        assert_eq!(search_products(&next).unwrap().offset, 20);
        let other = pb::SearchProductsRequest { query: "coffee".into(), ..next };
        assert!(search_products(&other).is_err());
    }

    #[test]
    fn cart_requests_are_checked() {
        let add = |quantity| pb::AddItemRequest { user_id: "u".into(), sku: "TEA-1".into(), quantity };
        assert!(add_item(&add(1)).is_ok());
        assert!(add_item(&add(999)).is_ok());
        assert!(add_item(&add(0)).is_err());
        assert!(add_item(&add(1000)).is_err());
        assert!(add_item(&add(-3)).is_err());
        assert!(clear_cart(&pb::ClearCartRequest { user_id: "u".into(), expected_version: -1 }).is_err());
        assert!(get_cart(&pb::GetCartRequest { user_id: String::new() }).is_err());
    }
}
