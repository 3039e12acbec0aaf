//! End to end: the shop (catalog, carts, checkout, inventory, orders, payments) in the real
//! `meshwork up`, called through its gateway by outside clients.
//!
//! - 500 concurrent `Reserve` of one unit against stock 100: exactly 100 win, on the embedded
//!   store and on the 3-member etcd cluster.
//! - 200 checkouts with `--payment-failure-rate 0.3`: every order ends CONFIRMED with its stock
//!   committed or CANCELLED with its hold released and its authorization voided; the sums of
//!   stock, reservations and payments leak nothing; one `request_id` sent twice at once makes
//!   one order and one payment. Then `kill -9` in the middle of more checkouts and a restart on
//!   the same data dir: within 30 s every saga is finished or compensated and the sums hold.
//! - One `PlaceOrder` is one trace: the gateway's and the catalog, inventory, orders and
//!   payments services' spans in one tree.
//!
//! The generated-Python journey is in `e2e_python_sdk.rs`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshwork_proto::pb::catalog::v1 as catalog;
use meshwork_proto::pb::inventory::v1 as inventory;
use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::payments::v1 as payments;
use meshwork_storage::testing::EtcdCluster;
use support::{Mesh, Trace};
use tokio::sync::Semaphore;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Clients of the shop's services, all through one gateway.
#[derive(Clone)]
struct Shop {
    catalog: catalog::catalog_client::CatalogClient<Channel>,
    carts: catalog::carts_client::CartsClient<Channel>,
    checkout: catalog::checkout_client::CheckoutClient<Channel>,
    inventory: inventory::inventory_client::InventoryClient<Channel>,
    orders: orders::orders_client::OrdersClient<Channel>,
    payments: payments::payments_client::PaymentsClient<Channel>,
}

impl Shop {
    async fn connect(gateway: SocketAddr) -> Shop {
        let channel = Channel::from_shared(format!("http://{gateway}")).unwrap().connect().await.unwrap();
        Shop {
            catalog: catalog::catalog_client::CatalogClient::new(channel.clone()),
            carts: catalog::carts_client::CartsClient::new(channel.clone()),
            checkout: catalog::checkout_client::CheckoutClient::new(channel.clone()),
            inventory: inventory::inventory_client::InventoryClient::new(channel.clone()),
            orders: orders::orders_client::OrdersClient::new(channel.clone()),
            payments: payments::payments_client::PaymentsClient::new(channel),
        }
    }

    async fn create_product(&mut self, sku: &str, price_minor: i64) {
        let product = catalog::Product {
            sku: sku.into(),
            title: format!("Test product {sku}"),
            description: "A product of the end-to-end shop".into(),
            category: "test/e2e".into(),
            price_minor,
            currency: "USD".into(),
            ..Default::default()
        };
        let request = catalog::CreateProductRequest { request_id: format!("create-{sku}"), product: Some(product) };
        self.catalog.create_product(request).await.unwrap();
    }

    async fn receive(&mut self, sku: &str, units: i64) {
        self.inventory
            .adjust_stock(inventory::AdjustStockRequest {
                request_id: format!("receive-{sku}-{units}"),
                sku: sku.into(),
                location: "main".into(),
                delta: units,
                reason: inventory::AdjustReason::Receive as i32,
                note: String::new(),
            })
            .await
            .unwrap();
    }

    async fn stock(&mut self, sku: &str) -> inventory::GetStockResponse {
        self.inventory.get_stock(inventory::GetStockRequest { sku: sku.into() }).await.unwrap().into_inner()
    }

    async fn orders_of(&mut self, user: &str) -> Vec<orders::Order> {
        let request = orders::ListOrdersRequest { user_id: user.into(), page_size: 100, page_token: String::new() };
        self.orders.list_orders(request).await.unwrap().into_inner().orders
    }

