//! Field rules of every library request, one function per request: each answers
//! INVALID_ARGUMENT naming the field and the reason, before anything touches the store, and
//! returns the request's parsed form (ISBNs normalised to ISBN-13).

use meshwork_common::fields;
use meshwork_common::idempotency::validate_request_id;
use meshwork_common::paging::{self, PageToken};
use meshwork_common::{ServiceError, ServiceResult};
use meshwork_proto::pb::library::v1 as pb;

use crate::isbn;
use crate::model::MemberType;

/// Most characters of a title.
pub const MAX_TITLE_CHARS: usize = 300;
/// Most authors of a title.
pub const MAX_AUTHORS: usize = 20;
/// Most subjects of a title.
pub const MAX_SUBJECTS: usize = 30;
/// Highest replacement cost, in minor units.
pub const MAX_REPLACEMENT_COST: i64 = 10_000_000;
/// Largest payment, in minor units.
pub const MAX_PAYMENT: i64 = 10_000_000_000;
/// Most characters of a search query.
pub const MAX_QUERY_CHARS: usize = 500;
/// Default and largest search page.
pub const DEFAULT_SEARCH_PAGE: usize = 20;
pub const MAX_SEARCH_PAGE: usize = 100;
/// Deepest hit a search pages to.
pub const MAX_SEARCH_WINDOW: usize = 1_000;

/// Returns the ISBN-13 of `value`, or INVALID_ARGUMENT on `field`.
pub fn isbn(field: &str, value: &str) -> ServiceResult<String> {
    isbn::normalize(value).map_err(|e| ServiceError::invalid(field, e.to_string()))
}

/// Checks a barcode: `[A-Z0-9-]{3,40}`.
pub fn barcode(field: &str, value: &str) -> ServiceResult<()> {
    fields::sku(field, value)
}

/// Checks a member id: 1-64 characters of `[A-Za-z0-9._-]`.
pub fn member_id(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if value.len() > 64 || !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(ServiceError::invalid(field, "must be 1-64 characters of [A-Za-z0-9._-]"));
    }
    Ok(())
}

