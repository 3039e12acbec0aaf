//! Who may do what, when the gateway vouches for a caller: staff calls (AddTitle, AddCopy,
//! RegisterMember) need role `librarian` or `admin`; a member acts for themselves, staff for
//! anyone. A refused call changes nothing. Anonymous calls (the dev gateway) are allowed.

use std::sync::Arc;

use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::library::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::*;

/// Returns `message` carrying the identity of `subject` with `roles`, as the gateway sends it.
fn as_caller<T>(message: T, subject: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().expect("identity header"));
    request
}

async fn members_act_for_themselves_and_staff_for_anyone(backend: Backend) {
    let clock = clock();
    let root = root("identity");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let book = isbn(50);
    add_title(&mut r.client, &book, "Mine", &["Me"], &[]).await;
    add_copy(&mut r.client, "MINE-1", &book, 100).await;
    add_copy(&mut r.client, "MINE-2", &book, 100).await;
    register(&mut r.client, "alice", pb::MemberType::Adult).await;
    register(&mut r.client, "bob", pb::MemberType::Adult).await;
    let before = snapshot(&r.store, &root).await;

    let title = pb::Title { isbn: isbn(51), title: "T".into(), authors: vec!["A".into()], ..Default::default() };
    let add = pb::AddTitleRequest { request_id: rid("t"), title: Some(title) };
    let denied = r.client.add_title(as_caller(add.clone(), "alice", &["reader"])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let member = pb::Member { member_id: "eve".into(), name: "Eve".into(), r#type: 2, ..Default::default() };
    let reg = pb::RegisterMemberRequest { request_id: rid("m"), member: Some(member) };
    assert_eq!(
        r.client.register_member(as_caller(reg, "alice", &[])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let for_bob = pb::CheckoutRequest { request_id: rid("o"), member_id: "bob".into(), barcode: "MINE-1".into() };
    let denied = r.client.checkout(as_caller(for_bob.clone(), "alice", &[])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bobs_account = pb::MemberAccountRequest { member_id: "bob".into() };
    let denied = r.client.member_account(as_caller(bobs_account.clone(), "alice", &[])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(snapshot(&r.store, &root).await, before, "refused calls changed nothing");

    // Alice for herself; a librarian for bob; an admin adds a title.
    let for_alice = pb::CheckoutRequest { request_id: rid("o"), member_id: "alice".into(), barcode: "MINE-2".into() };
    r.client.checkout(as_caller(for_alice, "alice", &[])).await.expect("alice borrows for herself");
    r.client.checkout(as_caller(for_bob, "desk", &["librarian"])).await.expect("the desk lends to bob");
    r.client.member_account(as_caller(bobs_account, "desk", &["librarian"])).await.expect("staff reads any account");
    r.client.add_title(as_caller(add, "root", &["admin"])).await.expect("an admin adds a title");
    // Only the borrower or staff may return a copy.
    let give = pb::ReturnRequest { request_id: rid("r"), barcode: "MINE-1".into() };
    assert_eq!(
        r.client.r#return(as_caller(give.clone(), "alice", &[])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    r.client.r#return(as_caller(give, "bob", &[])).await.expect("bob returns his copy");
    // Bob, with nothing on loan now, queues (the copy he returned is set aside for him); a
    // member sees the holds queue without the other members' ids.
    let hold = pb::PlaceHoldRequest { request_id: rid("h"), member_id: "bob".into(), isbn: book.clone() };
    r.client.place_hold(as_caller(hold, "bob", &[])).await.expect("bob queues");
    let get = pb::GetTitleRequest { isbn: book.clone() };
    let seen = r.client.get_title(as_caller(get.clone(), "alice", &[])).await.unwrap().into_inner();
    assert_eq!((seen.holds.len(), seen.holds[0].member_id.as_str()), (1, ""));
    let seen = r.client.get_title(as_caller(get, "bob", &[])).await.unwrap().into_inner();
    assert_eq!(seen.holds[0].member_id, "bob");
    assert_eq!(seen.holds[0].state, pb::HoldState::ReadyForPickup as i32);
}

on_every_backend!(members_act_for_themselves_and_staff_for_anyone);
