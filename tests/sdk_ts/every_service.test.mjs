// Every landed service through the installed @meshwork/sdk over gRPC (connect-node, h2 to the
// gateway): one happy path, one error with its code, and the server stream where the service
// has one. Run by tests/sdks.rs with `node --test` in a temporary project that installed the
// SDK with npm; GATEWAY (http://host:port), TOKEN (names sdk-user-SUFFIX, role admin), SUFFIX.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, Code, ConnectError, SERVICES } from "@meshwork/sdk/node";
import { AdjustReason, StockEventKind } from "@meshwork/sdk/gen/meshwork/inventory/v1/inventory_pb";
import { CheckoutState } from "@meshwork/sdk/gen/meshwork/catalog/v1/catalog_pb";
import { OrderEventType, OrderState } from "@meshwork/sdk/gen/meshwork/orders/v1/orders_pb";
import { PaymentStatus } from "@meshwork/sdk/gen/meshwork/payments/v1/payments_pb";
import { SpotType } from "@meshwork/sdk/gen/meshwork/parking/v1/parking_pb";
import { InteractionKind } from "@meshwork/sdk/gen/meshwork/recommendation/v1/recommendation_pb";
import { EventType } from "@meshwork/sdk/gen/meshwork/meetings/v1/meetings_pb";
import { TestType } from "@meshwork/sdk/gen/meshwork/contacttracing/v1/contacttracing_pb";
import { RouteEventType, SiteKind, WasteType } from "@meshwork/sdk/gen/meshwork/waste/v1/waste_pb";

const { GATEWAY, TOKEN, SUFFIX } = process.env;
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const mesh = connect(GATEWAY, { timeoutMs: 20000, token: TOKEN, traceparent: () => TRACEPARENT });
const quick = connect(GATEWAY, { timeoutMs: 500 });
const user = `sdk-user-${SUFFIX}`;
const sku = `SDK-TS-${SUFFIX}`;
const called = new Set();

/** Runs `call`, which must fail, and returns its code's name ("NotFound"). */
async function codeOf(call) {
  try {
    await call();
  } catch (e) {
    return Code[ConnectError.from(e).code];
  }
  return "no error";
}

/** The first `n` messages of a stream, then stops reading (the client cancels it). */
async function first(stream, n = 1) {
  const out = [];
  for await (const message of stream) {
    out.push(message);
    if (out.length === n) break;
  }
  return out;
}

test("every service the SDK knows is called below", () => {
  assert.ok(SERVICES.includes("meshwork.echo.v1.Echo"));
});

test("echo: deadline and traceparent reach the service, errors, a stream", async () => {
  called.add("meshwork.echo.v1.Echo");
  const got = await mesh.echo.echo({ message: "hi" });
  assert.equal(got.message, "hi");
  assert.ok(got.metadata.traceparent.startsWith("00-4bf92f3577b34da6a3ce929d0e0e4736-"), got.metadata.traceparent);
  assert.ok("grpc-timeout" in got.metadata);
  assert.equal(await codeOf(() => mesh.echo.echo({ message: "no", failWithCode: 5 })), "NotFound");
  assert.equal(await codeOf(() => quick.echo.echo({ message: "slow", delayMs: 3000 })), "DeadlineExceeded");
  const seqs = [];
  for await (const r of mesh.echo.echoStream({ message: "s", count: 3 })) seqs.push(Number(r.sequence));
  assert.deepEqual(seqs, [1, 2, 3]);
});

test("url shortener", async () => {
  called.add("meshwork.urlshortener.v1.UrlShortener");
  const created = await mesh.urlShortener.shorten({ longUrl: `https://sdk.example.com/ts/${SUFFIX}` });
  assert.equal(created.link.owner, user);
  const resolved = await mesh.urlShortener.resolve({ code: created.code, skipClick: true });
  assert.equal(resolved.longUrl, `https://sdk.example.com/ts/${SUFFIX}`);
  assert.equal(await codeOf(() => mesh.urlShortener.resolve({ code: "nosuch7" })), "NotFound");
});

