//! The records the catalog keeps in the store and their conversions to the wire types:
//! products (also stored verbatim in the search index and the per-category listing entries),
//! per-category ACTIVE counts and carts. Encoded with the kit's versioned [`Record`] format.

use std::collections::BTreeMap;

use meshwork_common::fields;
use meshwork_common::record::Record;
use meshwork_proto::pb::catalog::v1 as pb;
use serde::{Deserialize, Serialize};

/// Whether a product is for sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Searchable, can be added to carts.
    Active,
    /// Kept for orders and history only.
    Archived,
}

impl Status {
    /// Returns the wire value.
    pub fn to_proto(self) -> pb::ProductStatus {
        match self {
            Status::Active => pb::ProductStatus::Active,
            Status::Archived => pb::ProductStatus::Archived,
        }
    }
}

/// A product as stored under `catalog/products/<sku>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub sku: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    pub attributes: BTreeMap<String, String>,
    pub status: Status,
    /// 1 on create, +1 on every update.
    pub version: u64,
    /// Opaque; changes with every update (derived from the sku, version and content).
    pub etag: String,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

impl Record for ProductRecord {
    const KIND: &'static str = "product record";
}

impl ProductRecord {
    /// Whether the product is for sale.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Returns the etag of this record's content at its version: a hash of every field, so two
    /// versions never share one (the version is part of it).
    pub fn compute_etag(&self) -> String {
        let mut parts: Vec<Vec<u8>> = vec![
            self.sku.as_bytes().to_vec(),
            self.version.to_be_bytes().to_vec(),
            self.title.as_bytes().to_vec(),
            self.description.as_bytes().to_vec(),
            self.category.as_bytes().to_vec(),
            self.price_minor.to_be_bytes().to_vec(),
            self.currency.as_bytes().to_vec(),
            vec![self.status as u8],
            self.update_time_ms.to_be_bytes().to_vec(),
        ];
        for (name, value) in &self.attributes {
            parts.push(name.as_bytes().to_vec());
            parts.push(value.as_bytes().to_vec());
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        format!("{}-{:08x}", self.version, meshwork_common::paging::fingerprint(&refs))
    }

    /// Returns the wire form.
    pub fn to_proto(&self) -> pb::Product {
        pb::Product {
            sku: self.sku.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            price_minor: self.price_minor,
            currency: self.currency.clone(),
            attributes: self.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            status: self.status.to_proto() as i32,
            etag: self.etag.clone(),
            create_time: fields::timestamp_opt(self.create_time_ms),
            update_time: fields::timestamp_opt(self.update_time_ms),
        }
    }
}

/// The ACTIVE product count of one category (and below), under `catalog/categories/<path>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCount {
    pub count: i64,
}

impl Record for CategoryCount {
    const KIND: &'static str = "category count record";
}

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub sku: String,
    /// Title when added.
    pub title: String,
    /// 1-999.
    pub quantity: i64,
    /// Price snapshot when the line was added or its quantity last set.
    pub unit_price_minor: i64,
    pub add_time_ms: i64,
}

/// A user's cart under `catalog/carts/<user_id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartRecord {
    pub user_id: String,
    /// In the order added.
    pub lines: Vec<CartLine>,
    /// The currency of every line; empty when there is none.
    pub currency: String,
    /// 0 for a cart never written; +1 on every change.
    pub version: i64,
    pub update_time_ms: i64,
}

impl Record for CartRecord {
    const KIND: &'static str = "cart record";
}

impl CartRecord {
    /// Returns the wire form, with the totals computed here (never stored).
    pub fn to_proto(&self) -> pb::Cart {
        let lines: Vec<pb::CartLine> = self
            .lines
            .iter()
            .map(|l| pb::CartLine {
                sku: l.sku.clone(),
                title: l.title.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
                line_total_minor: l.quantity.saturating_mul(l.unit_price_minor),
                add_time: fields::timestamp_opt(l.add_time_ms),
            })
            .collect();
        pb::Cart {
            user_id: self.user_id.clone(),
            subtotal_minor: lines.iter().fold(0i64, |sum, l| sum.saturating_add(l.line_total_minor)),
            item_count: lines.iter().map(|l| l.quantity).sum(),
            lines,
            currency: self.currency.clone(),
            version: self.version,
            update_time: fields::timestamp_opt(self.update_time_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product() -> ProductRecord {
        ProductRecord {
            sku: "AB-1".into(),
            title: "Tea".into(),
            description: String::new(),
            category: "food/tea".into(),
            price_minor: 450,
            currency: "EUR".into(),
            attributes: BTreeMap::from([("origin".to_string(), "assam".to_string())]),
            status: Status::Active,
            version: 1,
            etag: String::new(),
            create_time_ms: 1_000,
            update_time_ms: 1_000,
        }
    }

    #[test]
    fn etags_change_with_version_and_content() {
        let a = product();
        let mut b = a.clone();
        b.version = 2;
        let mut c = a.clone();
        c.price_minor = 451;
        assert_ne!(a.compute_etag(), b.compute_etag());
        assert_ne!(a.compute_etag(), c.compute_etag());
        assert_eq!(a.compute_etag(), a.clone().compute_etag());
    }

    #[test]
    fn records_round_trip_and_convert() {
        let p = product();
        assert_eq!(ProductRecord::decode(&p.encode().unwrap()).unwrap(), p);
        let wire = p.to_proto();
        assert_eq!(wire.status, pb::ProductStatus::Active as i32);
        assert_eq!(wire.attributes.get("origin").map(String::as_str), Some("assam"));
    }

    #[test]
    fn cart_totals_are_computed() {
        let cart = CartRecord {
            user_id: "u".into(),
            lines: vec![
                CartLine { sku: "A-1".into(), title: "a".into(), quantity: 3, unit_price_minor: 250, add_time_ms: 1 },
                CartLine { sku: "B-1".into(), title: "b".into(), quantity: 2, unit_price_minor: 100, add_time_ms: 2 },
            ],
            currency: "USD".into(),
            version: 4,
            update_time_ms: 5,
        };
        let wire = cart.to_proto();
        assert_eq!(wire.subtotal_minor, 950);
        assert_eq!(wire.item_count, 5);
        assert_eq!(wire.lines[0].line_total_minor, 750);
        assert_eq!(wire.version, 4);
    }
}