/// Checks one line of text: required, at most `max` characters, no control characters.
fn line(field: &str, value: &str, max: usize) -> ServiceResult<()> {
    fields::text(field, value, max, true)?;
    if value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a list of lines: between `min` and `max` items, each a [`line`] of `max_chars`.
fn lines(field: &str, values: &[String], min: usize, max: usize, max_chars: usize) -> ServiceResult<()> {
    if values.len() < min {
        return Err(ServiceError::invalid(field, format!("at least {min} required")));
    }
    if values.len() > max {
        return Err(ServiceError::invalid(field, format!("at most {max} items")));
    }
    for (i, value) in values.iter().enumerate() {
        line(&format!("{field}[{i}]"), value, max_chars)?;
    }
    Ok(())
}

/// Checks that `currency` is the library's.
fn library_currency(field: &str, value: &str, expected: &str) -> ServiceResult<()> {
    fields::currency(field, value)?;
    if value != expected {
        return Err(ServiceError::invalid(field, format!("must be the library's currency, {expected}")));
    }
    Ok(())
}

/// A title to add.
#[derive(Debug, Clone)]
pub struct TitleInput {
    pub isbn: String,
    pub title: String,
    pub authors: Vec<String>,
    pub subjects: Vec<String>,
}

/// AddTitle.
pub fn add_title(req: &pb::AddTitleRequest) -> ServiceResult<TitleInput> {
    validate_request_id(&req.request_id)?;
    let Some(t) = &req.title else {
        return Err(ServiceError::invalid("title", "required"));
    };
    let isbn = isbn("title.isbn", &t.isbn)?;
    line("title.title", &t.title, MAX_TITLE_CHARS)?;
    lines("title.authors", &t.authors, 1, MAX_AUTHORS, 200)?;
    lines("title.subjects", &t.subjects, 0, MAX_SUBJECTS, 100)?;
    Ok(TitleInput {
        isbn,
        title: t.title.trim().to_string(),
        authors: t.authors.iter().map(|a| a.trim().to_string()).collect(),
        subjects: t.subjects.iter().map(|s| s.trim().to_string()).collect(),
    })
}

/// A copy to add.
#[derive(Debug, Clone)]
pub struct CopyInput {
    pub barcode: String,
    pub isbn: String,
    pub branch: String,
    pub replacement_cost_minor: i64,
    pub currency: String,
}

/// AddCopy, in a library keeping its money in `currency`.
pub fn add_copy(req: &pb::AddCopyRequest, currency: &str) -> ServiceResult<CopyInput> {
    validate_request_id(&req.request_id)?;
    let Some(c) = &req.copy else {
        return Err(ServiceError::invalid("copy", "required"));
    };
    barcode("copy.barcode", &c.barcode)?;
    let isbn = isbn("copy.isbn", &c.isbn)?;
    if c.branch.is_empty() {
        return Err(ServiceError::invalid("copy.branch", "required"));
    }
    if c.branch.len() > 40 || !c.branch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(ServiceError::invalid("copy.branch", "must match [a-z0-9-]{1,40}"));
    }
    if !(1..=MAX_REPLACEMENT_COST).contains(&c.replacement_cost_minor) {
        return Err(ServiceError::invalid(
            "copy.replacement_cost_minor",
            format!("must be 1 to {MAX_REPLACEMENT_COST} minor units"),
        ));
    }
    library_currency("copy.currency", &c.currency, currency)?;
    Ok(CopyInput {
        barcode: c.barcode.clone(),
        isbn,
        branch: c.branch.clone(),
        replacement_cost_minor: c.replacement_cost_minor,
        currency: c.currency.clone(),
    })
}

/// A member to register.
#[derive(Debug, Clone)]
pub struct MemberInput {
    pub member_id: String,
    pub name: String,
    pub member_type: MemberType,
}

/// RegisterMember.
pub fn register_member(req: &pb::RegisterMemberRequest) -> ServiceResult<MemberInput> {
    validate_request_id(&req.request_id)?;
    let Some(m) = &req.member else {
        return Err(ServiceError::invalid("member", "required"));
    };
    member_id("member.member_id", &m.member_id)?;
    line("member.name", &m.name, 200)?;
    let member_type = MemberType::from_proto(m.r#type)
        .ok_or_else(|| ServiceError::invalid("member.type", "must be STUDENT, ADULT or STAFF"))?;
    Ok(MemberInput { member_id: m.member_id.clone(), name: m.name.trim().to_string(), member_type })
}

/// GetTitle: the ISBN-13.
pub fn get_title(req: &pb::GetTitleRequest) -> ServiceResult<String> {
    isbn("isbn", &req.isbn)
}

/// GetCopy.
pub fn get_copy(req: &pb::GetCopyRequest) -> ServiceResult<()> {
    barcode("barcode", &req.barcode)
}

/// A validated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParams {
    pub query: String,
    pub page_size: usize,
    /// Hits to skip (from the page token).
    pub offset: usize,
    /// The query's fingerprint, for the next page token.
    pub fingerprint: u32,
}

