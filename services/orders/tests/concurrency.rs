//! Optimistic concurrency on every backend (memory, embedded fjall, the 3-member etcd
//! cluster): of N concurrent TransitionOrder calls made with the same `expected_version`
//! exactly one wins and the rest are ABORTED; N concurrent CreateOrder calls with one
//! `request_id` make one order.

mod support;

use meshwork_proto::pb::orders::v1 as pb;
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::on_every_backend;
use support::{Shop, create_request, sku};
use tonic::Code;

const N: usize = 16;

async fn one_transition_wins(backend: Backend) {
    let mut shop = Shop::start(backend.store.clone()).await;
    let s = sku("RACE");
    for round in 0..2 {
        let order = shop.create(&unique("racer"), &[(s.as_str(), 1, 700)], "").await;
        let payment = shop.pay(&order).await;
        let confirmed = shop.transition(&order, pb::OrderState::Confirmed, &payment).await.unwrap();
        // Half pack, half cancel, all from the version they read.
        let calls = (0..N).map(|i| {
            let mut client = shop.orders.clone();
            let (to, reason) =
                if (i + round) % 2 == 0 { (pb::OrderState::Packed, "") } else { (pb::OrderState::Cancelled, "race") };
            let req = pb::TransitionOrderRequest {
                order_id: confirmed.order_id.clone(),
                to: to as i32,
                expected_version: confirmed.version,
                reason: reason.into(),
                payment_id: String::new(),
            };
            tokio::spawn(async move { client.transition_order(req).await })
        });
        let results: Vec<_> = futures::future::join_all(calls).await.into_iter().map(|r| r.unwrap()).collect();
        let winners: Vec<pb::Order> =
            results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.get_ref().order.clone().unwrap()).collect();
        assert_eq!(winners.len(), 1, "exactly one wins: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.code(), Code::Aborted, "{e:?}");
            }
        }
        let now = shop.get(&confirmed.order_id).await;
        assert_eq!(now.state, winners[0].state);
        let history = shop.history(&confirmed.order_id).await;
        let moves = history.iter().filter(|e| e.r#type == pb::OrderEventType::StateChanged as i32).count();
        assert_eq!(moves, 2, "confirmed, then one move");
        assert_eq!(meshwork_orders::fold_history(&history).unwrap(), now);
    }
}

async fn one_request_id_makes_one_order(backend: Backend) {
    let shop = Shop::start(backend.store.clone()).await;
    let user = unique("dup");
    let req = create_request(&user, &[(sku("DUP").as_str(), 2, 300)], "");
    let calls = (0..N).map(|_| {
        let mut client = shop.orders.clone();
        let req = req.clone();
        tokio::spawn(async move { client.create_order(req).await })
    });
    let orders: Vec<pb::Order> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("create").into_inner().order.unwrap())
        .collect();
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "every answer is the one order");
    let mut client = shop.orders.clone();
    let listed = client
        .list_orders(pb::ListOrdersRequest { user_id: user, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(listed, vec![orders[0].clone()]);
    let history = client
        .get_order_history(pb::GetOrderHistoryRequest { order_id: orders[0].order_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(history.len(), 1);
}

on_every_backend!(one_transition_wins, one_request_id_makes_one_order);
