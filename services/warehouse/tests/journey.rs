//! The warehouse end to end on every backend (memory, embedded, the 3-member etcd cluster):
//! receive a purchase order (partial and over-receipt rules), put away by the suggestions,
//! take orders placed through checkout into a wave read from the orders' log, pick along the
//! optimized walk (FEFO for a lot-tracked product) with one short pick that backorders its
//! line, pack and ship (the orders move to SHIPPED), pick the backorder in a second wave, then
//! a cycle count with a difference. Stock is conserved and inventory agrees after every step;
//! retried calls answer again without applying twice.

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use meshwork_proto::pb::orders::v1 as ord;
use meshwork_proto::pb::warehouse::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use support::{Site, sku};
use tonic::Code;

const DAY_MS: i64 = 86_400_000;

fn ts(ms: i64) -> prost_types::Timestamp {
    meshwork_common::fields::timestamp(ms)
}

async fn check(site: &Site, ledger: &BTreeMap<String, i64>, step: &str) {
    if let Err(e) = site.conservation(ledger).await {
        panic!("after {step}: {e}");
    }
}

async fn journey(backend: Backend) {
    let started = Instant::now();
    let site = Site::start(backend.store.clone(), 50).await;
    let wid = site.wid.clone();
    let (a, b, c) = (sku("MILK"), sku("BOLT"), sku("CAP"));
    for (s, price) in [(&a, 250), (&b, 40), (&c, 900)] {
        site.product(s, price).await;
    }
    let mut ledger: BTreeMap<String, i64> = [(a.clone(), 0), (b.clone(), 0), (c.clone(), 0)].into();
    let mut wh = site.wh();

    // Receiving: a purchase order, received in parts; C over its 10% tolerance is refused.
    let po = wh
        .create_purchase_order(pb::CreatePurchaseOrderRequest {
            request_id: format!("po-{wid}"),
            warehouse_id: wid.clone(),
            supplier: "Acme Supply".into(),
            lines: vec![
                pb::PurchaseOrderLine { sku: a.clone(), quantity: 40, lot_tracked: true, received: 0 },
                pb::PurchaseOrderLine { sku: b.clone(), quantity: 30, lot_tracked: false, received: 0 },
                pb::PurchaseOrderLine { sku: c.clone(), quantity: 20, lot_tracked: false, received: 0 },
            ],
        })
        .await
        .expect("create po")
        .into_inner()
        .purchase_order
        .expect("po");
    let now = meshwork_common::Clock::now_ms(&meshwork_common::SystemClock);
    let line = |s: &str, q: i64, lot: &str, exp: Option<i64>| pb::ReceiptLine {
        sku: s.into(),
        quantity: q,
        lot: lot.into(),
        expire_time: exp.map(ts),
    };
    let receive = |rid: &str, lines: Vec<pb::ReceiptLine>| pb::ReceiveRequest {
        request_id: rid.into(),
        warehouse_id: wid.clone(),
        po_id: po.po_id.clone(),
        lines,
    };
    let first = receive(
        "rcv-1",
        vec![
            line(&a, 20, "L-LATE", Some(now + 30 * DAY_MS)),
            line(&a, 20, "L-SOON", Some(now + 10 * DAY_MS)),
            line(&b, 30, "", None),
            line(&c, 10, "", None),
        ],
    );
    let got = wh.receive(first.clone()).await.expect("receive").into_inner();
    assert_eq!(got.purchase_order.as_ref().map(|p| p.state), Some(pb::PurchaseOrderState::PartiallyReceived as i32));
    // A retry answers again and receives nothing more.
    assert_eq!(wh.receive(first.clone()).await.expect("retry").into_inner(), got);
    // The same request_id with another request is refused, and receives nothing.
    let mut other = first;
    other.lines.truncate(1);
    assert_eq!(wh.receive(other).await.expect_err("reused request_id").code(), Code::AlreadyExists);
    for (s, q) in [(&a, 40), (&b, 30), (&c, 10)] {
        *ledger.get_mut(s.as_str()).expect("sku") += q;
    }
    check(&site, &ledger, "the first receipt").await;
    assert_eq!(site.on_hand(&b).await, 0, "received but not put away: not on hand yet");
    let over = wh.receive(receive("rcv-2", vec![line(&c, 13, "", None)])).await.expect_err("over tolerance");
    assert_eq!(over.code(), Code::FailedPrecondition, "{over:?}");
    assert!(over.message().contains("tolerance"), "{over:?}");
    let lotless = wh.receive(receive("rcv-3", vec![line(&a, 1, "", None)])).await.expect_err("lot required");
    assert_eq!(lotless.code(), Code::FailedPrecondition);
    let got = wh.receive(receive("rcv-4", vec![line(&c, 12, "", None)])).await.expect("within tolerance").into_inner();
    assert_eq!(got.purchase_order.map(|p| p.state), Some(pb::PurchaseOrderState::Received as i32));
    *ledger.get_mut(c.as_str()).expect("sku") += 12;
    check(&site, &ledger, "the second receipt").await;

    // Put-away by the suggestions: nearest the dock first, then the same product first.
    let mut put = 0;
    for (s, lot, q) in [(&a, "L-LATE", 20), (&a, "L-SOON", 20), (&b, "", 30), (&c, "", 22)] {
        let sug = wh
            .suggest_put_away(pb::SuggestPutAwayRequest {
                warehouse_id: wid.clone(),
                sku: s.clone(),
                lot: lot.into(),
                quantity: q,
            })
            .await
            .expect("suggest")
            .into_inner();
        assert_eq!(sug.unplaced, 0);
        for to in &sug.suggestions {
            let req = pb::PutAwayRequest {
                request_id: format!("put-{put}"),
                warehouse_id: wid.clone(),
                sku: s.clone(),
                lot: lot.into(),
                quantity: to.quantity,
                to_code: to.code.clone(),
            };
            put += 1;
            let answer = wh.put_away(req.clone()).await.expect("put away").into_inner();
            // A retry answers again; inventory goes up once.
            assert_eq!(wh.put_away(req).await.expect("retry").into_inner(), answer);
            check(&site, &ledger, &format!("put-away {put}")).await;
        }
    }
    let rest = site.sku_stock(&b).await.receiving;
    assert_eq!(rest, 0, "everything put away");
    // A's second lot joined the first one's bin (same product first).
    let a_bins: Vec<String> = site.sku_stock(&a).await.places.into_iter().map(|p| p.code).collect();
    assert_eq!(a_bins.len(), 2, "two lots in one bin: {a_bins:?}");
    assert_eq!(a_bins[0], a_bins[1]);
    assert_eq!(site.on_hand(&a).await, 40);
    assert_eq!(site.on_hand(&b).await, 30);

    // Moves between bins, capacity checked: 10 of B to a far bin, then too many of C.
    let b_bin = site.sku_stock(&b).await.places[0].code.clone();
    let moved = wh
        .move_stock(pb::MoveStockRequest {
            request_id: "move-b".into(),
            warehouse_id: wid.clone(),
            sku: b.clone(),
            lot: String::new(),
            quantity: 10,
            from_code: b_bin.clone(),
            to_code: "A-05-4-A".into(),
        })
        .await
        .expect("move")
        .into_inner();
    assert_eq!(moved.to.map(|l| l.used), Some(10));
    check(&site, &ledger, "a move").await;
    let c_bin = site.sku_stock(&c).await.places[0].code.clone();
    let full = wh
        .move_stock(pb::MoveStockRequest {
            request_id: "move-too-much".into(),
            warehouse_id: wid.clone(),
            sku: c.clone(),
            lot: String::new(),
            quantity: 22,
            from_code: c_bin,
            to_code: b_bin,
        })
        .await
        .expect_err("no room");
    assert_eq!(full.code(), Code::FailedPrecondition, "{full:?}");

    // Orders from checkout: the warehouse takes them from the orders' log.
    let o1 = site.buy(&[(&a, 5), (&b, 4)]).await;
    let o2 = site.buy(&[(&b, 3), (&c, 2)]).await;
    let o3 = site.buy(&[(&a, 3)]).await;
    for o in [&o1, &o2, &o3] {
        let f = site.fulfillment(o).await;
        assert_eq!(f.state, pb::FulfillmentState::Waiting as i32);
    }
    assert_eq!(site.on_hand(&b).await, 30 - 7, "checkout committed the units in inventory");
    check(&site, &ledger, "three checkouts").await;

    // The wave: optimized walk never longer than S-shape; FEFO takes the lot expiring first.
    let wave = site.wave("wave-1").await.wave.expect("a wave");
    assert_eq!(wave.order_ids.len(), 3, "{wave:?}");
    assert!(wave.distance_dm <= wave.s_shape_distance_dm, "{wave:?}");
    assert_eq!(wave.saved_dm, wave.s_shape_distance_dm - wave.distance_dm);
    for p in wave.picks.iter().filter(|p| p.sku == a) {
        assert_eq!(p.lot, "L-SOON", "FEFO: {wave:?}");
    }
    check(&site, &ledger, "the wave").await;

    // Pick, with one short pick on o2's B.
    let short = wave.picks.iter().find(|p| p.order_id == o2 && p.sku == b).expect("o2 picks B").index;
    for p in &wave.picks {
        let picked = if p.index == short { p.quantity - 2 } else { p.quantity };
        let answer = site.confirm(&wave.wave_id, p.index, picked).await;
        assert_eq!(answer.short_quantity, p.quantity - picked);
        check(&site, &ledger, &format!("pick {}", p.index)).await;
    }
    let f2 = site.fulfillment(&o2).await;
    let b_line = f2.lines.iter().find(|l| l.sku == b).expect("B line");
    assert_eq!(b_line.backordered, 2, "{f2:?}");
    assert_eq!(f2.state, pb::FulfillmentState::Waiting as i32, "{f2:?}");
    let lost: i64 = site.sku_stock(&b).await.places.iter().filter(|p| p.code == "LOSS").map(|p| p.quantity).sum();
    assert_eq!(lost, 2);

    // Pack and ship the complete orders; the short one cannot be packed yet.
    let early = wh
        .pack(pb::PackRequest {
            request_id: "pack-early".into(),
            warehouse_id: wid.clone(),
            order_id: o2.clone(),
            cartons: vec![pb::Carton {
                carton_id: "C1".into(),
                items: vec![pb::StockItem { sku: b.clone(), quantity: 1, ..Default::default() }],
                weight_grams: 0,
            }],
        })
        .await
        .expect_err("backordered");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    for o in [&o1, &o3] {
        let f = site.pack_and_ship(o).await;
        assert_eq!(f.state, pb::FulfillmentState::Shipped as i32);
        assert_eq!(site.order(o).await.state, ord::OrderState::Shipped as i32);
    }
    for (s, q) in [(&a, 8), (&b, 4)] {
        *ledger.get_mut(s.as_str()).expect("sku") -= q;
    }
    check(&site, &ledger, "shipping o1 and o3").await;

    // The backorder: a second wave commits 2 more units in inventory and picks them elsewhere.
    let before = site.on_hand(&b).await;
    let second = site.wave("wave-2").await.wave.expect("a wave for the backorder");
    assert_eq!(second.order_ids, vec![o2.clone()]);
    assert_eq!(site.on_hand(&b).await, before - 2, "the backorder is bought again in inventory");
    assert_eq!(second.picks.iter().map(|p| p.quantity).sum::<i64>(), 2, "{second:?}");
    for p in &second.picks {
        assert_eq!((p.order_id.as_str(), p.sku.as_str()), (o2.as_str(), b.as_str()));
        site.confirm(&second.wave_id, p.index, p.quantity).await;
    }
    check(&site, &ledger, "the backorder wave").await;
    let f = site.pack_and_ship(&o2).await;
    assert_eq!(f.state, pb::FulfillmentState::Shipped as i32);
    site.wait_order_state(&o2, ord::OrderState::Shipped).await;
    for (s, q) in [(&b, 3), (&c, 2)] {
        *ledger.get_mut(s.as_str()).expect("sku") -= q;
    }
    check(&site, &ledger, "shipping o2").await;

    // Cycle counts: A (8 picked) and B (7) make the first 80% of picked units, C (2) the
    // next 15%; a count finds one unit of B fewer.
    let plan = wh
        .plan_cycle_counts(pb::PlanCycleCountsRequest { warehouse_id: wid.clone(), due_only: false })
        .await
        .expect("plan")
        .into_inner();
    let class_of = |s: &str| plan.items.iter().find(|i| i.sku == s).map(|i| i.abc_class);
    assert_eq!(class_of(&a), Some(pb::AbcClass::A as i32), "{plan:?}");
    assert_eq!(class_of(&b), Some(pb::AbcClass::A as i32), "{plan:?}");
    assert_eq!(class_of(&c), Some(pb::AbcClass::B as i32), "{plan:?}");
    let bin = site.sku_stock(&b).await.places.into_iter().find(|p| p.code.starts_with("A-")).expect("a bin of B");
    let count = pb::RecordCountRequest {
        request_id: "count-1".into(),
        warehouse_id: wid.clone(),
        code: bin.code.clone(),
        sku: b.clone(),
        lot: String::new(),
        counted_quantity: bin.quantity - 1,
        counted_by: "counter-1".into(),
    };
    let on_hand = site.on_hand(&b).await;
    let counted = wh.record_count(count.clone()).await.expect("count").into_inner();
    assert_eq!(counted.difference, -1);
    assert_eq!(counted.inventory_on_hand, on_hand - 1);
    assert_eq!(wh.record_count(count).await.expect("retry").into_inner(), counted);
    assert_eq!(site.on_hand(&b).await, on_hand - 1, "the retry adjusted nothing");
    check(&site, &ledger, "the cycle count").await;
    let audit = wh
        .list_audit(pb::ListAuditRequest {
            warehouse_id: wid.clone(),
            from_sequence: counted.audit_sequence,
            page_size: 10,
        })
        .await
        .expect("audit")
        .into_inner();
    let rec = &audit.records[0];
    assert_eq!(
        (rec.kind, rec.expected_quantity, rec.counted_quantity),
        (pb::AuditKind::Counted as i32, bin.quantity, bin.quantity - 1)
    );
    assert_eq!((rec.from_code.as_str(), rec.to_code.as_str()), (bin.code.as_str(), "LOSS"));
    let plan = wh
        .plan_cycle_counts(pb::PlanCycleCountsRequest { warehouse_id: wid.clone(), due_only: false })
        .await
        .expect("plan")
        .into_inner();
    let item = plan.items.iter().find(|i| i.sku == b).expect("B");
    assert!(item.last_count_time.is_some() && !item.due, "{item:?}");
    eprintln!(
        "warehouse journey: {:?}, wave walk {} dm vs S-shape {} dm",
        started.elapsed(),
        wave.distance_dm,
        wave.s_shape_distance_dm
    );
}

on_every_backend!(journey);