    async fn all_payments(&mut self) -> Vec<payments::Payment> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = payments::ListPaymentsRequest { order_id: String::new(), page_size: 1000, page_token };
            let page = self.payments.list_payments(request).await.unwrap().into_inner();
            all.extend(page.payments);
            if page.next_page_token.is_empty() {
                return all;
            }
            page_token = page.next_page_token;
        }
    }
}

fn address() -> orders::Address {
    orders::Address {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: String::new(),
        city: "London".into(),
        region: String::new(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    }
}

fn place_order(request_id: &str, user: &str, token: &str) -> catalog::PlaceOrderRequest {
    catalog::PlaceOrderRequest {
        request_id: request_id.into(),
        user_id: user.into(),
        shipping_address: Some(address()),
        payment_token: token.into(),
    }
}

/// 500 concurrent one-unit reservations against stock 100, through the gateway.
async fn reserve_race(gateway: SocketAddr, sku: &str) {
    let mut shop = Shop::connect(gateway).await;
    shop.receive(sku, 100).await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let mut inventory = shop.inventory.clone();
        let sku = sku.to_string();
        tasks.push(tokio::spawn(async move {
            let request = inventory::ReserveRequest {
                request_id: format!("race-{sku}-{i}"),
                lines: vec![inventory::ReserveLine { sku, quantity: 1, location: String::new() }],
                ttl: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
                reference: format!("race-{i}"),
            };
            let mut request = Request::new(request);
            request.set_timeout(Duration::from_secs(60));
            inventory.reserve(request).await.map(|r| r.into_inner().reservation.unwrap().reservation_id)
        }));
    }
    let (mut won, mut refused) = (BTreeSet::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(id) => assert!(won.insert(id), "a reservation id was handed out twice"),
            Err(status) if status.code() == Code::FailedPrecondition => refused += 1,
            Err(status) => panic!("unexpected answer to Reserve: {status:?}"),
        }
    }
    assert_eq!((won.len(), refused), (100, 400));
    let stock = shop.stock(sku).await;
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (100, 100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_reservations_race_for_one_hundred_units_on_embedded_and_etcd() {
    let data = tempfile::tempdir().unwrap();
    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces"]);
    reserve_race(mesh.addr, "RACE-EMBEDDED").await;
    drop(mesh);

    let endpoints = tokio::task::spawn_blocking(|| EtcdCluster::shared().store_url().to_string()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces", "--store", &endpoints]);
    // The shared cluster outlives this test: a sku of its own.
    reserve_race(mesh.addr, &format!("RACE-ETCD-{}", std::process::id())).await;
}

/// The shop's products for the checkout runs: (sku, price, units received).
const SKUS: [(&str, i64, i64); 4] =
    [("MUG-01", 1250, 2000), ("TEE-02", 2400, 2000), ("CAP-03", 1800, 2000), ("PEN-04", 300, 2000)];

/// Fills `user`'s cart with one to three products.
async fn fill_cart(shop: &mut Shop, user: &str, n: usize) -> Result<(), tonic::Status> {
    for (k, (sku, _, _)) in SKUS.iter().enumerate().filter(|(k, _)| !(n + k).is_multiple_of(3)).take(3) {
        let item =
            catalog::AddItemRequest { user_id: user.into(), sku: sku.to_string(), quantity: 1 + (n + k) as i64 % 3 };
        shop.carts.add_item(item).await?;
    }
    Ok(())
}

/// Runs `count` checkouts (users `<prefix>0..`), `parallel` at a time; every tenth user pays
/// with a card that is declined. Returns each user's checkout, or the status of a call that
/// did not answer (when the process is killed under it).
async fn run_checkouts(
    gateway: SocketAddr,
    prefix: &str,
    count: usize,
    parallel: usize,
) -> Vec<tokio::task::JoinHandle<Result<catalog::CheckoutRecord, tonic::Status>>> {
    let shop = Shop::connect(gateway).await;
    let gate = Arc::new(Semaphore::new(parallel));
    (0..count)
        .map(|n| {
            let mut shop = shop.clone();
            let gate = gate.clone();
            let user = format!("{prefix}{n}");
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                fill_cart(&mut shop, &user, n).await?;
                let token = if n % 10 == 9 { "tok_decline" } else { "tok_ok" };
                let mut request = Request::new(place_order(&format!("co-{user}"), &user, token));
                request.set_timeout(Duration::from_secs(60));
                shop.checkout.place_order(request).await.map(|r| r.into_inner().checkout.unwrap())
            })
        })
        .collect()
}

