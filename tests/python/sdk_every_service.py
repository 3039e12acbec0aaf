"""Every landed service through the installed `meshwork-sdk` package (pip install ./sdk/python):
one happy path, one error with its code, and the server stream where the service has one, all
through meshwork.connect() against the gateway.

usage: sdk_every_service.py GATEWAY_ADDR TOKEN SUFFIX
TOKEN names "sdk-user-SUFFIX" with the admin role (products, stock, lots and titles need roles).
Prints one JSON object: {"services": [full names the SDK knows], "seen": {service: {...}}};
an unexpected exception is recorded as {"unexpected": "..."} for that service.
"""

import json
import sys
import time
import traceback

import grpc
import meshwork
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from meshwork.catalog.v1 import catalog_pb2 as cat
from meshwork.echo.v1 import echo_pb2 as echo
from meshwork.inventory.v1 import inventory_pb2 as inv
from meshwork.library.v1 import library_pb2 as lib
from meshwork.meetings.v1 import meetings_pb2 as mtg
from meshwork.orders.v1 import orders_pb2 as ords
from meshwork.parking.v1 import parking_pb2 as park
from meshwork.payments.v1 import payments_pb2 as pay
from meshwork.ratings.v1 import ratings_pb2 as rat
from meshwork.recommendation.v1 import recommendation_pb2 as rec
from meshwork.urlshortener.v1 import urlshortener_pb2 as url

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def code_of(call):
    """Runs `call`, which must fail, and returns its status code's name."""
    try:
        call()
    except grpc.RpcError as e:
        return e.code().name
    return "no error"


def first(stream, n=1):
    """The first `n` messages of a server stream, then cancels it."""
    out = []
    for message in stream:
        out.append(message)
        if len(out) == n:
            break
    stream.cancel()
    return out


