//! The bad-input catalogue: every RPC refuses each malformed request with INVALID_ARGUMENT
//! naming the field, and a refused call changes nothing (the warehouse's locations, purchase
//! order, stock, audit log and inventory are compared before and after). On every backend.

mod support;

use meshwork_proto::pb::warehouse::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use support::{Site, sku};
use tonic::Code;

fn expect_invalid<T: std::fmt::Debug>(what: &str, got: Result<tonic::Response<T>, tonic::Status>, field: &str) {
    match got {
        Ok(r) => panic!("{what}: accepted: {r:?}"),
        Err(s) => {
            assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
            assert!(s.message().starts_with(&format!("{field}:")), "{what}: {:?} does not name {field}", s.message());
        }
    }
}

/// Everything a refused call could have changed.
async fn snapshot(site: &Site, po_id: &str, s: &str) -> String {
    let mut wh = site.wh();
    let locations = wh
        .list_locations(pb::ListLocationsRequest {
            warehouse_id: site.wid.clone(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    let po = wh
        .get_purchase_order(pb::GetPurchaseOrderRequest { warehouse_id: site.wid.clone(), po_id: po_id.into() })
        .await
        .expect("po")
        .into_inner();
    let audit = wh
        .list_audit(pb::ListAuditRequest { warehouse_id: site.wid.clone(), from_sequence: 0, page_size: 1000 })
        .await
        .expect("audit")
        .into_inner();
    format!("{locations:?}\n{po:?}\n{:?}\n{audit:?}\n{}", site.sku_stock(s).await, site.on_hand(s).await)
}

async fn catalogue(backend: Backend) {
    let site = Site::start(backend.store.clone(), 50).await;
    let wid = site.wid.clone();
    let s = sku("BAD");
    let mut wh = site.wh();
    let po = wh
        .create_purchase_order(pb::CreatePurchaseOrderRequest {
            request_id: format!("po-{wid}"),
            warehouse_id: wid.clone(),
            supplier: "Acme".into(),
            lines: vec![pb::PurchaseOrderLine { sku: s.clone(), quantity: 10, lot_tracked: false, received: 0 }],
        })
        .await
        .expect("po")
        .into_inner()
        .purchase_order
        .expect("po");
    wh.receive(pb::ReceiveRequest {
        request_id: "rcv".into(),
        warehouse_id: wid.clone(),
        po_id: po.po_id.clone(),
        lines: vec![pb::ReceiptLine { sku: s.clone(), quantity: 6, lot: String::new(), expire_time: None }],
    })
    .await
    .expect("receive");
    wh.put_away(pb::PutAwayRequest {
        request_id: "put".into(),
        warehouse_id: wid.clone(),
        sku: s.clone(),
        lot: String::new(),
        quantity: 4,
        to_code: "A-01-1-A".into(),
    })
    .await
    .expect("put away");
    let before = snapshot(&site, &po.po_id, &s).await;

    // CreateWarehouse
    let good_wh = pb::Facility {
        warehouse_id: format!("{wid}-2"),
        name: "Second".into(),
        inventory_location: String::new(),
        aisles: 5,
        aisle_length_dm: 100,
        aisle_spacing_dm: 30,
        rack_pitch_dm: 10,
        over_receipt_percent: 5,
        create_time: None,
    };
    let cw = |rid: &str, w: Option<pb::Facility>| pb::CreateWarehouseRequest { request_id: rid.into(), warehouse: w };
    for (req, field) in [
        (cw("", Some(good_wh.clone())), "request_id"),
        (cw(&"r".repeat(65), Some(good_wh.clone())), "request_id"),
        (cw("r 1", Some(good_wh.clone())), "request_id"),
        (cw("r1", None), "warehouse"),
        (cw("r1", Some(pb::Facility { warehouse_id: "Bad_ID".into(), ..good_wh.clone() })), "warehouse.warehouse_id"),
        (cw("r1", Some(pb::Facility { name: " ".into(), ..good_wh.clone() })), "warehouse.name"),
        (
            cw("r1", Some(pb::Facility { inventory_location: "X Y".into(), ..good_wh.clone() })),
            "warehouse.inventory_location",
        ),
        (cw("r1", Some(pb::Facility { aisles: 0, ..good_wh.clone() })), "warehouse.aisles"),
        (cw("r1", Some(pb::Facility { aisle_length_dm: 5, ..good_wh.clone() })), "warehouse.aisle_length_dm"),
        (cw("r1", Some(pb::Facility { aisle_spacing_dm: 0, ..good_wh.clone() })), "warehouse.aisle_spacing_dm"),
        (cw("r1", Some(pb::Facility { rack_pitch_dm: -1, ..good_wh.clone() })), "warehouse.rack_pitch_dm"),
        (
            cw("r1", Some(pb::Facility { over_receipt_percent: 101, ..good_wh.clone() })),
            "warehouse.over_receipt_percent",
        ),
    ] {
        expect_invalid("CreateWarehouse", wh.create_warehouse(req).await, field);
    }
    expect_invalid(
        "GetWarehouse",
        wh.get_warehouse(pb::GetWarehouseRequest { warehouse_id: String::new() }).await,
        "warehouse_id",
    );

    // CreateLocations
    let nl = |code: &str, capacity: i64| pb::NewLocation { code: code.into(), capacity };
    let cl = |locations: Vec<pb::NewLocation>| pb::CreateLocationsRequest {
        request_id: "cl".into(),
        warehouse_id: wid.clone(),
        locations,
    };
    for (req, field) in [
        (cl(vec![]), "locations"),
        (cl(vec![nl("A-3-2-B", 5)]), "locations[0].code"),
        (cl(vec![nl("", 5)]), "locations[0].code"),
        (cl(vec![nl("RECEIVING", 5)]), "locations[0].code"),
        (cl(vec![nl("B-01-1-A", 5), nl("B-01-1-A", 5)]), "locations[1].code"),
        (cl(vec![nl("B-01-1-A", 0)]), "locations[0].capacity"),
        (cl(vec![nl("B-01-1-A", 5), nl("B-50-1-A", 5)]), "locations[1].code"),
        (cl(vec![nl("B-01-99-A", 5)]), "locations[0].code"),
    ] {
        expect_invalid("CreateLocations", wh.create_locations(req).await, field);
    }
    expect_invalid(
        "GetLocation",
        wh.get_location(pb::GetLocationRequest { warehouse_id: wid.clone(), code: "nope".into() }).await,
        "code",
    );
    expect_invalid(
        "GetLocation",
        wh.get_location(pb::GetLocationRequest { warehouse_id: "W".into(), code: "LOSS".into() }).await,
        "warehouse_id",
    );
    let ll = |page_size: i32, page_token: &str| pb::ListLocationsRequest {
        warehouse_id: wid.clone(),
        page_size,
        page_token: page_token.into(),
    };
    expect_invalid("ListLocations", wh.list_locations(ll(-1, "")).await, "page_size");
    expect_invalid("ListLocations", wh.list_locations(ll(1001, "")).await, "page_size");
    expect_invalid("ListLocations", wh.list_locations(ll(10, "not-a-token")).await, "page_token");
    expect_invalid(
        "GetSkuStock",
        wh.get_sku_stock(pb::GetSkuStockRequest { warehouse_id: wid.clone(), sku: "bad".into() }).await,
        "sku",
    );

    // CreatePurchaseOrder, GetPurchaseOrder, Receive
    let pl =
        |sku: &str, quantity: i64| pb::PurchaseOrderLine { sku: sku.into(), quantity, lot_tracked: false, received: 0 };
    let cp = |supplier: &str, lines: Vec<pb::PurchaseOrderLine>| pb::CreatePurchaseOrderRequest {
        request_id: "cp".into(),
        warehouse_id: wid.clone(),
        supplier: supplier.into(),
        lines,
    };
    for (req, field) in [
        (cp("", vec![pl(&s, 1)]), "supplier"),
        (cp("Acme", vec![]), "lines"),
        (cp("Acme", vec![pl("x", 1)]), "lines[0].sku"),
        (cp("Acme", vec![pl(&s, 0)]), "lines[0].quantity"),
        (cp("Acme", vec![pl(&s, 1), pl(&s, 2)]), "lines[1].sku"),
        (cp("Acme", vec![pl(&s, 1_000_001)]), "lines[0].quantity"),
    ] {
        expect_invalid("CreatePurchaseOrder", wh.create_purchase_order(req).await, field);
    }
    expect_invalid(
        "GetPurchaseOrder",
        wh.get_purchase_order(pb::GetPurchaseOrderRequest { warehouse_id: wid.clone(), po_id: "po_1".into() }).await,
        "po_id",
    );
    let rl = |sku: &str, quantity: i64, lot: &str, exp: bool| pb::ReceiptLine {
        sku: sku.into(),
        quantity,
        lot: lot.into(),
        expire_time: exp.then_some(prost_types::Timestamp { seconds: 2_000_000_000, nanos: 0 }),
    };
    let rc = |po_id: &str, lines: Vec<pb::ReceiptLine>| pb::ReceiveRequest {
        request_id: "rc".into(),
        warehouse_id: wid.clone(),
        po_id: po_id.into(),
        lines,
    };
    for (req, field) in [
        (rc("", vec![rl(&s, 1, "", false)]), "po_id"),
        (rc(&po.po_id, vec![]), "lines"),
        (rc(&po.po_id, vec![rl("s", 1, "", false)]), "lines[0].sku"),
        (rc(&po.po_id, vec![rl(&s, 0, "", false)]), "lines[0].quantity"),
        (rc(&po.po_id, vec![rl(&s, 1, "L 1", true)]), "lines[0].lot"),
        (rc(&po.po_id, vec![rl(&s, 1, "L1", false)]), "lines[0].expire_time"),
        (rc(&po.po_id, vec![rl(&s, 1, "", true)]), "lines[0].expire_time"),
        (rc(&po.po_id, vec![rl(&s, 1, "", false), rl(&s, 1, "", false)]), "lines[1].sku"),
    ] {
        expect_invalid("Receive", wh.receive(req).await, field);
    }

    // SuggestPutAway, PutAway, MoveStock
    let sp = |quantity: i64, lot: &str| pb::SuggestPutAwayRequest {
        warehouse_id: wid.clone(),
        sku: s.clone(),
        lot: lot.into(),
        quantity,
    };
    expect_invalid("SuggestPutAway", wh.suggest_put_away(sp(0, "")).await, "quantity");
    expect_invalid("SuggestPutAway", wh.suggest_put_away(sp(1, "l/1")).await, "lot");
    let pa = |rid: &str, quantity: i64, to: &str| pb::PutAwayRequest {
        request_id: rid.into(),
        warehouse_id: wid.clone(),
        sku: s.clone(),
        lot: String::new(),
        quantity,
        to_code: to.into(),
    };
    for (req, field) in [
        (pa("", 1, "A-01-1-A"), "request_id"),
        (pa("p", 0, "A-01-1-A"), "quantity"),
        (pa("p", -1, "A-01-1-A"), "quantity"),
        (pa("p", 1, ""), "to_code"),
        (pa("p", 1, "RECEIVING"), "to_code"),
    ] {
        expect_invalid("PutAway", wh.put_away(req).await, field);
    }
    let mv = |from: &str, to: &str, quantity: i64| pb::MoveStockRequest {
        request_id: "mv".into(),
        warehouse_id: wid.clone(),
        sku: s.clone(),
        lot: String::new(),
        quantity,
        from_code: from.into(),
        to_code: to.into(),
    };
    for (req, field) in [
        (mv("", "A-01-2-A", 1), "from_code"),
        (mv("A-01-1-A", "LOSS", 1), "to_code"),
        (mv("A-01-1-A", "A-01-1-A", 1), "to_code"),
        (mv("A-01-1-A", "A-01-2-A", 0), "quantity"),
    ] {
        expect_invalid("MoveStock", wh.move_stock(req).await, field);
    }

    // BuildWave, GetWave, ConfirmPick
    let bw = |rid: &str, w: &str, max_orders: i32| pb::BuildWaveRequest {
        request_id: rid.into(),
        warehouse_id: w.into(),
        max_orders,
    };
    expect_invalid("BuildWave", wh.build_wave(bw("b", &wid, 101)).await, "max_orders");
    expect_invalid("BuildWave", wh.build_wave(bw("b", &wid, -1)).await, "max_orders");
    expect_invalid("BuildWave", wh.build_wave(bw("b", "", 1)).await, "warehouse_id");
    expect_invalid("BuildWave", wh.build_wave(bw("", &wid, 1)).await, "request_id");
    expect_invalid(
        "GetWave",
        wh.get_wave(pb::GetWaveRequest { warehouse_id: wid.clone(), wave_id: "w1".into() }).await,
        "wave_id",
    );
    let wave_id = format!("wave_{}", "a".repeat(20));
    let cf = |wave: &str, index: i32, picked: i64| pb::ConfirmPickRequest {
        request_id: "cf".into(),
        warehouse_id: wid.clone(),
        wave_id: wave.into(),
        index,
        picked_quantity: picked,
    };
    expect_invalid("ConfirmPick", wh.confirm_pick(cf("wave_1", 0, 1)).await, "wave_id");
    expect_invalid("ConfirmPick", wh.confirm_pick(cf(&wave_id, -1, 1)).await, "index");
    expect_invalid("ConfirmPick", wh.confirm_pick(cf(&wave_id, 0, -1)).await, "picked_quantity");

    // Pack, Ship, GetFulfillment
    let order_id = format!("ord_{}", "b".repeat(20));
    let item = |sku: &str, quantity: i64| pb::StockItem { sku: sku.into(), quantity, ..Default::default() };
    let carton = |id: &str, items: Vec<pb::StockItem>| pb::Carton { carton_id: id.into(), items, weight_grams: 10 };
    let pk = |order: &str, cartons: Vec<pb::Carton>| pb::PackRequest {
        request_id: "pk".into(),
        warehouse_id: wid.clone(),
        order_id: order.into(),
        cartons,
    };
    for (req, field) in [
        (pk("ord_1", vec![carton("C1", vec![item(&s, 1)])]), "order_id"),
        (pk(&order_id, vec![]), "cartons"),
        (pk(&order_id, vec![carton("", vec![item(&s, 1)])]), "cartons[0].carton_id"),
        (pk(&order_id, vec![carton("C1", vec![item(&s, 1)]), carton("C1", vec![item(&s, 1)])]), "cartons[1].carton_id"),
        (pk(&order_id, vec![carton("C1", vec![])]), "cartons[0].items"),
        (pk(&order_id, vec![carton("C1", vec![item(&s, 0)])]), "cartons[0].items[0].quantity"),
        (pk(&order_id, vec![carton("C1", vec![item("x", 1)])]), "cartons[0].items[0].sku"),
        (
            pk(&order_id, vec![pb::Carton { weight_grams: -5, ..carton("C1", vec![item(&s, 1)]) }]),
            "cartons[0].weight_grams",
        ),
    ] {
        expect_invalid("Pack", wh.pack(req).await, field);
    }
    let sh = |carrier: &str, tracking: &str| pb::ShipRequest {
        request_id: "sh".into(),
        warehouse_id: wid.clone(),
        order_id: order_id.clone(),
        carrier: carrier.into(),
        tracking_number: tracking.into(),
    };
    expect_invalid("Ship", wh.ship(sh("", "1Z999")).await, "carrier");
    expect_invalid("Ship", wh.ship(sh("UPS", "1Z")).await, "tracking_number");
    expect_invalid("Ship", wh.ship(sh("UPS", "1Z 99 9")).await, "tracking_number");
    expect_invalid(
        "GetFulfillment",
        wh.get_fulfillment(pb::GetFulfillmentRequest { warehouse_id: wid.clone(), order_id: "x".into() }).await,
        "order_id",
    );

    // Cycle counts and audit
    expect_invalid(
        "PlanCycleCounts",
        wh.plan_cycle_counts(pb::PlanCycleCountsRequest { warehouse_id: "UP".into(), due_only: false }).await,
        "warehouse_id",
    );
    let rcnt = |code: &str, counted: i64, by: &str| pb::RecordCountRequest {
        request_id: "rcnt".into(),
        warehouse_id: wid.clone(),
        code: code.into(),
        sku: s.clone(),
        lot: String::new(),
        counted_quantity: counted,
        counted_by: by.into(),
    };
    expect_invalid("RecordCount", wh.record_count(rcnt("LOSS", 1, "c")).await, "code");
    expect_invalid("RecordCount", wh.record_count(rcnt("A-01-1-A", -1, "c")).await, "counted_quantity");
    expect_invalid("RecordCount", wh.record_count(rcnt("A-01-1-A", 1, "")).await, "counted_by");
    expect_invalid(
        "ListAudit",
        wh.list_audit(pb::ListAuditRequest { warehouse_id: wid.clone(), from_sequence: 0, page_size: 5000 }).await,
        "page_size",
    );

    // Refused by state, not form: still nothing changed.
    let refused = wh.put_away(pa("too-many", 3, "A-01-2-A")).await.expect_err("only 2 left in RECEIVING");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let refused = wh.record_count(rcnt("A-01-1-A", 60, "c")).await.expect_err("over the bin's capacity");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    assert_eq!(snapshot(&site, &po.po_id, &s).await, before, "a refused call changed something");
}

on_every_backend!(catalogue);
