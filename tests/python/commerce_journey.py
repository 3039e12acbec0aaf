"""A shop journey with Python stubs generated from proto/ (grpcio-tools), through the meshwork
gateway: create products, receive stock, search, add to the cart, place the order, pack, ship,
deliver, request a return, returned.

usage: commerce_journey.py GENERATED_DIR GATEWAY_ADDR SUFFIX
Prints one JSON object with what it saw; exits non-zero on any unexpected outcome.
"""

import json
import sys
import time

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from meshwork.catalog.v1 import catalog_pb2 as cat  # noqa: E402
from meshwork.catalog.v1 import catalog_pb2_grpc as cat_rpc  # noqa: E402
from meshwork.inventory.v1 import inventory_pb2 as inv  # noqa: E402
from meshwork.inventory.v1 import inventory_pb2_grpc as inv_rpc  # noqa: E402
from meshwork.orders.v1 import orders_pb2 as ords  # noqa: E402
from meshwork.orders.v1 import orders_pb2_grpc as ords_rpc  # noqa: E402
from meshwork.payments.v1 import payments_pb2 as pay  # noqa: E402
from meshwork.payments.v1 import payments_pb2_grpc as pay_rpc  # noqa: E402

T = 30  # seconds, every call's deadline


def wait_for(what, check, seconds=10.0):
    deadline = time.time() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[2])
    suffix = sys.argv[3]
    catalog = cat_rpc.CatalogStub(channel)
    carts = cat_rpc.CartsStub(channel)
    checkout = cat_rpc.CheckoutStub(channel)
    inventory = inv_rpc.InventoryStub(channel)
    orders = ords_rpc.OrdersStub(channel)
    payments = pay_rpc.PaymentsStub(channel)
    user = "py-shopper-" + suffix
    grinder, beans = "GRINDER-" + suffix, "BEANS-" + suffix

    catalog.CreateProduct(cat.CreateProductRequest(request_id="py-1-" + suffix, product=cat.Product(
        sku=grinder, title="Burr coffee grinder", description="Conical burrs for espresso and filter",
        category="kitchen/coffee", price_minor=8900, currency="EUR", attributes={"brand": "acme"})), timeout=T)
    catalog.CreateProduct(cat.CreateProductRequest(request_id="py-2-" + suffix, product=cat.Product(
        sku=beans, title="Espresso beans 1 kg", description="Dark roast for espresso machines",
        category="kitchen/coffee/beans", price_minor=1850, currency="EUR", attributes={"brand": "roastery"})), timeout=T)
    for sku in (grinder, beans):
        inventory.AdjustStock(inv.AdjustStockRequest(request_id="py-recv-" + sku, sku=sku, location="berlin",
                                                     delta=10, reason=inv.ADJUST_REASON_RECEIVE), timeout=T)

    # Searchable within a second of the write; "grinders" stems to the title's "grinder".
    # Both products are indexed by the projection on their own; wait for both, not the first.
    def both_found():
        hits = [h.product.sku for h in catalog.SearchProducts(
            cat.SearchProductsRequest(query="espresso grinders", category="kitchen"), timeout=T).hits
            if h.product.sku in (grinder, beans)]
        return hits if len(hits) == 2 else None
    found = wait_for("search", both_found, 5.0)

    carts.AddItem(cat.AddItemRequest(user_id=user, sku=grinder, quantity=1), timeout=T)
    cart = carts.AddItem(cat.AddItemRequest(user_id=user, sku=beans, quantity=2), timeout=T).cart
    placed = checkout.PlaceOrder(cat.PlaceOrderRequest(
        request_id="py-order-" + suffix, user_id=user, payment_token="tok_ok",
        shipping_address=ords.Address(name="Grace Hopper", line1="1 Navy Way", city="Arlington",
                                      postal_code="22202", country="US")), timeout=T).checkout
    stock_after_order = inventory.GetStock(inv.GetStockRequest(sku=beans), timeout=T)
    order = orders.GetOrder(ords.GetOrderRequest(order_id=placed.order_id), timeout=T).order
    states = [ords.OrderState.Name(order.state)]
    for to, reason in ((ords.ORDER_STATE_PACKED, ""), (ords.ORDER_STATE_SHIPPED, ""), (ords.ORDER_STATE_DELIVERED, ""),
                       (ords.ORDER_STATE_RETURN_REQUESTED, "wrong grind size"), (ords.ORDER_STATE_RETURNED, "received back")):
        order = orders.TransitionOrder(ords.TransitionOrderRequest(
            order_id=order.order_id, to=to, expected_version=order.version, reason=reason), timeout=T).order
        states.append(ords.OrderState.Name(order.state))
    try:
        orders.TransitionOrder(ords.TransitionOrderRequest(order_id=order.order_id, to=ords.ORDER_STATE_SHIPPED), timeout=T)
        illegal = "no error"
    except grpc.RpcError as e:
        illegal = {"code": e.code().name, "details": e.details()}

    # The return refunds and restocks (effects run after the transition, retried until done).
    refunded = wait_for("the refund", lambda: payments.GetPayment(
        pay.GetPaymentRequest(payment_id=order.payment_id), timeout=T).payment.status == pay.PAYMENT_STATUS_REFUNDED)
    payment = payments.GetPayment(pay.GetPaymentRequest(payment_id=order.payment_id), timeout=T).payment
    wait_for("the restock", lambda: inventory.GetStock(inv.GetStockRequest(sku=beans), timeout=T).on_hand == 10)
    stock_end = {sku: inventory.GetStock(inv.GetStockRequest(sku=sku), timeout=T) for sku in (grinder, beans)}
    history = orders.GetOrderHistory(ords.GetOrderHistoryRequest(order_id=order.order_id), timeout=T).events
    print(json.dumps({
        "found": sorted(found),
        "cart_subtotal": cart.subtotal_minor,
        "checkout_state": cat.CheckoutState.Name(placed.state),
        "total": placed.total_minor,
        "beans_after_order": [stock_after_order.on_hand, stock_after_order.reserved],
        "states": states,
        "illegal": illegal,
        "refunded": refunded,
        "payment": [pay.PaymentStatus.Name(payment.status), payment.captured_minor, payment.refunded_minor],
        "stock_end": {sku: [s.on_hand, s.reserved, s.available] for sku, s in stock_end.items()},
        "history": [ords.OrderEventType.Name(e.type) for e in history],
    }))


if __name__ == "__main__":
    main()
