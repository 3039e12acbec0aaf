//! The bad-input catalogue of every Library RPC, through a real server: empty, oversized and
//! malformed fields (ISBNs with wrong check digits, barcodes, member ids, currencies, amounts,
//! page tokens), unknown titles, copies and members, and refusals of state (a copy on loan, a
//! hold twice, a payment above the balance). Each answers its code (with the field named for
//! INVALID_ARGUMENT), and afterwards every key under the library's root is exactly as before.

use std::sync::Arc;

use meshwork_proto::pb::library::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::*;

/// Checks one answer: `Err` with `code`, and for INVALID_ARGUMENT a message naming `field`.
fn check<T: std::fmt::Debug>(what: &str, answer: Result<tonic::Response<T>, tonic::Status>, code: Code, field: &str) {
    match answer {
        Ok(ok) => panic!("{what}: expected {code:?}, got {ok:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            if code == Code::InvalidArgument {
                assert!(
                    status.message().starts_with(&format!("{field}:")),
                    "{what}: {:?} does not name {field}",
                    status.message()
                );
            }
        }
    }
}

async fn every_rpc_rejects_bad_input_and_changes_nothing(backend: Backend) {
    let clock = clock();
    let root = root("bad");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let book = isbn(40);
    add_title(&mut r.client, &book, "Good", &["Author"], &["subject"]).await;
    add_copy(&mut r.client, "GOOD-1", &book, 1000).await;
    add_copy(&mut r.client, "GOOD-2", &book, 1000).await;
    register(&mut r.client, "m1", pb::MemberType::Student).await;
    register(&mut r.client, "m2", pb::MemberType::Adult).await;
    checkout(&mut r.client, "m1", "GOOD-1").await.unwrap();
    place_hold(&mut r.client, "m2", &book).await; // GOOD-2 goes to m2's hold at once.
    let before = snapshot(&r.store, &root).await;
    let c = &mut r.client;

    // AddTitle.
    let t = || pb::Title { isbn: isbn(41), title: "T".into(), authors: vec!["A".into()], ..Default::default() };
    let add_title = |title: Option<pb::Title>| pb::AddTitleRequest { request_id: rid("t"), title };
    let bad_titles: Vec<(&str, pb::Title, &str)> = vec![
        ("no isbn", pb::Title { isbn: String::new(), ..t() }, "title.isbn"),
        ("bad isbn-13 check", pb::Title { isbn: "978-0-306-40615-8".into(), ..t() }, "title.isbn"),
        ("bad isbn-10 check", pb::Title { isbn: "0-306-40615-3".into(), ..t() }, "title.isbn"),
        ("11 digits", pb::Title { isbn: "12345678901".into(), ..t() }, "title.isbn"),
        ("letters", pb::Title { isbn: "97803064061AB".into(), ..t() }, "title.isbn"),
        ("no title", pb::Title { title: " ".into(), ..t() }, "title.title"),
        ("long title", pb::Title { title: "t".repeat(301), ..t() }, "title.title"),
        ("control chars", pb::Title { title: "a\u{0}b".into(), ..t() }, "title.title"),
        ("no authors", pb::Title { authors: vec![], ..t() }, "title.authors"),
        ("21 authors", pb::Title { authors: vec!["a".into(); 21], ..t() }, "title.authors"),
        ("empty author", pb::Title { authors: vec!["a".into(), String::new()], ..t() }, "title.authors[1]"),
        ("31 subjects", pb::Title { subjects: vec!["s".into(); 31], ..t() }, "title.subjects"),
        ("long subject", pb::Title { subjects: vec!["s".repeat(101)], ..t() }, "title.subjects[0]"),
    ];
    for (what, title, field) in bad_titles {
        check(what, c.add_title(add_title(Some(title))).await, Code::InvalidArgument, field);
    }
    check("no title", c.add_title(add_title(None)).await, Code::InvalidArgument, "title");
    let no_rid = pb::AddTitleRequest { request_id: String::new(), title: Some(t()) };
    check("no request id", c.add_title(no_rid).await, Code::InvalidArgument, "request_id");
    let bad_rid = pb::AddTitleRequest { request_id: "a b".into(), title: Some(t()) };
    check("bad request id", c.add_title(bad_rid).await, Code::InvalidArgument, "request_id");
    let dup = pb::Title { isbn: book.clone(), ..t() };
    check("catalogued", c.add_title(add_title(Some(dup))).await, Code::AlreadyExists, "");

    // AddCopy.
    let cp = || pb::Copy {
        barcode: "NEW-1".into(),
        isbn: book.clone(),
        branch: "main".into(),
        replacement_cost_minor: 500,
        currency: "USD".into(),
        ..Default::default()
    };
    let add_copy = |copy: Option<pb::Copy>| pb::AddCopyRequest { request_id: rid("c"), copy };
    let bad_copies: Vec<(&str, pb::Copy, &str, Code)> = vec![
        ("no barcode", pb::Copy { barcode: String::new(), ..cp() }, "copy.barcode", Code::InvalidArgument),
        ("lower-case barcode", pb::Copy { barcode: "new-1".into(), ..cp() }, "copy.barcode", Code::InvalidArgument),
        ("long barcode", pb::Copy { barcode: "B".repeat(41), ..cp() }, "copy.barcode", Code::InvalidArgument),
        ("bad isbn", pb::Copy { isbn: "123".into(), ..cp() }, "copy.isbn", Code::InvalidArgument),
        ("no branch", pb::Copy { branch: String::new(), ..cp() }, "copy.branch", Code::InvalidArgument),
        ("bad branch", pb::Copy { branch: "Main St".into(), ..cp() }, "copy.branch", Code::InvalidArgument),
        (
            "zero cost",
            pb::Copy { replacement_cost_minor: 0, ..cp() },
            "copy.replacement_cost_minor",
            Code::InvalidArgument,
        ),
        (
            "huge cost",
            pb::Copy { replacement_cost_minor: 10_000_001, ..cp() },
            "copy.replacement_cost_minor",
            Code::InvalidArgument,
        ),
        ("no currency", pb::Copy { currency: String::new(), ..cp() }, "copy.currency", Code::InvalidArgument),
        ("other currency", pb::Copy { currency: "EUR".into(), ..cp() }, "copy.currency", Code::InvalidArgument),
        ("unknown title", pb::Copy { isbn: isbn(42), ..cp() }, "", Code::NotFound),
        ("barcode in use", pb::Copy { barcode: "GOOD-1".into(), ..cp() }, "", Code::AlreadyExists),
    ];
    for (what, copy, field, code) in bad_copies {
        check(what, c.add_copy(add_copy(Some(copy))).await, code, field);
    }
    check("no copy", c.add_copy(add_copy(None)).await, Code::InvalidArgument, "copy");

    // RegisterMember.
    let m = || pb::Member {
        member_id: "new-m".into(),
        name: "N".into(),
        r#type: pb::MemberType::Adult as i32,
        ..Default::default()
    };
    let reg = |member: Option<pb::Member>| pb::RegisterMemberRequest { request_id: rid("m"), member };
    let bad_members: Vec<(&str, pb::Member, &str, Code)> = vec![
        ("no id", pb::Member { member_id: String::new(), ..m() }, "member.member_id", Code::InvalidArgument),
        ("slash in id", pb::Member { member_id: "a/b".into(), ..m() }, "member.member_id", Code::InvalidArgument),
        ("long id", pb::Member { member_id: "a".repeat(65), ..m() }, "member.member_id", Code::InvalidArgument),
        ("no name", pb::Member { name: String::new(), ..m() }, "member.name", Code::InvalidArgument),
        ("no type", pb::Member { r#type: 0, ..m() }, "member.type", Code::InvalidArgument),
        ("unknown type", pb::Member { r#type: 9, ..m() }, "member.type", Code::InvalidArgument),
        ("id in use", pb::Member { member_id: "m1".into(), ..m() }, "", Code::AlreadyExists),
    ];
    for (what, member, field, code) in bad_members {
        check(what, c.register_member(reg(Some(member))).await, code, field);
    }
    check("no member", c.register_member(reg(None)).await, Code::InvalidArgument, "member");

    // GetTitle, GetCopy.
    check("bad isbn", c.get_title(pb::GetTitleRequest { isbn: "1".into() }).await, Code::InvalidArgument, "isbn");
    check("unknown title", c.get_title(pb::GetTitleRequest { isbn: isbn(43) }).await, Code::NotFound, "");
    check(
        "bad barcode",
        c.get_copy(pb::GetCopyRequest { barcode: "x".into() }).await,
        Code::InvalidArgument,
        "barcode",
    );
    check("unknown copy", c.get_copy(pb::GetCopyRequest { barcode: "NONE-1".into() }).await, Code::NotFound, "");

    // SearchCatalog.
    let search = |query: &str, page_size: i32, page_token: &str| pb::SearchCatalogRequest {
        query: query.into(),
        page_size,
        page_token: page_token.into(),
    };
    check("long query", c.search_catalog(search(&"q".repeat(501), 0, "")).await, Code::InvalidArgument, "query");
    check("control query", c.search_catalog(search("a\u{7}", 0, "")).await, Code::InvalidArgument, "query");
    check("negative page", c.search_catalog(search("a", -1, "")).await, Code::InvalidArgument, "page_size");
    check("huge page", c.search_catalog(search("a", 101, "")).await, Code::InvalidArgument, "page_size");
    check("forged token", c.search_catalog(search("a", 0, "AAAAAAAAAAAA")).await, Code::InvalidArgument, "page_token");

    // Checkout.
    let out = |request_id: &str, member_id: &str, barcode: &str| pb::CheckoutRequest {
        request_id: request_id.into(),
        member_id: member_id.into(),
        barcode: barcode.into(),
    };
    check("no request id", c.checkout(out("", "m1", "GOOD-2")).await, Code::InvalidArgument, "request_id");
    check(
        "long request id",
        c.checkout(out(&"r".repeat(65), "m1", "GOOD-2")).await,
        Code::InvalidArgument,
        "request_id",
    );
    check("no member", c.checkout(out("r1", "", "GOOD-2")).await, Code::InvalidArgument, "member_id");
    check("bad barcode", c.checkout(out("r1", "m1", "good 2")).await, Code::InvalidArgument, "barcode");
    check("unknown member", c.checkout(out("r1", "ghost", "GOOD-2")).await, Code::NotFound, "");
    check("unknown copy", c.checkout(out("r1", "m1", "NONE-1")).await, Code::NotFound, "");
    check("on loan already", c.checkout(out("r1", "m2", "GOOD-1")).await, Code::FailedPrecondition, "");
    check("own loan", c.checkout(out("r1", "m1", "GOOD-1")).await, Code::FailedPrecondition, "");
    check("another's hold", c.checkout(out("r1", "m1", "GOOD-2")).await, Code::FailedPrecondition, "");

    // Return.
    let ret =
        |request_id: &str, barcode: &str| pb::ReturnRequest { request_id: request_id.into(), barcode: barcode.into() };
    check("no request id", c.r#return(ret("", "GOOD-1")).await, Code::InvalidArgument, "request_id");
    check("no barcode", c.r#return(ret("r2", "")).await, Code::InvalidArgument, "barcode");
    check("unknown copy", c.r#return(ret("r2", "NONE-1")).await, Code::NotFound, "");
    check("not on loan", c.r#return(ret("r2", "GOOD-2")).await, Code::FailedPrecondition, "");

    // Renew.
    let ren = |request_id: &str, member_id: &str, barcode: &str| pb::RenewRequest {
        request_id: request_id.into(),
        member_id: member_id.into(),
        barcode: barcode.into(),
    };
    check("no request id", c.renew(ren("", "m1", "GOOD-1")).await, Code::InvalidArgument, "request_id");
    check("bad member", c.renew(ren("r3", "m 1", "GOOD-1")).await, Code::InvalidArgument, "member_id");
    check("bad barcode", c.renew(ren("r3", "m1", "")).await, Code::InvalidArgument, "barcode");
    check("unknown member", c.renew(ren("r3", "ghost", "GOOD-1")).await, Code::NotFound, "");
    check("not theirs", c.renew(ren("r3", "m2", "GOOD-1")).await, Code::FailedPrecondition, "");
    check("not on loan", c.renew(ren("r3", "m2", "GOOD-2")).await, Code::FailedPrecondition, "");

    // PlaceHold.
    let hold = |request_id: &str, member_id: &str, isbn: &str| pb::PlaceHoldRequest {
        request_id: request_id.into(),
        member_id: member_id.into(),
        isbn: isbn.into(),
    };
    check("no request id", c.place_hold(hold("", "m2", &book)).await, Code::InvalidArgument, "request_id");
    check("no member", c.place_hold(hold("r4", "", &book)).await, Code::InvalidArgument, "member_id");
    check("bad isbn", c.place_hold(hold("r4", "m2", "978-0-306-40615-8")).await, Code::InvalidArgument, "isbn");
    check("unknown title", c.place_hold(hold("r4", "m2", &isbn(44))).await, Code::NotFound, "");
    check("unknown member", c.place_hold(hold("r4", "ghost", &book)).await, Code::NotFound, "");
    check("twice", c.place_hold(hold("r4", "m2", &book)).await, Code::AlreadyExists, "");
    check("has it on loan", c.place_hold(hold("r4", "m1", &book)).await, Code::FailedPrecondition, "");

    // CancelHold.
    let cancel = |member_id: &str, isbn: &str| pb::CancelHoldRequest { member_id: member_id.into(), isbn: isbn.into() };
    check("no member", c.cancel_hold(cancel("", &book)).await, Code::InvalidArgument, "member_id");
    check("bad isbn", c.cancel_hold(cancel("m2", "abc")).await, Code::InvalidArgument, "isbn");
    check("no such hold", c.cancel_hold(cancel("m1", &book)).await, Code::NotFound, "");
    check("unknown title", c.cancel_hold(cancel("m2", &isbn(45))).await, Code::NotFound, "");

    // PayFine.
    let pay = |request_id: &str, member_id: &str, amount: i64, currency: &str| pb::PayFineRequest {
        request_id: request_id.into(),
        member_id: member_id.into(),
        amount_minor: amount,
        currency: currency.into(),
    };
    check("no request id", c.pay_fine(pay("", "m1", 5, "USD")).await, Code::InvalidArgument, "request_id");
    check("no member", c.pay_fine(pay("r5", "", 5, "USD")).await, Code::InvalidArgument, "member_id");
    check("zero", c.pay_fine(pay("r5", "m1", 0, "USD")).await, Code::InvalidArgument, "amount_minor");
    check("negative", c.pay_fine(pay("r5", "m1", -5, "USD")).await, Code::InvalidArgument, "amount_minor");
    check("huge", c.pay_fine(pay("r5", "m1", 10_000_000_001, "USD")).await, Code::InvalidArgument, "amount_minor");
    check("bad currency", c.pay_fine(pay("r5", "m1", 5, "usd")).await, Code::InvalidArgument, "currency");
    check("other currency", c.pay_fine(pay("r5", "m1", 5, "EUR")).await, Code::InvalidArgument, "currency");
    check("unknown member", c.pay_fine(pay("r5", "ghost", 5, "USD")).await, Code::NotFound, "");
    check("nothing owed", c.pay_fine(pay("r5", "m1", 5, "USD")).await, Code::FailedPrecondition, "");

    // MemberAccount.
    let acct = |member_id: &str| pb::MemberAccountRequest { member_id: member_id.into() };
    check("no member", c.member_account(acct("")).await, Code::InvalidArgument, "member_id");
    check("bad member", c.member_account(acct("a\nb")).await, Code::InvalidArgument, "member_id");
    check("unknown member", c.member_account(acct("ghost")).await, Code::NotFound, "");

    let after = snapshot(&r.store, &root).await;
    assert_eq!(before.len(), after.len(), "no key was added or removed");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.key, &b.value, b.version), (&a.key, &a.value, a.version), "{}", String::from_utf8_lossy(&b.key));
    }
}

on_every_backend!(every_rpc_rejects_bad_input_and_changes_nothing);
