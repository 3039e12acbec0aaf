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
from meshwork.appstore.v1 import appstore_pb2 as aps
from meshwork.catalog.v1 import catalog_pb2 as cat
from meshwork.contacttracing.v1 import contacttracing_pb2 as ct
from meshwork.echo.v1 import echo_pb2 as echo
from meshwork.inventory.v1 import inventory_pb2 as inv
from meshwork.library.v1 import library_pb2 as lib
from meshwork.logging.v1 import logging_pb2 as logs
from meshwork.meetings.v1 import meetings_pb2 as mtg
from meshwork.orders.v1 import orders_pb2 as ords
from meshwork.parking.v1 import parking_pb2 as park
from meshwork.payments.v1 import payments_pb2 as pay
from meshwork.ratings.v1 import ratings_pb2 as rat
from meshwork.recommendation.v1 import recommendation_pb2 as rec
from meshwork.timeline.v1 import timeline_pb2 as tl
from meshwork.urlshortener.v1 import urlshortener_pb2 as url
from meshwork.warehouse.v1 import warehouse_pb2 as whs
from meshwork.waste.v1 import waste_pb2 as wst

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

    def appstore_checks():
        dev = "sdk-dev-" + suffix.lower()
        mesh.app_store.CreateDeveloper(aps.CreateDeveloperRequest(
            request_id="sdk-dev-" + suffix, developer_id=dev, name="SDK Apps", owner_user_id=user))
        app = mesh.app_store.CreateApp(aps.CreateAppRequest(request_id="sdk-app-" + suffix, app=aps.App(
            package_name="com.sdk.app" + suffix.lower(), developer_id=dev, title="SDK App", category="TOOLS"))).app
        return {
            "ok": app.package_name,
            "error": code_of(lambda: mesh.app_store.GetAppDetails(aps.GetAppDetailsRequest(
                package_name="com.sdk.nope" + suffix.lower()))),
        }

    def contact_tracing_checks():
        issued = mesh.contact_tracing.IssueCode(ct.IssueCodeRequest(
            request_id="sdk-code-" + suffix, test_type=ct.TEST_TYPE_CONFIRMED, geohash="tdr1vzz"))
        return {
            "ok": len(issued.code),
            "error": code_of(lambda: mesh.contact_tracing.VerifyCode(ct.VerifyCodeRequest(code=""))),
        }

    def timeline_checks():
        author, reader = "sdka_" + suffix.lower(), "sdkr_" + suffix.lower()
        for handle in (author, reader):
            mesh.timeline.CreateUser(tl.CreateUserRequest(handle=handle, display_name=handle))
        mesh.timeline.Follow(tl.FollowRequest(user=reader, target=author))
        post = mesh.timeline.CreatePost(tl.CreatePostRequest(
            request_id="sdk-post-" + suffix, author=author, text="SDK post")).post
        events = first(mesh.timeline.StreamHomeTimeline(tl.StreamHomeTimelineRequest(user=reader, from_sequence=1)))
        return {
            "ok": post.text,
            "error": code_of(lambda: mesh.timeline.CreateUser(tl.CreateUserRequest(handle="x"))),
            "stream": [e.post.text for e in events],
        }

    def waste_checks():
        ids = {k: f"sdk-{k}-{suffix.lower()}" for k in ("depot", "fill", "truck", "bin")}
        mesh.waste.CreateSite(wst.CreateSiteRequest(site=wst.Site(
            site_id=ids["depot"], kind=wst.SITE_KIND_DEPOT, name="Depot", location=wst.LatLon(lat=52.52, lon=13.40))))
        mesh.waste.CreateSite(wst.CreateSiteRequest(site=wst.Site(
            site_id=ids["fill"], kind=wst.SITE_KIND_LANDFILL, name="Fill", location=wst.LatLon(lat=52.6, lon=13.3))))
        mesh.waste.CreateTruck(wst.CreateTruckRequest(truck=wst.Truck(
            truck_id=ids["truck"], depot_id=ids["depot"], capacity_litres=2400, shift_start_minute=360,
            shift_end_minute=840)))
        mesh.waste.CreateBin(wst.CreateBinRequest(bin=wst.Bin(
            bin_id=ids["bin"], location=wst.LatLon(lat=52.53, lon=13.41), capacity_litres=240,
            waste_type=wst.WASTE_TYPE_GENERAL)))
        mesh.waste.ReportFill(wst.ReportFillRequest(bin_id=ids["bin"], fill_percent=95.0,
                                                    time=Timestamp(seconds=int(time.time()))))
        plan = mesh.waste.PlanRoutes(wst.PlanRoutesRequest(
            request_id="sdk-plan-" + suffix, date=Timestamp(seconds=int(time.time()) + 3600), depot_id=ids["depot"],
            threshold=80, time_limit=Duration(seconds=1)))
        route_id = plan.routes[0].route_id
        mesh.waste.StartRoute(wst.StartRouteRequest(route_id=route_id))
        events = first(mesh.waste.WatchRoute(wst.WatchRouteRequest(route_id=route_id, from_sequence=1)))
        return {
            "ok": [s.bin_id for r in plan.routes for s in r.stops],
            "error": code_of(lambda: mesh.waste.GetBin(wst.GetBinRequest(bin_id="nope-" + suffix.lower()))),
            "stream": [wst.RouteEventType.Name(e.type) for e in events],
        }

    def logging_checks():
        now = Timestamp(seconds=int(time.time()))
        pushed = mesh.logging.Push(logs.PushRequest(tenant="sdk", streams=[logs.Stream(
            labels='{service="sdk-' + suffix.lower() + '"}', entries=[logs.Entry(timestamp=now, line="hello sdk")])]))
        tail = mesh.logging.Tail(logs.TailRequest(
            tenant="sdk", logql='{service="sdk-' + suffix.lower() + '"}', start=Timestamp(seconds=now.seconds - 60)))
        lines = [e.line for m in first(tail) for e in m.stream.entries]
        return {
            "ok": pushed.accepted,
            "error": code_of(lambda: mesh.logging.QueryRange(logs.QueryRangeRequest(tenant="sdk", logql="{service="))),
            "stream": lines,
        }

    def warehouse_checks():
        made = mesh.warehouse.CreateWarehouse(whs.CreateWarehouseRequest(
            request_id="sdk-wh-" + suffix, warehouse=whs.Facility(
                warehouse_id="sdk-wh-" + suffix.lower(), name="SDK DC", aisles=4, aisle_length_dm=100,
                aisle_spacing_dm=30, rack_pitch_dm=20))).warehouse
        return {
            "ok": made.warehouse_id,
            "error": code_of(lambda: mesh.warehouse.CreateWarehouse(whs.CreateWarehouseRequest(
                request_id="sdk-wh-bad-" + suffix, warehouse=whs.Facility(warehouse_id="", name="x")))),
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
    check("meshwork.appstore.v1.AppStore", appstore_checks)
    check("meshwork.contacttracing.v1.ContactTracing", contact_tracing_checks)
    check("meshwork.timeline.v1.Timeline", timeline_checks)
    check("meshwork.waste.v1.Waste", waste_checks)
    check("meshwork.logging.v1.Logging", logging_checks)
    check("meshwork.warehouse.v1.Warehouse", warehouse_checks)
    mesh.close()
    quick.close()
    print(json.dumps({"services": list(meshwork.SERVICES), "seconds": round(time.time() - started, 1),
                      "module": meshwork.__file__, "seen": seen}))


if __name__ == "__main__":
    main()