/// What the sums found: orders by state, payments by status, units sold per sku.
#[derive(Debug, Default)]
struct Books {
    orders: BTreeMap<i32, usize>,
    payments: BTreeMap<i32, usize>,
    sold: BTreeMap<String, i64>,
    reserved: i64,
    problems: Vec<String>,
}

/// Sums orders, payments and stock of `users` and names whatever does not add up.
async fn books(shop: &mut Shop, users: &[String], received: i64) -> Books {
    let mut b = Books::default();
    let payments = shop.all_payments().await;
    let by_order: BTreeMap<&str, Vec<&payments::Payment>> = payments.iter().fold(BTreeMap::new(), |mut m, p| {
        m.entry(p.order_id.as_str()).or_insert_with(Vec::new).push(p);
        m
    });
    for p in &payments {
        *b.payments.entry(p.status).or_default() += 1;
        if p.status == payments::PaymentStatus::Authorized as i32 {
            b.problems.push(format!("payment {} left AUTHORIZED", p.payment_id));
        }
    }
    for user in users {
        for order in shop.orders_of(user).await {
            *b.orders.entry(order.state).or_default() += 1;
            let paid = by_order.get(order.order_id.as_str()).cloned().unwrap_or_default();
            let captured: i64 = paid.iter().map(|p| p.captured_minor - p.refunded_minor).sum();
            if order.state == orders::OrderState::Confirmed as i32 {
                for line in &order.lines {
                    *b.sold.entry(line.sku.clone()).or_default() += line.quantity;
                }
                if captured != order.total_minor || paid.len() != 1 {
                    b.problems.push(format!("confirmed order {} has payments {paid:?}", order.order_id));
                }
            } else if order.state == orders::OrderState::Cancelled as i32 {
                if captured != 0 {
                    b.problems.push(format!("cancelled order {} kept {captured} captured", order.order_id));
                }
            } else {
                b.problems.push(format!("order {} left in state {}", order.order_id, order.state));
            }
        }
    }
    for (sku, _, _) in SKUS {
        let stock = shop.stock(sku).await;
        b.reserved += stock.reserved;
        let sold = b.sold.get(sku).copied().unwrap_or(0);
        if stock.on_hand != received - sold {
            b.problems.push(format!("{sku}: on hand {} but received {received} and sold {sold}", stock.on_hand));
        }
    }
    if b.reserved != 0 {
        b.problems.push(format!("{} units left reserved", b.reserved));
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_under_payment_failures_leak_nothing_even_across_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let flags = ["--no-traces", "--payment-failure-rate", "0.3", "--payment-latency-ms", "2"];
    let (mesh, _) = Mesh::up_with_args(data.path(), &flags);
    let mut shop = Shop::connect(mesh.addr).await;
    for (sku, price, units) in SKUS {
        shop.create_product(sku, price).await;
        shop.receive(sku, units).await;
    }

    // 200 checkouts, 16 at a time.
    let mut users: Vec<String> = (0..200).map(|n| format!("buyer{n}")).collect();
    let mut outcomes = BTreeMap::new();
    for task in run_checkouts(mesh.addr, "buyer", 200, 16).await {
        let checkout = task.await.unwrap().expect("PlaceOrder answers");
        *outcomes.entry(checkout.state).or_insert(0) += 1;
        if checkout.state == catalog::CheckoutState::Failed as i32 {
            assert!(checkout.failure.is_some(), "a failed checkout says why: {checkout:?}");
        }
    }
    let completed = outcomes.get(&(catalog::CheckoutState::Completed as i32)).copied().unwrap_or(0);
    let failed = outcomes.get(&(catalog::CheckoutState::Failed as i32)).copied().unwrap_or(0);
    assert_eq!(completed + failed, 200, "every checkout finished: {outcomes:?}");
    assert!(failed >= 20, "the declined cards fail: {outcomes:?}");
    let b = books(&mut shop, &users, 2000).await;
    assert!(b.problems.is_empty(), "{:#?}", b.problems);
    assert_eq!(b.orders.get(&(orders::OrderState::Confirmed as i32)).copied().unwrap_or(0), completed, "{b:?}");

    // The same request_id twice at once: one checkout, one order, one payment.
    fill_cart(&mut shop, "twice", 1).await.unwrap();
    let (mut first, mut second) = (shop.checkout.clone(), shop.checkout.clone());
    let (a, b2) = tokio::join!(
        first.place_order(place_order("co-twice", "twice", "tok_ok")),
        second.place_order(place_order("co-twice", "twice", "tok_ok"))
    );
    let (a, b2) = (a.unwrap().into_inner().checkout.unwrap(), b2.unwrap().into_inner().checkout.unwrap());
    assert_eq!(a.checkout_id, b2.checkout_id);
    let twice = shop.orders_of("twice").await;
    assert_eq!(twice.len(), 1, "{twice:?}");
    let paid = shop
        .payments
        .list_payments(payments::ListPaymentsRequest { order_id: twice[0].order_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(paid.len(), 1, "{paid:?}");
    users.push("twice".into());

    // kill -9 in the middle of 100 more checkouts, then a restart on the same data dir.
    let running = run_checkouts(mesh.addr, "crash", 100, 16).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while shop.orders_of("crash0").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    support::signal(&mesh.child, "KILL");
    let mut cut = 0;
    for task in running {
        cut += usize::from(task.await.unwrap().is_err());
    }
    // The kill must land in the middle of the run, with checkouts in flight.
    assert!(cut > 16, "only {cut} of 100 checkouts were cut by the kill");
    drop(mesh);
    let (mesh, _) = Mesh::up_with_args(data.path(), &flags);
    let mut shop = Shop::connect(mesh.addr).await;
    users.extend((0..100).map(|n| format!("crash{n}")));
    let restarted = Instant::now();
    loop {
        let b = books(&mut shop, &users, 2000).await;
        if b.problems.is_empty() {
            break;
        }
        assert!(restarted.elapsed() < Duration::from_secs(30), "30 s after the restart: {:#?}", b.problems);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_place_order_is_one_trace_across_the_shop() {
    let data = tempfile::tempdir().unwrap();
    let (mesh, ui) = Mesh::up_with_args(data.path(), &[]);
    let mut shop = Shop::connect(mesh.addr).await;
    shop.create_product("TRACE-1", 999).await;
    shop.receive("TRACE-1", 5).await;
    let item = catalog::AddItemRequest { user_id: "tracer".into(), sku: "TRACE-1".into(), quantity: 2 };
    shop.carts.add_item(item).await.unwrap();
    let trace_id = "5cf92f3577b34da6a3ce929d0e0e4736";
    let mut request = Request::new(place_order("trace-1", "tracer", "tok_ok"));
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    let checkout = shop.checkout.place_order(request).await.unwrap().into_inner().checkout.unwrap();
    assert_eq!(checkout.state, catalog::CheckoutState::Completed as i32, "{checkout:?}");

    // Wait until the spans of every service arrived (separate export batches).
    // One tree: every span's parent is in the trace, except the gateway's root (the caller's).
    let wanted = ["gateway", "catalog", "inventory", "orders", "payments"];
    let trace = Trace::wait_for(ui, trace_id, &wanted, "00f067aa0ba902b7").await;
    // The downstream services' spans descend from the catalog's PlaceOrder span.
    let place_order = trace.span("catalog", "PlaceOrder");
    for service in ["inventory", "orders", "payments"] {
        trace.assert_under(service, place_order);
    }
}
