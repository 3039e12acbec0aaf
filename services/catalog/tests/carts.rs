//! Carts through a real server on every backend: 50 concurrent AddItem of one sku add up to
//! exactly 50; lines keep their price snapshot and the totals are computed; a second currency,
//! an archived or unknown sku and the 999 cap are refused without changing the cart; update,
//! remove and clear (with a stale version ABORTED); another user's cart needs role admin.

mod catalog_support;

use catalog_support::*;
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::{TestServer, context, on_every_backend};
use tonic::Code;

async fn concurrent_adds_add_up_exactly(backend: Backend) {
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(backend.store.clone())).await;
    let mut admin = catalog(&server);
    let s = sku("CART");
    create(&mut admin, product(&s, "Espresso cup", "home/kitchen", 350, &[])).await;
    let user = unique("shopper");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut carts = carts(&server);
            let (user, s) = (user.clone(), s.clone());
            tokio::spawn(async move { carts.add_item(pb::AddItemRequest { user_id: user, sku: s, quantity: 1 }).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("add item");
    }
    let cart = carts(&server).get_cart(pb::GetCartRequest { user_id: user.clone() }).await.unwrap().into_inner();
    let cart = cart.cart.unwrap();
    assert_eq!(cart.lines.len(), 1);
    assert_eq!(cart.lines[0].quantity, 50);
    assert_eq!(cart.item_count, 50);
    assert_eq!(cart.subtotal_minor, 50 * 350);
    assert_eq!(cart.version, 50, "one version per change");
    assert_eq!(cart.currency, "USD");
}

async fn cart_rules(backend: Backend) {
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(backend.store.clone())).await;
    let mut admin = catalog(&server);
    let mut c = carts(&server);
    let (tea, cup, euro, old) = (sku("TEA"), sku("CUP"), sku("EURO"), sku("OLD"));
    create(&mut admin, product(&tea, "Assam tea", "food/tea", 450, &[])).await;
    create(&mut admin, product(&cup, "Tea cup", "home/kitchen", 1200, &[])).await;
    create(&mut admin, pb::Product { currency: "EUR".into(), ..product(&euro, "Euro tea", "food/tea", 500, &[]) })
        .await;
    let archived = product(&old, "Old tea", "food/tea", 100, &[]);
    create(&mut admin, pb::Product { status: pb::ProductStatus::Archived as i32, ..archived }).await;
    let user = unique("buyer");
    let add = |sku: &str, quantity| pb::AddItemRequest { user_id: user.clone(), sku: sku.into(), quantity };

    // An unknown user has an empty cart.
    let empty = c.get_cart(pb::GetCartRequest { user_id: user.clone() }).await.unwrap().into_inner().cart.unwrap();
    assert_eq!((empty.lines.len(), empty.version, empty.currency.as_str(), empty.subtotal_minor), (0, 0, "", 0));

    c.add_item(add(&tea, 2)).await.unwrap();
    let cart = c.add_item(add(&cup, 3)).await.unwrap().into_inner().cart.unwrap();
    assert_eq!(cart.lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>(), vec![tea.clone(), cup.clone()]);
    assert_eq!(cart.lines[1].line_total_minor, 3600);
    assert_eq!(cart.subtotal_minor, 2 * 450 + 3 * 1200);
    assert_eq!(cart.item_count, 5);
    assert_eq!(cart.version, 2);
    assert_eq!(cart.lines[0].title, "Assam tea");
    assert!(cart.lines[0].add_time.is_some() && cart.update_time.is_some());

    // Refusals change nothing.
    let refused = [
        (add(&euro, 1), Code::FailedPrecondition),
        (add(&old, 1), Code::FailedPrecondition),
        (add(&sku("NOPE"), 1), Code::NotFound),
        (add(&tea, 998), Code::FailedPrecondition),
    ];
    for (req, code) in refused {
        let err = c.add_item(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
    }
    let same = c.get_cart(pb::GetCartRequest { user_id: user.clone() }).await.unwrap().into_inner().cart.unwrap();
    assert_eq!(same, cart, "refused calls changed the cart");
    let full = c.add_item(add(&tea, 997)).await.unwrap().into_inner().cart.unwrap();
    assert_eq!(full.lines[0].quantity, 999, "exactly 999 is allowed");

    // The price snapshot: a new price applies when the quantity is set again.
    let p = admin.get_product(pb::GetProductRequest { sku: cup.clone() }).await.unwrap().into_inner().product.unwrap();
    let dearer = pb::Product { price_minor: 1500, ..p.clone() };
    admin.update_product(pb::UpdateProductRequest { product: Some(dearer), etag: p.etag }).await.unwrap();
    let cart = c.get_cart(pb::GetCartRequest { user_id: user.clone() }).await.unwrap().into_inner().cart.unwrap();
    assert_eq!(cart.lines[1].unit_price_minor, 1200, "the snapshot stays");
    let update = pb::UpdateItemRequest { user_id: user.clone(), sku: cup.clone(), quantity: 1 };
    let cart = c.update_item(update).await.unwrap().into_inner().cart.unwrap();
    assert_eq!((cart.lines[1].quantity, cart.lines[1].unit_price_minor), (1, 1500));
    assert_eq!(cart.subtotal_minor, 999 * 450 + 1500);
    let missing = pb::UpdateItemRequest { user_id: user.clone(), sku: euro.clone(), quantity: 1 };
    assert_eq!(c.update_item(missing).await.unwrap_err().code(), Code::NotFound);

    // Remove, then clear with a stale and the current version.
    let remove = |sku: &str| pb::RemoveItemRequest { user_id: user.clone(), sku: sku.into() };
    let cart = c.remove_item(remove(&tea)).await.unwrap().into_inner().cart.unwrap();
    assert_eq!(cart.lines.len(), 1);
    assert_eq!(c.remove_item(remove(&tea)).await.unwrap_err().code(), Code::NotFound);
    let stale = pb::ClearCartRequest { user_id: user.clone(), expected_version: cart.version - 1 };
    assert_eq!(c.clear_cart(stale).await.unwrap_err().code(), Code::Aborted);
    let clear = pb::ClearCartRequest { user_id: user.clone(), expected_version: cart.version };
    let cleared = c.clear_cart(clear).await.unwrap().into_inner().cart.unwrap();
    assert!(cleared.lines.is_empty() && cleared.currency.is_empty());
    assert_eq!(cleared.version, cart.version + 1);
    // Empty again: another currency is fine now.
    let cart = c.add_item(add(&euro, 1)).await.unwrap().into_inner().cart.unwrap();
    assert_eq!(cart.currency, "EUR");

    // Identity: the owner or an admin; anyone else is PERMISSION_DENIED.
    let get = pb::GetCartRequest { user_id: user.clone() };
    c.get_cart(as_caller(get.clone(), &user, &[])).await.unwrap();
    c.get_cart(as_caller(get.clone(), "root", &["admin"])).await.unwrap();
    let err = c.get_cart(as_caller(get, "mallory", &["catalog"])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c.add_item(as_caller(add(&tea, 1), "mallory", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

on_every_backend!(concurrent_adds_add_up_exactly, cart_rules);
