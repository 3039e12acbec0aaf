"""The warehouse journey through the gateway with the installed `meshwork-sdk` (pip install
./sdk/python): receive a purchase order, put it away, take orders from checkout into a wave,
pick with one short pick, pack and ship (the orders move to SHIPPED), then a cycle count with a
difference. After every step the warehouse and inventory agree for every sku: what the
warehouse's bins hold minus what open orders bought (`sellable`) equals inventory's on-hand at
the warehouse's location.

usage: warehouse_journey.py GATEWAY_ADDR TOKEN SUFFIX   (TOKEN with the admin role)
Prints one JSON object with what it saw; raises (exit 1) on the first disagreement.
"""

import json
import sys
import time

import grpc
import meshwork
from meshwork.catalog.v1 import catalog_pb2 as cat
from meshwork.inventory.v1 import inventory_pb2 as inv
from meshwork.orders.v1 import orders_pb2 as ords
from meshwork.warehouse.v1 import warehouse_pb2 as wh


def main() -> None:
    address, token, suffix = sys.argv[1], sys.argv[2], sys.argv[3]
    mesh = meshwork.connect(address, timeout=20, token=token)
    wid = "dc-" + suffix.lower()
    skus = {"BOLT": "BOLT-" + suffix, "CAP": "CAP-" + suffix}
    steps = []

    def agree(step):
        for sku in skus.values():
            stock = mesh.warehouse.GetSkuStock(wh.GetSkuStockRequest(warehouse_id=wid, sku=sku))
            try:
                levels = mesh.inventory.GetStock(inv.GetStockRequest(sku=sku)).locations
                on_hand = sum(level.on_hand for level in levels if level.location == wid)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                on_hand = 0
            if stock.sellable != on_hand:
                raise AssertionError(f"after {step}: {sku} sellable {stock.sellable} != inventory on-hand {on_hand}")
        steps.append(step)

    for sku in skus.values():
        mesh.catalog.CreateProduct(cat.CreateProductRequest(request_id="wh-p-" + sku, product=cat.Product(
            sku=sku, title="Item " + sku, category="test/warehouse", price_minor=400, currency="USD")))
    mesh.warehouse.CreateWarehouse(wh.CreateWarehouseRequest(request_id="wh-" + wid, warehouse=wh.Facility(
        warehouse_id=wid, name="Journey DC", aisles=6, aisle_length_dm=200, aisle_spacing_dm=30, rack_pitch_dm=20,
        over_receipt_percent=10)))
    codes = [f"A-{a:02}-{r}-A" for a in range(6) for r in range(1, 6)]
    mesh.warehouse.CreateLocations(wh.CreateLocationsRequest(
        request_id="bins-" + wid, warehouse_id=wid, locations=[wh.NewLocation(code=c, capacity=40) for c in codes]))
    agree("setup")

    po = mesh.warehouse.CreatePurchaseOrder(wh.CreatePurchaseOrderRequest(
        request_id="po-" + wid, warehouse_id=wid, supplier="Acme",
        lines=[wh.PurchaseOrderLine(sku=skus["BOLT"], quantity=30), wh.PurchaseOrderLine(sku=skus["CAP"], quantity=20)]
    )).purchase_order
    mesh.warehouse.Receive(wh.ReceiveRequest(request_id="rcv-" + wid, warehouse_id=wid, po_id=po.po_id, lines=[
        wh.ReceiptLine(sku=skus["BOLT"], quantity=30), wh.ReceiptLine(sku=skus["CAP"], quantity=20)]))
    agree("receive")
    n = 0
    for sku, quantity in ((skus["BOLT"], 30), (skus["CAP"], 20)):
        suggested = mesh.warehouse.SuggestPutAway(wh.SuggestPutAwayRequest(warehouse_id=wid, sku=sku, quantity=quantity))
        for s in suggested.suggestions:
            n += 1
            mesh.warehouse.PutAway(wh.PutAwayRequest(request_id=f"put-{wid}-{n}", warehouse_id=wid, sku=sku,
                                                     quantity=s.quantity, to_code=s.code))
            agree(f"put-away {n}")

    orders = []
    for i, lines in enumerate(([("BOLT", 4), ("CAP", 2)], [("BOLT", 3)])):
        user = f"wh-buyer-{suffix.lower()}-{i}"
        for name, quantity in lines:
            mesh.carts.AddItem(cat.AddItemRequest(user_id=user, sku=skus[name], quantity=quantity))
        placed = mesh.checkout.PlaceOrder(cat.PlaceOrderRequest(
            request_id=f"wh-order-{suffix}-{i}", user_id=user, payment_token="tok_ok",
            shipping_address=ords.Address(name="Grace Hopper", line1="1 Navy Way", city="Arlington",
                                          region="VA", postal_code="22202", country="US"))).checkout
        orders.append(placed.order_id)
        agree(f"checkout {i}")
    # The warehouse takes CONFIRMED orders from the orders service's event log.
    for order_id in orders:
        for _ in range(200):
            try:
                mesh.warehouse.GetFulfillment(wh.GetFulfillmentRequest(warehouse_id=wid, order_id=order_id))
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                time.sleep(0.05)
        else:
            raise AssertionError(f"the warehouse never took order {order_id}")

    wave = mesh.warehouse.BuildWave(wh.BuildWaveRequest(request_id="wave-1-" + wid, warehouse_id=wid)).wave
    if wave.distance_dm > wave.s_shape_distance_dm:
        raise AssertionError(f"pick path {wave.distance_dm} dm longer than S-shape {wave.s_shape_distance_dm}")
    short = next(p for p in wave.picks if p.order_id == orders[1])
    for p in wave.picks:
        picked = p.quantity - 1 if p.index == short.index else p.quantity
        answer = mesh.warehouse.ConfirmPick(wh.ConfirmPickRequest(
            request_id=f"pick-{wid}-{p.index}", warehouse_id=wid, wave_id=wave.wave_id, index=p.index,
            picked_quantity=picked))
        if answer.short_quantity != p.quantity - picked:
            raise AssertionError(f"short pick reported as {answer.short_quantity}")
        agree(f"pick {p.index}")
    backordered = mesh.warehouse.GetFulfillment(wh.GetFulfillmentRequest(warehouse_id=wid, order_id=orders[1]))
    if sum(line.backordered for line in backordered.fulfillment.lines) != 1:
        raise AssertionError(f"the short pick did not backorder: {backordered}")

    def pack_and_ship(order_id):
        f = mesh.warehouse.GetFulfillment(wh.GetFulfillmentRequest(warehouse_id=wid, order_id=order_id)).fulfillment
        items = [wh.StockItem(sku=line.sku, quantity=line.picked) for line in f.lines]
        mesh.warehouse.Pack(wh.PackRequest(request_id="pack-" + order_id, warehouse_id=wid, order_id=order_id,
                                           cartons=[wh.Carton(carton_id="C1", items=items, weight_grams=900)]))
        mesh.warehouse.Ship(wh.ShipRequest(request_id="ship-" + order_id, warehouse_id=wid, order_id=order_id,
                                           carrier="UPS", tracking_number="1Z" + order_id[-10:]))
        agree("ship " + order_id)
        state = mesh.orders.GetOrder(ords.GetOrderRequest(order_id=order_id)).order.state
        if state != ords.ORDER_STATE_SHIPPED:
            raise AssertionError(f"order {order_id} is {ords.OrderState.Name(state)}, not SHIPPED")

    pack_and_ship(orders[0])
    second = mesh.warehouse.BuildWave(wh.BuildWaveRequest(request_id="wave-2-" + wid, warehouse_id=wid)).wave
    for p in second.picks:
        mesh.warehouse.ConfirmPick(wh.ConfirmPickRequest(
            request_id=f"pick2-{wid}-{p.index}", warehouse_id=wid, wave_id=second.wave_id, index=p.index,
            picked_quantity=p.quantity))
        agree(f"backorder pick {p.index}")
    pack_and_ship(orders[1])

    mesh.warehouse.PlanCycleCounts(wh.PlanCycleCountsRequest(warehouse_id=wid))
    stock = mesh.warehouse.GetSkuStock(wh.GetSkuStockRequest(warehouse_id=wid, sku=skus["BOLT"]))
    place = next(p for p in stock.places if p.code.startswith("A-") and p.quantity > 0)
    counted = mesh.warehouse.RecordCount(wh.RecordCountRequest(
        request_id="count-" + wid, warehouse_id=wid, code=place.code, sku=skus["BOLT"],
        counted_quantity=place.quantity - 1, counted_by="journey"))
    if counted.difference != -1:
        raise AssertionError(f"count difference {counted.difference}")
    agree("cycle count")
    mesh.close()
    print(json.dumps({"orders": orders, "steps": steps, "wave_dm": wave.distance_dm,
                      "s_shape_dm": wave.s_shape_distance_dm, "count_difference": counted.difference}))


if __name__ == "__main__":
    main()