test("the shop: catalog, inventory, carts, checkout, orders, payments", async () => {
  for (const s of ["Catalog", "Carts", "Checkout"]) called.add(`meshwork.catalog.v1.${s}`);
  for (const s of ["inventory.v1.Inventory", "orders.v1.Orders", "payments.v1.Payments"]) called.add(`meshwork.${s}`);
  await mesh.catalog.createProduct({
    requestId: `sdk-ts-p-${SUFFIX}`,
    product: { sku, title: "SDK cup", category: "kitchen/mugs", priceMinor: 900n, currency: "EUR" },
  });
  assert.equal((await mesh.catalog.getProduct({ sku })).product.title, "SDK cup");
  assert.equal(await codeOf(() => mesh.catalog.getProduct({ sku: `NOPE-${SUFFIX}` })), "NotFound");

  await mesh.inventory.adjustStock({
    requestId: `sdk-ts-recv-${SUFFIX}`, sku, location: "berlin", delta: 5n, reason: AdjustReason.RECEIVE,
  });
  assert.equal((await mesh.inventory.getStock({ sku })).onHand, 5n);
  const stock = await first(mesh.inventory.watchStock({ skuPrefix: sku, fromSequence: 1n }));
  assert.equal(stock[0].sku, sku);
  assert.notEqual(stock[0].kind, StockEventKind.UNSPECIFIED);
  assert.equal(await codeOf(() => mesh.inventory.adjustStock({
    requestId: `sdk-ts-bad-${SUFFIX}`, sku, location: "berlin", delta: -100n, reason: AdjustReason.SHRINK,
  })), "FailedPrecondition");

  assert.equal((await mesh.carts.addItem({ userId: user, sku, quantity: 1n })).cart.itemCount, 1n);
  assert.equal(await codeOf(() => mesh.carts.addItem({ userId: user, sku, quantity: 0n })), "InvalidArgument");

  const placed = (await mesh.checkout.placeOrder({
    requestId: `sdk-ts-order-${SUFFIX}`, userId: user, paymentToken: "tok_ok",
    shippingAddress: { name: "Ada Lovelace", line1: "1 Analytical Way", city: "London", postalCode: "N1 1AA", country: "GB" },
  })).checkout;
  assert.equal(placed.state, CheckoutState.COMPLETED);
  assert.equal(await codeOf(() => mesh.checkout.getCheckout({ checkoutId: `nope-${SUFFIX}` })), "InvalidArgument");

  const order = (await mesh.orders.getOrder({ orderId: placed.orderId })).order;
  assert.equal(order.state, OrderState.CONFIRMED);
  const events = await first(mesh.orders.watchOrders({ target: { case: "orderId", value: order.orderId }, fromSequence: 1n }));
  assert.equal(events[0].type, OrderEventType.ORDER_CREATED);
  assert.equal(await codeOf(() => mesh.orders.getOrder({ orderId: "ord_nope" })), "InvalidArgument");

  const payment = (await mesh.payments.authorize({
    requestId: `sdk-ts-pay-${SUFFIX}`, orderId: `sdk-ts-order-x-${SUFFIX}`, userId: user, amountMinor: 500n,
    currency: "EUR", paymentToken: "tok_ok",
  })).payment;
  assert.equal(payment.status, PaymentStatus.AUTHORIZED);
  assert.equal(await codeOf(() => mesh.payments.getPayment({ paymentId: "pay_nope" })), "InvalidArgument");
});

test("ratings and recommendations", async () => {
  called.add("meshwork.ratings.v1.Ratings");
  called.add("meshwork.recommendation.v1.Recommendations");
  const review = (await mesh.ratings.submitReview({
    requestId: `sdk-ts-review-${SUFFIX}`, sku: `SDK-TS-R-${SUFFIX}`, userId: user, rating: 4, title: "Fine cup",
    body: "Holds tea and coffee alike and survives the dishwasher.",
  })).review;
  assert.equal(review.rating, 4);
  assert.equal(await codeOf(() => mesh.ratings.submitReview({
    requestId: `sdk-ts-review-bad-${SUFFIX}`, sku, userId: user, rating: 9, title: "t", body: "b",
  })), "InvalidArgument");
  await mesh.recommendations.recordInteraction({
    requestId: `sdk-ts-rec-${SUFFIX}`, userId: user, item: sku, kind: InteractionKind.VIEW,
  });
  assert.ok(Array.isArray((await mesh.recommendations.trending({ k: 5 })).items));
  assert.equal(await codeOf(() => mesh.recommendations.recommendForUser({ userId: "" })), "InvalidArgument");
});

