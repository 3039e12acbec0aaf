//! The bad-input catalogue of every Catalog and Carts RPC, through a real server: empty and
//! oversized fields, malformed skus, categories and currencies, negative and out-of-range
//! numbers, unknown enum values, forged page tokens, unknown skus and lines, stale etags and
//! versions, archived products and a second currency. Each answers its code (with the field
//! named for INVALID_ARGUMENT), and afterwards every key in the store is exactly as before.

mod catalog_support;

use catalog_support::*;
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_storage::{Direction, DynStore, Entry, KeyRange, scan_all};
use meshwork_test_support::{TestServer, context, memory_store};
use tonic::Code;

async fn snapshot(store: &DynStore) -> Vec<Entry> {
    scan_all(store, KeyRange::prefix(Vec::new()), Direction::Forward).await.expect("scan the store")
}

/// Checks one answer: `Err` with `code`, and for INVALID_ARGUMENT a message naming `field`.
fn check<T: std::fmt::Debug>(what: &str, answer: Result<T, tonic::Status>, code: Code, field: &str) {
    match answer {
        Ok(ok) => panic!("{what}: expected {code:?}, got {ok:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            if code == Code::InvalidArgument {
                assert!(
                    status.message().starts_with(&format!("{field}:")),
                    "{what}: {:?} does not name {field}",
                    status.message()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_rejects_bad_input_and_changes_nothing() {
    let store = memory_store();
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(store.clone())).await;
    let mut catalog = catalog(&server);
    let mut carts = carts(&server);
    let good = create(&mut catalog, product("GOOD-1", "Lamp", "home/lighting", 1000, &[("color", "red")])).await;
    let archived =
        pb::Product { status: pb::ProductStatus::Archived as i32, ..product("OLD-1", "Old", "home", 5, &[]) };
    create(&mut catalog, archived).await;
    create(&mut catalog, pb::Product { currency: "EUR".into(), ..product("EURO-1", "Euro", "home", 5, &[]) }).await;
    carts.add_item(pb::AddItemRequest { user_id: "u1".into(), sku: "GOOD-1".into(), quantity: 998 }).await.unwrap();
    // In the cart, then archived.
    let gone = create(&mut catalog, product("GONE-1", "Gone", "home", 5, &[])).await;
    carts.add_item(pb::AddItemRequest { user_id: "u1".into(), sku: "GONE-1".into(), quantity: 1 }).await.unwrap();
    let archive = pb::Product { status: pb::ProductStatus::Archived as i32, ..gone.clone() };
    catalog.update_product(pb::UpdateProductRequest { product: Some(archive), etag: gone.etag }).await.unwrap();
    let cart_version =
        carts.get_cart(pb::GetCartRequest { user_id: "u1".into() }).await.unwrap().into_inner().cart.unwrap().version;
    let before = snapshot(&store).await;

    // CreateProduct.
    let p = || product("NEW-1", "New lamp", "home/lighting", 1000, &[("color", "red")]);
    let create_with = |request_id: &str, product: Option<pb::Product>| pb::CreateProductRequest {
        request_id: request_id.into(),
        product,
    };
    let many_attributes = (0..31).map(|i| (format!("a{i}"), "v".to_string())).collect();
    let bad_products: Vec<(&str, pb::Product, &str)> = vec![
        ("empty sku", pb::Product { sku: String::new(), ..p() }, "product.sku"),
        ("short sku", pb::Product { sku: "AB".into(), ..p() }, "product.sku"),
        ("lower-case sku", pb::Product { sku: "new-1".into(), ..p() }, "product.sku"),
        ("long sku", pb::Product { sku: "A".repeat(41), ..p() }, "product.sku"),
        ("empty title", pb::Product { title: String::new(), ..p() }, "product.title"),
        ("long title", pb::Product { title: "t".repeat(201), ..p() }, "product.title"),
        ("long description", pb::Product { description: "d".repeat(5001), ..p() }, "product.description"),
        ("empty category", pb::Product { category: String::new(), ..p() }, "product.category"),
        ("upper-case category", pb::Product { category: "Home".into(), ..p() }, "product.category"),
        ("empty segment", pb::Product { category: "home//x".into(), ..p() }, "product.category"),
        ("six segments", pb::Product { category: "a/b/c/d/e/f".into(), ..p() }, "product.category"),
        ("long segment", pb::Product { category: "x".repeat(41), ..p() }, "product.category"),
        ("negative price", pb::Product { price_minor: -1, ..p() }, "product.price_minor"),
        ("huge price", pb::Product { price_minor: 100_000_000_001, ..p() }, "product.price_minor"),
        ("no currency", pb::Product { currency: String::new(), ..p() }, "product.currency"),
        ("lower-case currency", pb::Product { currency: "usd".into(), ..p() }, "product.currency"),
        ("unknown currency", pb::Product { currency: "XXX".into(), ..p() }, "product.currency"),
        ("31 attributes", pb::Product { attributes: many_attributes, ..p() }, "product.attributes"),
        (
            "bad attribute name",
            pb::Product { attributes: [("Color".into(), "red".into())].into(), ..p() },
            "product.attributes",
        ),
        (
            "empty attribute value",
            pb::Product { attributes: [("color".into(), String::new())].into(), ..p() },
            "product.attributes[color]",
        ),
        (
            "long attribute value",
            pb::Product { attributes: [("color".into(), "r".repeat(201))].into(), ..p() },
            "product.attributes[color]",
        ),
        ("unknown status", pb::Product { status: 7, ..p() }, "product.status"),
    ];
    for (what, product, field) in &bad_products {
        check(
            what,
            catalog.create_product(create_with("r-bad", Some(product.clone()))).await,
            Code::InvalidArgument,
            field,
        );
    }
    check(
        "no request_id",
        catalog.create_product(create_with("", Some(p()))).await,
        Code::InvalidArgument,
        "request_id",
    );
    check(
        "long request_id",
        catalog.create_product(create_with(&"r".repeat(65), Some(p()))).await,
        Code::InvalidArgument,
        "request_id",
    );
    check("no product", catalog.create_product(create_with("r-none", None)).await, Code::InvalidArgument, "product");
    let taken = pb::Product { sku: "GOOD-1".into(), ..p() };
    check("sku taken", catalog.create_product(create_with("r-taken", Some(taken))).await, Code::AlreadyExists, "");

    // GetProduct.
    for (what, sku, code) in [
        ("empty", "", Code::InvalidArgument),
        ("malformed", "no sku", Code::InvalidArgument),
        ("unknown", "NONE-1", Code::NotFound),
    ] {
        check(what, catalog.get_product(pb::GetProductRequest { sku: sku.into() }).await, code, "sku");
    }

    // UpdateProduct.
    let update =
        |product: pb::Product, etag: &str| pb::UpdateProductRequest { product: Some(product), etag: etag.into() };
    for (what, product, field) in &bad_products {
        let product = pb::Product {
            sku: if *field == "product.sku" { product.sku.clone() } else { "GOOD-1".into() },
            ..product.clone()
        };
        check(what, catalog.update_product(update(product, &good.etag)).await, Code::InvalidArgument, field);
    }
    check("no etag", catalog.update_product(update(good.clone(), "")).await, Code::InvalidArgument, "etag");
    check(
        "long etag",
        catalog.update_product(update(good.clone(), &"e".repeat(65))).await,
        Code::InvalidArgument,
        "etag",
    );
    check(
        "no product",
        catalog.update_product(pb::UpdateProductRequest { product: None, etag: good.etag.clone() }).await,
        Code::InvalidArgument,
        "product",
    );
    check(
        "unknown sku",
        catalog.update_product(update(pb::Product { sku: "NONE-1".into(), ..good.clone() }, &good.etag)).await,
        Code::NotFound,
        "",
    );
    check(
        "stale etag",
        catalog.update_product(update(pb::Product { price_minor: 1, ..good.clone() }, "1-deadbeef")).await,
        Code::Aborted,
        "",
    );

    // ListProducts.
    let list = |category: &str, page_size: i32, page_token: &str| pb::ListProductsRequest {
        category: category.into(),
        include_archived: false,
        page_size,
        page_token: page_token.into(),
    };
    check("bad category", catalog.list_products(list("Home", 0, "")).await, Code::InvalidArgument, "category");
    check("negative page", catalog.list_products(list("", -1, "")).await, Code::InvalidArgument, "page_size");
    check("huge page", catalog.list_products(list("", 1001, "")).await, Code::InvalidArgument, "page_size");
    check(
        "forged token",
        catalog.list_products(list("", 0, "bm90LWEtdG9rZW4")).await,
        Code::InvalidArgument,
        "page_token",
    );

    // SearchProducts.
    let s = |req: pb::SearchProductsRequest| req;
    let filter = |name: &str, values: Vec<String>| pb::AttributeFilter { name: name.into(), values };
    let searches: Vec<(&str, pb::SearchProductsRequest, &str)> = vec![
        ("long query", s(query(&"q".repeat(501))), "query"),
        ("bad category", pb::SearchProductsRequest { category: "a//b".into(), ..query("") }, "category"),
        ("negative min", pb::SearchProductsRequest { min_price_minor: -1, ..query("") }, "min_price_minor"),
        ("negative max", pb::SearchProductsRequest { max_price_minor: -5, ..query("") }, "max_price_minor"),
        (
            "min above max",
            pb::SearchProductsRequest { min_price_minor: 10, max_price_minor: 9, ..query("") },
            "max_price_minor",
        ),
        (
            "11 filters",
            pb::SearchProductsRequest {
                attribute_filters: (0..11).map(|i| filter(&format!("a{i}"), vec!["v".into()])).collect(),
                ..query("")
            },
            "attribute_filters",
        ),
        (
            "bad filter name",
            pb::SearchProductsRequest { attribute_filters: vec![filter("Color", vec!["red".into()])], ..query("") },
            "attribute_filters[0].name",
        ),
        (
            "no filter values",
            pb::SearchProductsRequest { attribute_filters: vec![filter("color", vec![])], ..query("") },
            "attribute_filters[0].values",
        ),
        (
            "51 filter values",
            pb::SearchProductsRequest { attribute_filters: vec![filter("color", vec!["v".into(); 51])], ..query("") },
            "attribute_filters[0].values",
        ),
        (
            "empty filter value",
            pb::SearchProductsRequest { attribute_filters: vec![filter("color", vec![String::new()])], ..query("") },
            "attribute_filters[0].values[0]",
        ),
        ("unknown sort", pb::SearchProductsRequest { sort: 9, ..query("") }, "sort"),
        ("negative page", pb::SearchProductsRequest { page_size: -1, ..query("") }, "page_size"),
        ("huge page", pb::SearchProductsRequest { page_size: 101, ..query("") }, "page_size"),
        (
            "forged token",
            pb::SearchProductsRequest { page_token: "AQAAAAAAAAAAAAAAAA".into(), ..query("") },
            "page_token",
        ),
    ];
    for (what, req, field) in searches {
        check(what, catalog.search_products(req).await, Code::InvalidArgument, field);
    }

    // ListCategories.
    for parent in ["Home", "home/", "a/b/c/d/e/f"] {
        check(
            parent,
            catalog.list_categories(pb::ListCategoriesRequest { parent: parent.into() }).await,
            Code::InvalidArgument,
            "parent",
        );
    }

    // AddItem and UpdateItem share their rules.
    let long_user = "u".repeat(129);
    let items: Vec<(&str, &str, &str, i64, Code, &str)> = vec![
        ("no user", "", "GOOD-1", 1, Code::InvalidArgument, "user_id"),
        ("long user", &long_user, "GOOD-1", 1, Code::InvalidArgument, "user_id"),
        ("control character", "u\u{7}1", "GOOD-1", 1, Code::InvalidArgument, "user_id"),
        ("no sku", "u1", "", 1, Code::InvalidArgument, "sku"),
        ("bad sku", "u1", "good-1", 1, Code::InvalidArgument, "sku"),
        ("zero", "u1", "GOOD-1", 0, Code::InvalidArgument, "quantity"),
        ("negative", "u1", "GOOD-1", -4, Code::InvalidArgument, "quantity"),
        ("1000", "u1", "GOOD-1", 1000, Code::InvalidArgument, "quantity"),
        ("unknown sku", "u1", "NONE-1", 1, Code::NotFound, ""),
        ("archived", "u1", "OLD-1", 1, Code::FailedPrecondition, ""),
    ];
    for (what, user, sku, quantity, code, field) in &items {
        let add = pb::AddItemRequest { user_id: user.to_string(), sku: sku.to_string(), quantity: *quantity };
        check(what, carts.add_item(add).await, *code, field);
        let set = pb::UpdateItemRequest { user_id: user.to_string(), sku: sku.to_string(), quantity: *quantity };
        // An archived sku that is not in the cart has no line to set.
        let code = if *what == "archived" { Code::NotFound } else { *code };
        check(what, carts.update_item(set).await, code, field);
    }
    let add = |sku: &str, quantity| pb::AddItemRequest { user_id: "u1".into(), sku: sku.into(), quantity };
    check("other currency", carts.add_item(add("EURO-1", 1)).await, Code::FailedPrecondition, "");
    check("over 999", carts.add_item(add("GOOD-1", 2)).await, Code::FailedPrecondition, "");
    let set = pb::UpdateItemRequest { user_id: "u1".into(), sku: "EURO-1".into(), quantity: 1 };
    check("no such line", carts.update_item(set).await, Code::NotFound, "");
    let set = pb::UpdateItemRequest { user_id: "u1".into(), sku: "GONE-1".into(), quantity: 2 };
    check("archived line", carts.update_item(set).await, Code::FailedPrecondition, "");

    // RemoveItem.
    let remove = |user: &str, sku: &str| pb::RemoveItemRequest { user_id: user.into(), sku: sku.into() };
    check("no user", carts.remove_item(remove("", "GOOD-1")).await, Code::InvalidArgument, "user_id");
    check("bad sku", carts.remove_item(remove("u1", "x")).await, Code::InvalidArgument, "sku");
    check("no such line", carts.remove_item(remove("u1", "EURO-1")).await, Code::NotFound, "");
    check("no cart", carts.remove_item(remove("nobody", "GOOD-1")).await, Code::NotFound, "");

    // GetCart.
    check(
        "no user",
        carts.get_cart(pb::GetCartRequest { user_id: String::new() }).await,
        Code::InvalidArgument,
        "user_id",
    );
    check(
        "long user",
        carts.get_cart(pb::GetCartRequest { user_id: long_user.clone() }).await,
        Code::InvalidArgument,
        "user_id",
    );

    // ClearCart.
    let clear = |user: &str, expected_version| pb::ClearCartRequest { user_id: user.into(), expected_version };
    check("no user", carts.clear_cart(clear("", 0)).await, Code::InvalidArgument, "user_id");
    check("negative version", carts.clear_cart(clear("u1", -1)).await, Code::InvalidArgument, "expected_version");
    check("stale version", carts.clear_cart(clear("u1", cart_version + 1)).await, Code::Aborted, "");

    // Identity: another user's cart, or product writes without a role.
    let get = pb::GetCartRequest { user_id: "u1".into() };
    check("someone else's cart", carts.get_cart(as_caller(get, "u2", &[])).await, Code::PermissionDenied, "");
    let clear_other = as_caller(clear("u1", 0), "u2", &["catalog"]);
    check("clearing someone else's cart", carts.clear_cart(clear_other).await, Code::PermissionDenied, "");
    let create_req = as_caller(create_with("r-role", Some(p())), "u2", &[]);
    check("create without a role", catalog.create_product(create_req).await, Code::PermissionDenied, "");

    assert_eq!(snapshot(&store).await, before, "a rejected call changed the store");
}