/// SearchCatalog.
pub fn search_catalog(req: &pb::SearchCatalogRequest) -> ServiceResult<SearchParams> {
    if req.query.chars().count() > MAX_QUERY_CHARS {
        return Err(ServiceError::invalid("query", format!("at most {MAX_QUERY_CHARS} characters")));
    }
    if req.query.chars().any(char::is_control) {
        return Err(ServiceError::invalid("query", "must not contain control characters"));
    }
    let page_size = fields::page_size_within("page_size", req.page_size, DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE)?;
    let fingerprint = paging::fingerprint(&[req.query.as_bytes()]);
    let offset = match PageToken::decode(&req.page_token, fingerprint)? {
        None => 0,
        Some(token) => {
            let bytes: [u8; 8] = token
                .resume_key
                .as_slice()
                .try_into()
                .map_err(|_| ServiceError::invalid("page_token", "is not a token returned by this query"))?;
            let offset = u64::from_be_bytes(bytes);
            if offset >= MAX_SEARCH_WINDOW as u64 {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            offset as usize
        }
    };
    Ok(SearchParams { query: req.query.clone(), page_size, offset, fingerprint })
}

/// Checkout.
pub fn checkout(req: &pb::CheckoutRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    member_id("member_id", &req.member_id)?;
    barcode("barcode", &req.barcode)
}

/// Return.
pub fn return_copy(req: &pb::ReturnRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    barcode("barcode", &req.barcode)
}

/// Renew.
pub fn renew(req: &pb::RenewRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    member_id("member_id", &req.member_id)?;
    barcode("barcode", &req.barcode)
}

/// PlaceHold: the ISBN-13.
pub fn place_hold(req: &pb::PlaceHoldRequest) -> ServiceResult<String> {
    validate_request_id(&req.request_id)?;
    member_id("member_id", &req.member_id)?;
    isbn("isbn", &req.isbn)
}

/// CancelHold: the ISBN-13.
pub fn cancel_hold(req: &pb::CancelHoldRequest) -> ServiceResult<String> {
    member_id("member_id", &req.member_id)?;
    isbn("isbn", &req.isbn)
}

/// PayFine, in a library keeping its money in `currency`.
pub fn pay_fine(req: &pb::PayFineRequest, currency: &str) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    member_id("member_id", &req.member_id)?;
    if !(1..=MAX_PAYMENT).contains(&req.amount_minor) {
        return Err(ServiceError::invalid("amount_minor", format!("must be 1 to {MAX_PAYMENT} minor units")));
    }
    library_currency("currency", &req.currency, currency)
}

/// MemberAccount.
pub fn member_account(req: &pb::MemberAccountRequest) -> ServiceResult<()> {
    member_id("member_id", &req.member_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<T: std::fmt::Debug>(r: ServiceResult<T>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn titles_are_checked_field_by_field() {
        let good = pb::Title {
            isbn: "0-306-40615-2".into(),
            title: "Data".into(),
            authors: vec!["Ada".into()],
            ..Default::default()
        };
        let req = |t: pb::Title| pb::AddTitleRequest { request_id: "r1".into(), title: Some(t) };
        assert_eq!(add_title(&req(good.clone())).unwrap().isbn, "9780306406157");
        assert_eq!(field(add_title(&req(pb::Title { isbn: "123".into(), ..good.clone() }))), "title.isbn");
        assert_eq!(field(add_title(&req(pb::Title { authors: vec![], ..good.clone() }))), "title.authors");
        let blank_author = pb::Title { authors: vec!["Ada".into(), " ".into()], ..good.clone() };
        assert_eq!(field(add_title(&req(blank_author))), "title.authors[1]");
        assert_eq!(
            field(add_title(&pb::AddTitleRequest { request_id: String::new(), title: Some(good) })),
            "request_id"
        );
    }

    #[test]
    fn member_ids_and_payments() {
        assert!(member_id("m", "card-1.a_B").is_ok());
        assert_eq!(field(member_id("m", "a/b")), "m");
        assert_eq!(field(member_id("m", &"a".repeat(65))), "m");
        let pay = |amount: i64, currency: &str| pb::PayFineRequest {
            request_id: "r".into(),
            member_id: "m".into(),
            amount_minor: amount,
            currency: currency.into(),
        };
        assert!(pay_fine(&pay(5, "USD"), "USD").is_ok());
        assert_eq!(field(pay_fine(&pay(0, "USD"), "USD")), "amount_minor");
        assert_eq!(field(pay_fine(&pay(5, "EUR"), "USD")), "currency");
    }
}