test("parking, library, meetings", async () => {
  for (const s of ["parking.v1.Parking", "library.v1.Library", "meetings.v1.Meetings"]) called.add(`meshwork.${s}`);
  const lotId = `sdk-ts-lot-${SUFFIX.toLowerCase()}`;
  const lot = (await mesh.parking.createLot({
    requestId: `sdk-ts-lot-${SUFFIX}`,
    lot: {
      lotId, name: "SDK lot", currency: "EUR", prices: [{ type: SpotType.REGULAR, hourlyMinor: 300n }],
      levels: [{ levelId: "l1", name: "Ground", spots: [{ spotId: "a1", type: SpotType.REGULAR }] }],
    },
  })).lot;
  assert.equal(lot.spotCount, 1);
  assert.equal(await codeOf(() => mesh.parking.getLot({ lotId: `nope-${lotId}` })), "NotFound");

  const title = (await mesh.library.addTitle({
    requestId: `sdk-ts-title-${SUFFIX}`, title: { isbn: "0-306-40615-2", title: "A book", authors: ["Someone"] },
  })).title;
  assert.equal(title.isbn, "9780306406157");
  assert.equal(await codeOf(() => mesh.library.addTitle({
    requestId: `sdk-ts-title-bad-${SUFFIX}`, title: { isbn: "0-306-40615-3", title: "x", authors: ["y"] },
  })), "InvalidArgument");

  const meeting = (await mesh.meetings.createMeeting({
    requestId: `sdk-ts-mtg-${SUFFIX}`, host: user, topic: "TS standup",
    start: { seconds: BigInt(Math.floor(Date.now() / 1000)) }, duration: { seconds: 1800n },
  })).meeting;
  assert.equal(meeting.topic, "TS standup");
  await mesh.meetings.join({ meetingId: meeting.meetingId, userId: user });
  async function* hello() {
    yield { body: { case: "hello", value: { meetingId: meeting.meetingId, userId: user } } };
  }
  const got = await first(mesh.meetings.streamMeeting(hello(), { timeoutMs: 10000 }));
  assert.equal(got[0].body.case, "event");
  assert.equal(got[0].body.value.type, EventType.JOINED);
  assert.equal(await codeOf(() => mesh.meetings.getMeeting({ meetingId: "mtg_" + "0".repeat(20) })), "NotFound");
});

