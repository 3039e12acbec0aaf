//! The ratings API through a real server: edits keep history, votes and reports, the
//! moderation queue, seller replies, sorting and paging, identity, verified purchases against
//! a real orders service, and the bad-input catalogue of every RPC.

mod support;

use meshwork_common::events::EventLog;
use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::orders::v1::orders_client::OrdersClient;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_proto::pb::payments::v1::payments_client::PaymentsClient;
use meshwork_proto::pb::ratings::v1 as pb;
use meshwork_proto::pb::ratings::v1::ratings_client::RatingsClient;
use meshwork_test_support::{TestServer, backends::unique, context, memory_store};
use prost::Message;
use support::{Ratings, as_caller, body, sku, snapshot, submit};
use tonic::{Code, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_review_by_the_same_user_edits_the_first() {
    let store = memory_store();
    let mut r = Ratings::start(&context(store.clone())).await;
    let (product, alice) = (sku("P"), unique("alice"));
    let first = r.client.submit_review(submit(&product, &alice, 2, &body(1))).await.unwrap().into_inner();
    assert!(!first.edited);
    let first = first.review.unwrap();
    assert_eq!((first.status, first.revision), (pb::ReviewStatus::Published as i32, 1));

    let second = r.client.submit_review(submit(&product, &alice, 5, &body(2))).await.unwrap().into_inner();
    assert!(second.edited);
    let second = second.review.unwrap();
    assert_eq!(second.review_id, first.review_id, "one review per user per product");
    assert_eq!((second.rating, second.revision), (5, 2));

    let got = r.client.get_review(pb::GetReviewRequest { review_id: first.review_id.clone() }).await.unwrap();
    let got = got.into_inner();
    assert_eq!(got.review.unwrap().body, body(2));
    assert_eq!(got.history.len(), 1);
    assert_eq!((got.history[0].revision, got.history[0].rating), (1, 2));
    assert_eq!(got.history[0].body, body(1));

    let rating = r.client.get_product_rating(pb::GetProductRatingRequest { sku: product.clone() }).await.unwrap();
    let rating = rating.into_inner().rating.unwrap();
    assert_eq!((rating.count, rating.histogram.clone()), (1, vec![0, 0, 0, 0, 1]), "the edit replaced the 2");

    // The log holds a submit and an edit, each with what came before.
    let events = EventLog::new(store, "ratings").read(1, 0).await.unwrap();
    let mine: Vec<(String, pb::ReviewEvent)> = events
        .iter()
        .map(|e| (e.r#type.clone(), pb::ReviewEvent::decode(&*e.payload).unwrap()))
        .filter(|(_, p)| p.review_id == first.review_id)
        .collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].0, "review.submitted");
    assert_eq!((mine[0].1.previous_status, mine[0].1.previous_rating), (0, 0));
    assert_eq!(mine[1].0, "review.edited");
    assert_eq!((mine[1].1.rating, mine[1].1.previous_rating), (5, 2));
    assert_eq!(mine[1].1.previous_status, pb::ReviewStatus::Published as i32);

    // The same request_id again is the same answer, not a third revision.
    let again = submit(&product, &alice, 3, &body(3));
    let a = r.client.submit_review(again.clone()).await.unwrap().into_inner();
    let b = r.client.submit_review(again).await.unwrap().into_inner();
    assert_eq!(a, b);
    assert_eq!(b.review.unwrap().revision, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helpful_vote_on_your_own_review_is_refused() {
    let store = memory_store();
    let mut r = Ratings::start(&context(store.clone())).await;
    let (product, alice, bob) = (sku("V"), unique("alice"), unique("bob"));
    let review = r.client.submit_review(submit(&product, &alice, 4, &body(1))).await.unwrap();
    let id = review.into_inner().review.unwrap().review_id;
    let vote =
        |user: &str, helpful: bool| pb::VoteHelpfulRequest { review_id: id.clone(), user_id: user.into(), helpful };

    let before = snapshot(&store).await;
    let err = r.client.vote_helpful(vote(&alice, true)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("own review"), "{}", err.message());
    assert_eq!(snapshot(&store).await, before, "the refused vote changed nothing");

    let voted = r.client.vote_helpful(vote(&bob, true)).await.unwrap().into_inner().review.unwrap();
    assert_eq!((voted.helpful_votes, voted.unhelpful_votes), (1, 0));
    let same = r.client.vote_helpful(vote(&bob, true)).await.unwrap().into_inner().review.unwrap();
    assert_eq!((same.helpful_votes, same.unhelpful_votes), (1, 0), "one vote per user");
    let changed = r.client.vote_helpful(vote(&bob, false)).await.unwrap().into_inner().review.unwrap();
    assert_eq!((changed.helpful_votes, changed.unhelpful_votes), (0, 1), "a vote can change");

    // Acting for someone else needs the admin role.
    let denied = r.client.vote_helpful(as_caller(vote(&unique("carol"), true), &bob, &[])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spam_goes_to_the_queue_and_moderators_decide() {
    let store = memory_store();
    let mut r = Ratings::start(&context(store.clone())).await;
    let (product, spammer) = (sku("M"), unique("spammer"));
    let spam = submit(&product, &spammer, 4, "Nice. Cheaper copies at https://deals.example/watch?id=7 for you");
    let spam = r.client.submit_review(spam).await.unwrap().into_inner().review.unwrap();
    assert_eq!(spam.status, pb::ReviewStatus::Pending as i32);
    assert!(spam.spam_reasons.iter().any(|reason| reason.code == "link"), "{:?}", spam.spam_reasons);
    let rating = |r: &mut RatingsClient<_>, product: String| {
        let mut r = r.clone();
        async move {
            r.get_product_rating(pb::GetProductRatingRequest { sku: product })
                .await
                .unwrap()
                .into_inner()
                .rating
                .unwrap()
        }
    };
    assert_eq!(rating(&mut r.client, product.clone()).await.count, 0, "a pending review does not count");

    let queue = r.client.list_moderation_queue(pb::ListModerationQueueRequest::default()).await.unwrap().into_inner();
    let queued = queue.reviews.iter().find(|q| q.review_id == spam.review_id).expect("in the queue");
    assert!(!queued.spam_reasons.is_empty(), "moderators see the reasons");

    // A moderator role is needed when a caller is known.
    let decide = |decision: pb::ModerationDecision, reason: &str| pb::ModerateRequest {
        review_id: spam.review_id.clone(),
        decision: decision as i32,
        reason: reason.into(),
    };
    let denied =
        r.client.moderate(as_caller(decide(pb::ModerationDecision::Publish, "ok"), "eve", &[])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let published = r
        .client
        .moderate(as_caller(decide(pb::ModerationDecision::Publish, "the link is the brand's"), "mo", &["moderator"]))
        .await
        .unwrap()
        .into_inner()
        .review
        .unwrap();
    assert_eq!(published.status, pb::ReviewStatus::Published as i32);
    assert_eq!(published.moderation_reason, "the link is the brand's");
    assert_eq!(rating(&mut r.client, product.clone()).await.count, 1);
    let queue = r.client.list_moderation_queue(pb::ListModerationQueueRequest::default()).await.unwrap().into_inner();
    assert!(queue.reviews.iter().all(|q| q.review_id != spam.review_id), "out of the queue");

    // Three distinct reports send it back to the queue; a repeated report counts once.
    for reporter in ["r1", "r2", "r2", "r3"] {
        let report = pb::ReportReviewRequest {
            review_id: spam.review_id.clone(),
            user_id: format!("{reporter}-{}", spam.review_id),
            reason: "advertising".into(),
        };
        r.client.report_review(report).await.unwrap();
    }
    let got = r.client.get_review(pb::GetReviewRequest { review_id: spam.review_id.clone() }).await.unwrap();
    let got = got.into_inner().review.unwrap();
    assert_eq!((got.status, got.report_count), (pb::ReviewStatus::Pending as i32, 3));
    assert_eq!(rating(&mut r.client, product.clone()).await.count, 0);

    // One seller reply.
    let reply = pb::ReplyToReviewRequest {
        review_id: spam.review_id.clone(),
        seller_id: "acme".into(),
        body: "Thanks for the feedback".into(),
    };
    let replied = r.client.reply_to_review(reply.clone()).await.unwrap().into_inner().review.unwrap();
    assert_eq!(replied.seller_reply.unwrap().body, "Thanks for the feedback");
    assert_eq!(r.client.reply_to_review(reply.clone()).await.unwrap_err().code(), Code::AlreadyExists);
    let not_seller = r.client.reply_to_review(as_caller(reply, "acme", &[])).await.unwrap_err();
    assert_eq!(not_seller.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_sorted_filtered_and_paged() {
    let mut r = Ratings::start(&context(memory_store())).await;
    let product = sku("L");
    let mut ids = Vec::new();
    for (i, rating) in [5, 1, 4, 5, 3, 2, 4].into_iter().enumerate() {
        let user = unique("u");
        let review = r.client.submit_review(submit(&product, &user, rating, &body(i))).await.unwrap();
        ids.push(review.into_inner().review.unwrap().review_id);
    }
    for voter in 0..3 {
        let vote =
            pb::VoteHelpfulRequest { review_id: ids[4].clone(), user_id: format!("voter{voter}"), helpful: true };
        r.client.vote_helpful(vote).await.unwrap();
    }
    let list = |sort: pb::ReviewSort, stars: Vec<i32>, page_size: i32, page_token: String| pb::ListReviewsRequest {
        sku: product.clone(),
        sort: sort as i32,
        stars,
        verified_only: false,
        page_size,
        page_token,
    };
    let ratings_of = |reviews: &[pb::Review]| reviews.iter().map(|x| x.rating).collect::<Vec<_>>();
    let high = r.client.list_reviews(list(pb::ReviewSort::RatingHigh, vec![], 0, String::new())).await.unwrap();
    assert_eq!(ratings_of(&high.into_inner().reviews), [5, 5, 4, 4, 3, 2, 1]);
    let low = r.client.list_reviews(list(pb::ReviewSort::RatingLow, vec![4, 5], 0, String::new())).await.unwrap();
    assert_eq!(ratings_of(&low.into_inner().reviews), [4, 4, 5, 5]);
    let helpful = r.client.list_reviews(list(pb::ReviewSort::Helpful, vec![], 1, String::new())).await.unwrap();
    assert_eq!(helpful.into_inner().reviews[0].review_id, ids[4]);
    let newest = r.client.list_reviews(list(pb::ReviewSort::Newest, vec![], 0, String::new())).await.unwrap();
    let newest = newest.into_inner().reviews;
    assert!(newest.windows(2).all(|w| w[0].update_time.unwrap().seconds >= w[1].update_time.unwrap().seconds));

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page =
            r.client.list_reviews(list(pb::ReviewSort::RatingHigh, vec![], 3, token)).await.unwrap().into_inner();
        assert!(page.reviews.len() <= 3);
        seen.extend(page.reviews.iter().map(|x| x.review_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 7);
    let verified =
        pb::ListReviewsRequest { verified_only: true, ..list(pb::ReviewSort::Newest, vec![], 0, String::new()) };
    assert!(r.client.list_reviews(verified).await.unwrap().into_inner().reviews.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_submitted_unverified_when_orders_is_down() {
    // The test context's mesh points at a port nobody listens on.
    let mut r = Ratings::start(&context(memory_store())).await;
    let review = r.client.submit_review(submit(&sku("D"), &unique("u"), 4, &body(1))).await.unwrap();
    let review = review.into_inner().review.unwrap();
    assert!(!review.verified_purchase);
    assert_eq!(review.status, pb::ReviewStatus::Published as i32);
}

fn order_request(user: &str, product: &str) -> orders::CreateOrderRequest {
    orders::CreateOrderRequest {
        request_id: unique("create"),
        user_id: user.into(),
        lines: vec![orders::OrderLine {
            sku: product.into(),
            title: "a product".into(),
            quantity: 1,
            unit_price_minor: 2500,
        }],
        currency: "USD".into(),
        shipping_address: Some(orders::Address {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical Way".into(),
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_purchase_follows_delivered_orders_through_the_mesh() {
    let (server, _ctx) = TestServer::mesh(
        &[meshwork_payments::hosted, meshwork_orders::hosted, meshwork_ratings::hosted],
        context(memory_store()),
    )
    .await;
    let mut ratings = RatingsClient::new(server.channel.clone());
    let mut orders_api = OrdersClient::new(server.channel.clone());
    let mut payments = PaymentsClient::new(server.channel.clone());
    let (product, buyer, confirmed_only, stranger) = (sku("B"), unique("buyer"), unique("waiting"), unique("stranger"));

    for (user, last) in [(&buyer, orders::OrderState::Delivered), (&confirmed_only, orders::OrderState::Confirmed)] {
        let order = orders_api.create_order(order_request(user, &product)).await.unwrap().into_inner().order.unwrap();
        let auth = pay::AuthorizeRequest {
            request_id: unique("auth"),
            order_id: order.order_id.clone(),
            user_id: user.clone(),
            amount_minor: order.total_minor,
            currency: "USD".into(),
            payment_token: "tok_ok".into(),
        };
        let payment = payments.authorize(auth).await.unwrap().into_inner().payment.unwrap();
        let capture =
            pay::CaptureRequest { request_id: unique("cap"), payment_id: payment.payment_id.clone(), amount_minor: 0 };
        payments.capture(capture).await.unwrap();
        let path = [
            orders::OrderState::Confirmed,
            orders::OrderState::Packed,
            orders::OrderState::Shipped,
            orders::OrderState::Delivered,
        ];
        for to in path {
            let move_to = orders::TransitionOrderRequest {
                order_id: order.order_id.clone(),
                to: to as i32,
                payment_id: if to == orders::OrderState::Confirmed {
                    payment.payment_id.clone()
                } else {
                    String::new()
                },
                ..Default::default()
            };
            orders_api.transition_order(move_to).await.unwrap();
            if to == last {
                break;
            }
        }
    }
    let verified = |user: &str, n: usize| {
        let mut ratings = ratings.clone();
        let req = submit(&product, user, 4, &body(n));
        async move { ratings.submit_review(req).await.unwrap().into_inner().review.unwrap().verified_purchase }
    };
    assert!(verified(&buyer, 1).await, "a DELIVERED order of the sku");
    assert!(!verified(&confirmed_only, 2).await, "paid but not delivered");
    assert!(!verified(&stranger, 3).await, "no order at all");
    let rating = ratings.get_product_rating(pb::GetProductRatingRequest { sku: product }).await.unwrap();
    let rating = rating.into_inner().rating.unwrap();
    assert_eq!((rating.count, rating.verified_count), (3, 1));
}

/// Checks an INVALID_ARGUMENT naming `field`.
#[track_caller]
fn invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let err = result.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
    assert!(err.message().starts_with(&format!("{field}:")), "{field}: {}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let store = memory_store();
    let mut r = Ratings::start(&context(store.clone())).await;
    let (product, alice) = (sku("X"), unique("alice"));
    let review = r.client.submit_review(submit(&product, &alice, 4, &body(1))).await.unwrap();
    let id = review.into_inner().review.unwrap().review_id;
    let before = snapshot(&store).await;
    let c = &mut r.client;

    let good = submit(&product, &unique("bob"), 3, &body(2));
    let cases: Vec<(&str, pb::SubmitReviewRequest)> = vec![
        ("request_id", pb::SubmitReviewRequest { request_id: String::new(), ..good.clone() }),
        ("request_id", pb::SubmitReviewRequest { request_id: "a b".into(), ..good.clone() }),
        ("sku", pb::SubmitReviewRequest { sku: String::new(), ..good.clone() }),
        ("sku", pb::SubmitReviewRequest { sku: "lower-case".into(), ..good.clone() }),
        ("user_id", pb::SubmitReviewRequest { user_id: String::new(), ..good.clone() }),
        ("user_id", pb::SubmitReviewRequest { user_id: "x".repeat(129), ..good.clone() }),
        ("rating", pb::SubmitReviewRequest { rating: 0, ..good.clone() }),
        ("rating", pb::SubmitReviewRequest { rating: 6, ..good.clone() }),
        ("title", pb::SubmitReviewRequest { title: "t".repeat(201), ..good.clone() }),
        ("title", pb::SubmitReviewRequest { title: "bell\u{7}".into(), ..good.clone() }),
        ("body", pb::SubmitReviewRequest { body: "b".repeat(5001), ..good.clone() }),
        ("media_urls", pb::SubmitReviewRequest { media_urls: vec!["https://x.example/a".into(); 11], ..good.clone() }),
        ("media_urls[0]", pb::SubmitReviewRequest { media_urls: vec!["ftp://x".into()], ..good.clone() }),
        (
            "media_urls[1]",
            pb::SubmitReviewRequest {
                media_urls: vec!["https://x.example/a".into(), "https://x.example/a b".into()],
                ..good.clone()
            },
        ),
    ];
    for (field, req) in cases {
        invalid(c.submit_review(req).await, field);
    }
    invalid(c.get_review(pb::GetReviewRequest { review_id: String::new() }).await, "review_id");
    invalid(c.get_review(pb::GetReviewRequest { review_id: "rev_short".into() }).await, "review_id");

    let list = pb::ListReviewsRequest { sku: product.clone(), ..Default::default() };
    invalid(c.list_reviews(pb::ListReviewsRequest { sku: "x".into(), ..list.clone() }).await, "sku");
    invalid(c.list_reviews(pb::ListReviewsRequest { sort: 9, ..list.clone() }).await, "sort");
    invalid(c.list_reviews(pb::ListReviewsRequest { stars: vec![0], ..list.clone() }).await, "stars");
    invalid(c.list_reviews(pb::ListReviewsRequest { page_size: -1, ..list.clone() }).await, "page_size");
    invalid(c.list_reviews(pb::ListReviewsRequest { page_size: 1001, ..list.clone() }).await, "page_size");
    invalid(
        c.list_reviews(pb::ListReviewsRequest { page_token: "garbage".into(), ..list.clone() }).await,
        "page_token",
    );

    invalid(c.get_product_rating(pb::GetProductRatingRequest { sku: String::new() }).await, "sku");

    let vote = pb::VoteHelpfulRequest { review_id: id.clone(), user_id: "v".into(), helpful: true };
    invalid(c.vote_helpful(pb::VoteHelpfulRequest { review_id: "nope".into(), ..vote.clone() }).await, "review_id");
    invalid(c.vote_helpful(pb::VoteHelpfulRequest { user_id: String::new(), ..vote.clone() }).await, "user_id");

    let report = pb::ReportReviewRequest { review_id: id.clone(), user_id: "r".into(), reason: "abuse".into() };
    invalid(c.report_review(pb::ReportReviewRequest { review_id: String::new(), ..report.clone() }).await, "review_id");
    invalid(c.report_review(pb::ReportReviewRequest { user_id: String::new(), ..report.clone() }).await, "user_id");
    invalid(c.report_review(pb::ReportReviewRequest { reason: " ".into(), ..report.clone() }).await, "reason");
    invalid(c.report_review(pb::ReportReviewRequest { reason: "r".repeat(501), ..report.clone() }).await, "reason");

    let queue = pb::ListModerationQueueRequest::default();
    invalid(
        c.list_moderation_queue(pb::ListModerationQueueRequest { page_size: -5, ..queue.clone() }).await,
        "page_size",
    );
    invalid(
        c.list_moderation_queue(pb::ListModerationQueueRequest { page_token: "AAAAAAAAAAAAAAAA".into(), ..queue })
            .await,
        "page_token",
    );

    let moderate = pb::ModerateRequest {
        review_id: id.clone(),
        decision: pb::ModerationDecision::Reject as i32,
        reason: "x".into(),
    };
    invalid(c.moderate(pb::ModerateRequest { review_id: "rev_".into(), ..moderate.clone() }).await, "review_id");
    invalid(c.moderate(pb::ModerateRequest { decision: 0, ..moderate.clone() }).await, "decision");
    invalid(c.moderate(pb::ModerateRequest { decision: 7, ..moderate.clone() }).await, "decision");
    invalid(c.moderate(pb::ModerateRequest { reason: String::new(), ..moderate.clone() }).await, "reason");

    let reply = pb::ReplyToReviewRequest { review_id: id.clone(), seller_id: "s".into(), body: "thanks".into() };
    invalid(c.reply_to_review(pb::ReplyToReviewRequest { review_id: "x".into(), ..reply.clone() }).await, "review_id");
    invalid(
        c.reply_to_review(pb::ReplyToReviewRequest { seller_id: String::new(), ..reply.clone() }).await,
        "seller_id",
    );
    invalid(c.reply_to_review(pb::ReplyToReviewRequest { body: String::new(), ..reply.clone() }).await, "body");
    invalid(c.reply_to_review(pb::ReplyToReviewRequest { body: "b".repeat(2001), ..reply.clone() }).await, "body");

    // Well-formed but absent reviews are NOT_FOUND.
    let missing = "rev_00000000000000000000".to_string();
    let code = c.get_review(pb::GetReviewRequest { review_id: missing.clone() }).await.unwrap_err().code();
    assert_eq!(code, Code::NotFound);
    let code = c.moderate(pb::ModerateRequest { review_id: missing, ..moderate }).await.unwrap_err().code();
    assert_eq!(code, Code::NotFound);

    assert_eq!(snapshot(&store).await, before, "no refused call changed anything");
}