def main() -> None:
    address, token, suffix = sys.argv[1], sys.argv[2], sys.argv[3]
    mesh = meshwork.connect(address, timeout=20, stream_timeout=10, token=token, traceparent=lambda: TRACEPARENT)
    # A second client with a short default deadline, no credentials and no trace context.
    quick = meshwork.connect(address, timeout=0.5)
    seen = {}
    user = "sdk-user-" + suffix
    sku = "SDK-" + suffix

    def check(service, body):
        try:
            seen[service] = body()
        except Exception:  # recorded, so the test shows every failure at once
            seen[service] = {"unexpected": traceback.format_exc(limit=3)}

    def echo_checks():
        got = mesh.echo.Echo(echo.EchoRequest(message="hi"))
        streamed = [r.sequence for r in mesh.echo.EchoStream(echo.EchoStreamRequest(message="s", count=3))]
        return {
            "ok": got.message,
            "traceparent": got.metadata.get("traceparent", ""),
            "has_deadline": "grpc-timeout" in got.metadata,
            "error": code_of(lambda: mesh.echo.Echo(echo.EchoRequest(message="no", fail_with_code=5))),
            "deadline": code_of(lambda: quick.echo.Echo(echo.EchoRequest(message="slow", delay_ms=3000))),
            "stream": streamed,
        }

    def url_checks():
        created = mesh.url_shortener.Shorten(url.ShortenRequest(long_url="https://sdk.example.com/" + suffix))
        resolved = mesh.url_shortener.Resolve(url.ResolveRequest(code=created.code, skip_click=True))
        return {
            "ok": resolved.long_url,
            "owner": created.link.owner,
            "error": code_of(lambda: mesh.url_shortener.Resolve(url.ResolveRequest(code="nosuch7"))),
        }

    def catalog_checks():
        mesh.catalog.CreateProduct(cat.CreateProductRequest(request_id="sdk-p-" + suffix, product=cat.Product(
            sku=sku, title="SDK mug", category="kitchen/mugs", price_minor=1200, currency="EUR")))
        got = mesh.catalog.GetProduct(cat.GetProductRequest(sku=sku)).product
        return {
            "ok": got.title,
            "error": code_of(lambda: mesh.catalog.GetProduct(cat.GetProductRequest(sku="NOPE-" + suffix))),
        }

    def inventory_checks():
        mesh.inventory.AdjustStock(inv.AdjustStockRequest(request_id="sdk-recv-" + suffix, sku=sku, location="berlin",
                                                          delta=5, reason=inv.ADJUST_REASON_RECEIVE))
        stock = mesh.inventory.GetStock(inv.GetStockRequest(sku=sku))
        events = first(mesh.inventory.WatchStock(inv.WatchStockRequest(sku_prefix=sku, from_sequence=1)))
        return {
            "ok": stock.on_hand,
            "error": code_of(lambda: mesh.inventory.AdjustStock(inv.AdjustStockRequest(
                request_id="sdk-bad-" + suffix, sku=sku, location="berlin", delta=-100,
                reason=inv.ADJUST_REASON_SHRINK))),
            "stream": [e.sku for e in events],
        }

    def carts_checks():
        cart = mesh.carts.AddItem(cat.AddItemRequest(user_id=user, sku=sku, quantity=1)).cart
        return {
            "ok": cart.item_count,
            "error": code_of(lambda: mesh.carts.AddItem(cat.AddItemRequest(user_id=user, sku=sku, quantity=0))),
        }

    placed = {}

    def checkout_checks():
        done = mesh.checkout.PlaceOrder(cat.PlaceOrderRequest(
            request_id="sdk-order-" + suffix, user_id=user, payment_token="tok_ok",
            shipping_address=ords.Address(name="Ada Lovelace", line1="1 Analytical Way", city="London",
                                          postal_code="N1 1AA", country="GB"))).checkout
        placed["order_id"], placed["state"] = done.order_id, done.state
        return {
            "ok": cat.CheckoutState.Name(done.state),
            "error": code_of(lambda: mesh.checkout.GetCheckout(cat.GetCheckoutRequest(checkout_id="nope-" + suffix))),
        }

    def orders_checks():
        order = mesh.orders.GetOrder(ords.GetOrderRequest(order_id=placed["order_id"])).order
        events = first(mesh.orders.WatchOrders(ords.WatchOrdersRequest(order_id=order.order_id, from_sequence=1)))
        return {
            "ok": ords.OrderState.Name(order.state),
            "error": code_of(lambda: mesh.orders.GetOrder(ords.GetOrderRequest(order_id="ord_nope"))),
            "stream": [ords.OrderEventType.Name(e.type) for e in events],
        }

    def payments_checks():
        authorized = mesh.payments.Authorize(pay.AuthorizeRequest(
            request_id="sdk-pay-" + suffix, order_id="sdk-order-x-" + suffix, user_id=user, amount_minor=500,
            currency="EUR", payment_token="tok_ok")).payment
        return {
            "ok": pay.PaymentStatus.Name(authorized.status),
            "error": code_of(lambda: mesh.payments.GetPayment(pay.GetPaymentRequest(payment_id="pay_nope"))),
        }

    def ratings_checks():
        review = mesh.ratings.SubmitReview(rat.SubmitReviewRequest(
            request_id="sdk-review-" + suffix, sku=sku, user_id=user, rating=5, title="Holds coffee",
            body="A plain mug that holds coffee well and washes up fine.")).review
        return {
            "ok": review.rating,
            "error": code_of(lambda: mesh.ratings.SubmitReview(rat.SubmitReviewRequest(
                request_id="sdk-review-bad-" + suffix, sku=sku, user_id=user, rating=9, title="t", body="b"))),
        }

    def recommendation_checks():
        mesh.recommendations.RecordInteraction(rec.RecordInteractionRequest(
            request_id="sdk-rec-" + suffix, user_id=user, item=sku, kind=rec.INTERACTION_KIND_VIEW))
        trending = mesh.recommendations.Trending(rec.TrendingRequest(k=5))
        return {
            "ok": type(trending).__name__,
            "error": code_of(lambda: mesh.recommendations.RecommendForUser(rec.RecommendForUserRequest(user_id=""))),
        }

    def parking_checks():
        lot_id = "sdk-lot-" + suffix.lower()
        lot = mesh.parking.CreateLot(park.CreateLotRequest(request_id="sdk-lot-" + suffix, lot=park.Lot(
            lot_id=lot_id, name="SDK lot", currency="EUR",
            prices=[park.Price(type=park.SPOT_TYPE_REGULAR, hourly_minor=300)],
            levels=[park.Level(level_id="l1", name="Ground", spots=[
                park.Spot(spot_id="a1", type=park.SPOT_TYPE_REGULAR)])]))).lot
        return {
            "ok": lot.spot_count,
            "error": code_of(lambda: mesh.parking.GetLot(park.GetLotRequest(lot_id="nope-" + suffix.lower()))),
        }

    def library_checks():
        added = mesh.library.AddTitle(lib.AddTitleRequest(request_id="sdk-title-" + suffix, title=lib.Title(
            isbn="978-0-262-03384-8", title="Introduction to Algorithms", authors=["Cormen"]))).title
        return {
            "ok": added.isbn,
            "error": code_of(lambda: mesh.library.AddTitle(lib.AddTitleRequest(
                request_id="sdk-title-bad-" + suffix, title=lib.Title(isbn="978-0-262-03384-9", title="x",
                                                                      authors=["y"])))),
        }

    def meetings_checks():
        host = user
        meeting = mesh.meetings.CreateMeeting(mtg.CreateMeetingRequest(
            request_id="sdk-mtg-" + suffix, host=host, topic="SDK standup", start=Timestamp(seconds=int(time.time())),
            duration=Duration(seconds=1800))).meeting
        mesh.meetings.Join(mtg.JoinRequest(meeting_id=meeting.meeting_id, user_id=host))
        hello = mtg.StreamMeetingRequest(hello=mtg.Hello(meeting_id=meeting.meeting_id, user_id=host))
        stream = mesh.meetings.StreamMeeting(iter([hello]))
        events = [mtg.EventType.Name(r.event.type) for r in first(stream) if r.HasField("event")]
        return {
            "ok": meeting.topic,
            "error": code_of(lambda: mesh.meetings.GetMeeting(mtg.GetMeetingRequest(
                meeting_id="mtg_" + "0" * 20))),
            "stream": events,
        }

    started = time.time()
    check("meshwork.echo.v1.Echo", echo_checks)
    check("meshwork.urlshortener.v1.UrlShortener", url_checks)
    check("meshwork.catalog.v1.Catalog", catalog_checks)
    check("meshwork.inventory.v1.Inventory", inventory_checks)
    check("meshwork.catalog.v1.Carts", carts_checks)
    check("meshwork.catalog.v1.Checkout", checkout_checks)
    check("meshwork.orders.v1.Orders", orders_checks)
    check("meshwork.payments.v1.Payments", payments_checks)
    check("meshwork.ratings.v1.Ratings", ratings_checks)
    check("meshwork.recommendation.v1.Recommendations", recommendation_checks)
    check("meshwork.parking.v1.Parking", parking_checks)
    check("meshwork.library.v1.Library", library_checks)
    check("meshwork.meetings.v1.Meetings", meetings_checks)
    mesh.close()
    quick.close()
    print(json.dumps({"services": list(meshwork.SERVICES), "seconds": round(time.time() - started, 1),
                      "module": meshwork.__file__, "seen": seen}))


if __name__ == "__main__":
    main()