test("app store, contact tracing, timeline, waste, logging, warehouse", async () => {
  for (const s of ["appstore.v1.AppStore", "contacttracing.v1.ContactTracing", "timeline.v1.Timeline", "waste.v1.Waste", "logging.v1.Logging", "warehouse.v1.Warehouse"]) {
    called.add(`meshwork.${s}`);
  }
  const low = SUFFIX.toLowerCase();
  const now = BigInt(Math.floor(Date.now() / 1000));

  const dev = `sdk-ts-dev-${low}`;
  await mesh.appStore.createDeveloper({ requestId: `sdk-ts-dev-${SUFFIX}`, developerId: dev, name: "TS Apps", ownerUserId: user });
  const app = (await mesh.appStore.createApp({
    requestId: `sdk-ts-app-${SUFFIX}`, app: { packageName: `com.sdkts.app${low}`, developerId: dev, title: "TS App", category: "TOOLS" },
  })).app;
  assert.equal(app.packageName, `com.sdkts.app${low}`);
  assert.equal(await codeOf(() => mesh.appStore.getAppDetails({ packageName: `com.sdkts.nope${low}` })), "NotFound");

  const issued = await mesh.contactTracing.issueCode({ requestId: `sdk-ts-code-${SUFFIX}`, testType: TestType.CONFIRMED, geohash: "tdr1vzz" });
  assert.equal(issued.code.length, 8);
  assert.equal(await codeOf(() => mesh.contactTracing.verifyCode({ code: "" })), "InvalidArgument");

  const [author, reader] = [`tsa_${low}`, `tsr_${low}`];
  for (const handle of [author, reader]) await mesh.timeline.createUser({ handle, displayName: handle });
  await mesh.timeline.follow({ user: reader, target: author });
  const post = (await mesh.timeline.createPost({ requestId: `sdk-ts-post-${SUFFIX}`, author, text: "TS post" })).post;
  assert.equal(post.text, "TS post");
  const home = await first(mesh.timeline.streamHomeTimeline({ user: reader, fromSequence: 1n }, { timeoutMs: 10000 }));
  assert.equal(home[0].post.text, "TS post");
  assert.equal(await codeOf(() => mesh.timeline.createUser({ handle: "x" })), "InvalidArgument");

  const [depot, fill, truck, bin] = ["depot", "fill", "truck", "bin"].map((k) => `sdk-ts-${k}-${low}`);
  await mesh.waste.createSite({ site: { siteId: depot, kind: SiteKind.DEPOT, name: "Depot", location: { lat: 52.52, lon: 13.4 } } });
  await mesh.waste.createSite({ site: { siteId: fill, kind: SiteKind.LANDFILL, name: "Fill", location: { lat: 52.6, lon: 13.3 } } });
  await mesh.waste.createTruck({ truck: { truckId: truck, depotId: depot, capacityLitres: 2400n, shiftStartMinute: 360, shiftEndMinute: 840 } });
  await mesh.waste.createBin({ bin: { binId: bin, location: { lat: 52.53, lon: 13.41 }, capacityLitres: 240n, wasteType: WasteType.GENERAL } });
  await mesh.waste.reportFill({ binId: bin, fillPercent: 95, time: { seconds: now } });
  const plan = await mesh.waste.planRoutes({
    requestId: `sdk-ts-plan-${SUFFIX}`, date: { seconds: now + 3600n }, depotId: depot, threshold: 80, timeLimit: { seconds: 1n },
  });
  assert.deepEqual(plan.routes.flatMap((r) => r.stops.map((s) => s.binId)), [bin]);
  await mesh.waste.startRoute({ routeId: plan.routes[0].routeId });
  const route = await first(mesh.waste.watchRoute({ routeId: plan.routes[0].routeId, fromSequence: 1n }, { timeoutMs: 10000 }));
  assert.equal(route[0].type, RouteEventType.STARTED);
  assert.equal(await codeOf(() => mesh.waste.getBin({ binId: `nope-${low}` })), "NotFound");

  const labels = `{service="sdk-ts-${low}"}`;
  const pushed = await mesh.logging.push({ tenant: "sdk", streams: [{ labels, entries: [{ timestamp: { seconds: now }, line: "hello ts" }] }] });
  assert.equal(pushed.accepted, 1n);
  const tail = await first(mesh.logging.tail({ tenant: "sdk", logql: labels, start: { seconds: now - 60n } }, { timeoutMs: 10000 }));
  assert.equal(tail[0].stream.entries[0].line, "hello ts");
  assert.equal(await codeOf(() => mesh.logging.queryRange({ tenant: "sdk", logql: "{service=" })), "InvalidArgument");

  const wh = (await mesh.warehouse.createWarehouse({
    requestId: `sdk-ts-wh-${SUFFIX}`,
    warehouse: { warehouseId: `sdk-ts-wh-${low}`, name: "TS DC", aisles: 4, aisleLengthDm: 100, aisleSpacingDm: 30, rackPitchDm: 20 },
  })).warehouse;
  assert.equal(wh.warehouseId, `sdk-ts-wh-${low}`);
  assert.equal(await codeOf(() => mesh.warehouse.createWarehouse({
    requestId: `sdk-ts-wh-bad-${SUFFIX}`, warehouse: { warehouseId: "", name: "x" },
  })), "InvalidArgument");
});

test("every service in the SDK was called", () => {
  assert.deepEqual([...called].sort(), [...SERVICES].sort());
});
