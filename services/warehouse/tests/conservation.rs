//! Stock conservation under a randomized (seeded) run on every backend: receipts, put-aways,
//! moves, checkouts, waves, picks (some short), pack and ship, and cycle counts with
//! differences, in random order. After every step the sum over all locations equals receipts
//! minus shipments (counts and short picks only move units to or from LOSS), and what the
//! locations physically hold minus what open orders bought equals inventory's on-hand, per
//! sku. Steps refused by their preconditions (no room, nothing to pick) must change nothing,
//! which the same check covers.

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::warehouse::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{Site, bin_codes, sku};
use tonic::Code;

const STEPS: usize = 120;

fn ok_or_refused<T>(what: &str, r: Result<tonic::Response<T>, tonic::Status>) -> Option<T> {
    match r {
        Ok(r) => Some(r.into_inner()),
        Err(s) if s.code() == Code::FailedPrecondition => None,
        Err(s) => panic!("{what}: {s:?}"),
    }
}

async fn randomized(backend: Backend) {
    let started = Instant::now();
    let seed = 0x5eed_u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let site = Site::start(backend.store.clone(), 30).await;
    let wid = site.wid.clone();
    let skus: Vec<String> = (0..3).map(|i| sku(&format!("R{i}"))).collect();
    for s in &skus {
        site.product(s, 100).await;
    }
    let mut wh = site.wh();
    let po = wh
        .create_purchase_order(pb::CreatePurchaseOrderRequest {
            request_id: format!("po-{wid}"),
            warehouse_id: wid.clone(),
            supplier: "Random Supply".into(),
            lines: skus
                .iter()
                .map(|s| pb::PurchaseOrderLine { sku: s.clone(), quantity: 100_000, lot_tracked: false, received: 0 })
                .collect(),
        })
        .await
        .expect("po")
        .into_inner()
        .purchase_order
        .expect("po");
    let mut ledger: BTreeMap<String, i64> = skus.iter().map(|s| (s.clone(), 0)).collect();
    let mut orders: Vec<String> = Vec::new();
    let mut picks: Vec<(String, pb::PickTask)> = Vec::new();
    let bins = bin_codes();
    let mut counts = [0usize; 8];
    for step in 0..STEPS {
        let s = skus[rng.random_range(0..skus.len())].clone();
        let kind = rng.random_range(0..8usize);
        let what = match kind {
            0 => {
                let q = rng.random_range(1..=20);
                wh.receive(pb::ReceiveRequest {
                    request_id: format!("rcv-{step}"),
                    warehouse_id: wid.clone(),
                    po_id: po.po_id.clone(),
                    lines: vec![pb::ReceiptLine { sku: s.clone(), quantity: q, lot: String::new(), expire_time: None }],
                })
                .await
                .expect("receive");
                *ledger.get_mut(&s).expect("sku") += q;
                format!("receive {q} {s}")
            }
            1 => {
                let waiting: i64 = site.sku_stock(&s).await.receiving;
                if waiting == 0 {
                    continue;
                }
                let q = rng.random_range(1..=waiting);
                let to = bins[rng.random_range(0..bins.len())].clone();
                let r = wh
                    .put_away(pb::PutAwayRequest {
                        request_id: format!("put-{step}"),
                        warehouse_id: wid.clone(),
                        sku: s.clone(),
                        lot: String::new(),
                        quantity: q,
                        to_code: to.clone(),
                    })
                    .await;
                format!("put away {q} {s} -> {to}: {}", ok_or_refused("put away", r).is_some())
            }
            2 => {
                let Some(from) = site.sku_stock(&s).await.places.into_iter().find(|p| p.code.starts_with("A-")) else {
                    continue;
                };
                let q = rng.random_range(1..=from.quantity.max(1));
                let to = bins[rng.random_range(0..bins.len())].clone();
                if to == from.code {
                    continue;
                }
                let r = wh
                    .move_stock(pb::MoveStockRequest {
                        request_id: format!("move-{step}"),
                        warehouse_id: wid.clone(),
                        sku: s.clone(),
                        lot: String::new(),
                        quantity: q,
                        from_code: from.code.clone(),
                        to_code: to.clone(),
                    })
                    .await;
                format!("move {q} {s} {} -> {to}: {}", from.code, ok_or_refused("move", r).is_some())
            }
            3 => {
                let q = rng.random_range(1..=3);
                let available = match site.inventory().get_stock(inv::GetStockRequest { sku: s.clone() }).await {
                    Ok(stock) => stock.into_inner().available,
                    Err(e) if e.code() == Code::NotFound => 0,
                    Err(e) => panic!("get stock: {e:?}"),
                };
                if available < q {
                    continue;
                }
                let order = site.buy(&[(&s, q)]).await;
                site.fulfillment(&order).await;
                orders.push(order.clone());
                format!("checkout {q} {s} as {order}")
            }
            4 => {
                let w = site.wave(&format!("wave-{step}")).await;
                if let Some(wave) = &w.wave {
                    picks.extend(wave.picks.iter().map(|p| (wave.wave_id.clone(), p.clone())));
                }
                format!("wave of {} picks", w.wave.map(|w| w.picks.len()).unwrap_or(0))
            }
            5 => {
                if picks.is_empty() {
                    continue;
                }
                let (wave_id, p) = picks.remove(rng.random_range(0..picks.len()));
                let picked = if rng.random_bool(0.3) { rng.random_range(0..p.quantity) } else { p.quantity };
                let r = wh
                    .confirm_pick(pb::ConfirmPickRequest {
                        request_id: format!("pick-{step}"),
                        warehouse_id: wid.clone(),
                        wave_id: wave_id.clone(),
                        index: p.index,
                        picked_quantity: picked,
                    })
                    .await;
                if ok_or_refused("confirm", r).is_none() {
                    // A count took units the pick was promised: pick what is there.
                    wh.confirm_pick(pb::ConfirmPickRequest {
                        request_id: format!("pick-{step}-none"),
                        warehouse_id: wid.clone(),
                        wave_id,
                        index: p.index,
                        picked_quantity: 0,
                    })
                    .await
                    .expect("a pick of nothing");
                }
                format!("pick {picked} of {} {} at {}", p.quantity, p.sku, p.code)
            }
            6 => {
                let mut shipped = None;
                for o in &orders {
                    let f = site.fulfillment(o).await;
                    if f.state == pb::FulfillmentState::Picked as i32 {
                        site.pack_and_ship(o).await;
                        for l in &f.lines {
                            *ledger.get_mut(&l.sku).expect("sku") -= l.picked;
                        }
                        shipped = Some(o.clone());
                        break;
                    }
                }
                let Some(o) = shipped else { continue };
                orders.retain(|x| x != &o);
                format!("ship {o}")
            }
            _ => {
                let Some(bin) = site.sku_stock(&s).await.places.into_iter().find(|p| p.code.starts_with("A-")) else {
                    continue;
                };
                let counted = (bin.quantity + rng.random_range(-2..=2)).max(0);
                let r = wh
                    .record_count(pb::RecordCountRequest {
                        request_id: format!("count-{step}"),
                        warehouse_id: wid.clone(),
                        code: bin.code.clone(),
                        sku: s.clone(),
                        lot: String::new(),
                        counted_quantity: counted,
                        counted_by: "auditor".into(),
                    })
                    .await;
                format!(
                    "count {s} at {}: {} -> {counted}: {}",
                    bin.code,
                    bin.quantity,
                    ok_or_refused("count", r).is_some()
                )
            }
        };
        counts[kind] += 1;
        if let Err(e) = site.conservation(&ledger).await {
            panic!("step {step} ({what}) broke conservation: {e}");
        }
    }
    eprintln!("randomized run (seed {seed:#x}): steps by kind {counts:?} in {:?}", started.elapsed());
    assert!(counts.iter().filter(|&&c| c > 0).count() >= 6, "the run exercised too few kinds of step: {counts:?}");
}

on_every_backend!(randomized);
