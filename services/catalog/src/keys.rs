//! Every store key the catalog's products, categories and carts live under, in one place.
//! Keys start with `catalog/` and keep the store's byte order meaningful: products sort by
//! sku, the per-category listing keys by category path then sku.

/// Prefix of every product record (`catalog/products/<sku>`): the search index follows it.
pub const PRODUCTS: &str = "catalog/products/";

/// Prefix of the per-category listing entries (`catalog/category-products/<path>//<sku>`).
pub const CATEGORY_PRODUCTS: &str = "catalog/category-products/";

/// Prefix of the per-category ACTIVE product counts (`catalog/categories/<path>`).
pub const CATEGORIES: &str = "catalog/categories/";

/// Prefix of the carts (`catalog/carts/<user_id>`).
pub const CARTS: &str = "catalog/carts/";

/// The service name the product idempotency records are kept under
/// (`catalog/product-requests/requests/<request_id>`), apart from checkout's records.
pub const PRODUCT_REQUESTS_SERVICE: &str = "catalog/product-requests";

/// The service name of the catalog's event log (`catalog/events/<sequence>`).
pub const EVENT_LOG_SERVICE: &str = "catalog";

/// Returns the key of the product `sku`.
pub fn product(sku: &str) -> Vec<u8> {
    format!("{PRODUCTS}{sku}").into_bytes()
}

/// Returns the sku of a product key, if it is one.
pub fn sku_of(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(PRODUCTS.as_bytes())?).ok()
}

/// Returns the prefix of the listing entries of category `path` (and of its subcategories,
/// since a product has one entry per ancestor category). The `//` cannot occur inside a
/// path (segments are never empty), so `a/b//` never matches `a/bc`'s entries.
pub fn category_products_prefix(path: &str) -> Vec<u8> {
    format!("{CATEGORY_PRODUCTS}{path}//").into_bytes()
}

/// Returns the listing entry of `sku` under the category (or ancestor category) `path`.
pub fn category_product(path: &str, sku: &str) -> Vec<u8> {
    format!("{CATEGORY_PRODUCTS}{path}//{sku}").into_bytes()
}

/// Returns the key of the ACTIVE product count of category `path`.
pub fn category(path: &str) -> Vec<u8> {
    format!("{CATEGORIES}{path}").into_bytes()
}

/// Returns the prefix of the counts of every category below `parent` (every category when
/// `parent` is empty).
pub fn categories_below(parent: &str) -> Vec<u8> {
    if parent.is_empty() { CATEGORIES.as_bytes().to_vec() } else { format!("{CATEGORIES}{parent}/").into_bytes() }
}

/// Returns the category path of a count key, if it is one.
pub fn category_of(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(CATEGORIES.as_bytes())?).ok()
}

/// Returns the key of `user_id`'s cart.
pub fn cart(user_id: &str) -> Vec<u8> {
    format!("{CARTS}{user_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_category_prefixes_do_not_overlap() {
        assert_eq!(sku_of(&product("AB-1")), Some("AB-1"));
        assert_eq!(category_of(&category("a/b")), Some("a/b"));
        let ab = category_products_prefix("a/b");
        assert!(category_product("a/b", "X1").starts_with(&ab));
        assert!(!category_product("a/bc", "X1").starts_with(&ab));
        assert!(!category_product("a", "X1").starts_with(&ab));
        assert!(category("a/b/c").starts_with(&categories_below("a")));
        assert!(!category("ab").starts_with(&categories_below("a")));
        assert_eq!(categories_below(""), CATEGORIES.as_bytes());
    }
}
