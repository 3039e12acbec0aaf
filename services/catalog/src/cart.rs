//! The cart's rules, pure and unit-tested: one line per sku (adding more adds to it), 1-999
//! units per line, one currency per cart, at most [`MAX_LINES`] lines; the price and title are
//! snapshot when a line is added or its quantity set. `carts` runs them inside a store
//! transaction.

use meshwork_common::{ServiceError, ServiceResult};

use crate::model::{CartLine, CartRecord, ProductRecord};

/// Most units of one sku in a cart.
pub const MAX_QUANTITY: i64 = 999;
/// Most lines in one cart.
pub const MAX_LINES: usize = 100;

/// Checks that `product` may go into `cart` (sold, same currency).
fn check_product(cart: &CartRecord, product: &ProductRecord) -> ServiceResult<()> {
    if !product.is_active() {
        return Err(ServiceError::FailedPrecondition(format!(
            "sku {:?} is archived and cannot be bought",
            product.sku
        )));
    }
    if !cart.currency.is_empty() && !cart.lines.is_empty() && cart.currency != product.currency {
        return Err(ServiceError::FailedPrecondition(format!(
            "sku {:?} is priced in {}, but the cart is in {}",
            product.sku, product.currency, cart.currency
        )));
    }
    Ok(())
}

/// Bumps the version and time after a change.
fn touched(cart: &mut CartRecord, now_ms: i64) {
    cart.version += 1;
    cart.update_time_ms = now_ms;
    if cart.lines.is_empty() {
        cart.currency.clear();
    }
}

/// Adds `quantity` units of `product` (a new line, or more on its line, whose price and title
/// are refreshed). A line over [`MAX_QUANTITY`] or a cart over [`MAX_LINES`] is refused.
pub fn add(cart: &mut CartRecord, product: &ProductRecord, quantity: i64, now_ms: i64) -> ServiceResult<()> {
    check_product(cart, product)?;
    if let Some(line) = cart.lines.iter_mut().find(|l| l.sku == product.sku) {
        let total = line.quantity + quantity;
        if total > MAX_QUANTITY {
            return Err(ServiceError::FailedPrecondition(format!(
                "the cart has {} of sku {:?}; adding {quantity} would exceed {MAX_QUANTITY} per line",
                line.quantity, product.sku
            )));
        }
        line.quantity = total;
        line.unit_price_minor = product.price_minor;
        line.title = product.title.clone();
    } else {
        if cart.lines.len() >= MAX_LINES {
            return Err(ServiceError::ResourceExhausted(format!("a cart holds at most {MAX_LINES} lines")));
        }
        cart.lines.push(CartLine {
            sku: product.sku.clone(),
            title: product.title.clone(),
            quantity,
            unit_price_minor: product.price_minor,
            add_time_ms: now_ms,
        });
    }
    cart.currency = product.currency.clone();
    touched(cart, now_ms);
    Ok(())
}

/// Sets the quantity of `product`'s line (NOT_FOUND when the cart has none), refreshing its
/// price snapshot.
pub fn set_quantity(cart: &mut CartRecord, product: &ProductRecord, quantity: i64, now_ms: i64) -> ServiceResult<()> {
    let Some(index) = cart.lines.iter().position(|l| l.sku == product.sku) else {
        return Err(ServiceError::not_found(format!("sku {:?} in the cart of {:?}", product.sku, cart.user_id)));
    };
    check_product(cart, product)?;
    let line = &mut cart.lines[index];
    line.quantity = quantity;
    line.unit_price_minor = product.price_minor;
    line.title = product.title.clone();
    touched(cart, now_ms);
    Ok(())
}

/// Removes the line of `sku` (NOT_FOUND when the cart has none).
pub fn remove(cart: &mut CartRecord, sku: &str, now_ms: i64) -> ServiceResult<()> {
    let before = cart.lines.len();
    cart.lines.retain(|l| l.sku != sku);
    if cart.lines.len() == before {
        return Err(ServiceError::not_found(format!("sku {sku:?} in the cart of {:?}", cart.user_id)));
    }
    touched(cart, now_ms);
    Ok(())
}

/// Empties the cart when `expected_version` (0: no check) is its version; a stale one is
/// ABORTED. Returns whether anything changed (an empty cart stays as it is).
pub fn clear(cart: &mut CartRecord, expected_version: i64, now_ms: i64) -> ServiceResult<bool> {
    if expected_version != 0 && expected_version != cart.version {
        return Err(ServiceError::Aborted(format!(
            "the cart is at version {}, not {expected_version}; read it again",
            cart.version
        )));
    }
    if cart.lines.is_empty() {
        return Ok(false);
    }
    cart.lines.clear();
    touched(cart, now_ms);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tonic::Code;

    use super::*;
    use crate::model::Status;

    fn product(sku: &str, price: i64, currency: &str, status: Status) -> ProductRecord {
        ProductRecord {
            sku: sku.into(),
            title: format!("title of {sku}"),
            description: String::new(),
            category: "c".into(),
            price_minor: price,
            currency: currency.into(),
            attributes: BTreeMap::new(),
            status,
            version: 1,
            etag: "e".into(),
            create_time_ms: 1,
            update_time_ms: 1,
        }
    }

    fn cart() -> CartRecord {
        CartRecord { user_id: "u".into(), ..CartRecord::default() }
    }

    #[test]
    fn adding_merges_lines_and_caps_them() {
        let mut c = cart();
        let a = product("AAA", 100, "USD", Status::Active);
        add(&mut c, &a, 2, 10).unwrap();
        add(&mut c, &a, 3, 11).unwrap();
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.lines[0].quantity, 5);
        assert_eq!(c.version, 2);
        assert_eq!(c.currency, "USD");
        add(&mut c, &a, 994, 12).unwrap();
        let err = add(&mut c, &a, 1, 13).unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(c.lines[0].quantity, 999);
        assert_eq!(c.version, 3);
    }

    #[test]
    fn archived_and_foreign_currency_are_refused() {
        let mut c = cart();
        add(&mut c, &product("AAA", 100, "USD", Status::Active), 1, 1).unwrap();
        let archived = add(&mut c, &product("BBB", 100, "USD", Status::Archived), 1, 2).unwrap_err();
        assert_eq!(archived.code(), Code::FailedPrecondition);
        let euro = add(&mut c, &product("CCC", 100, "EUR", Status::Active), 1, 2).unwrap_err();
        assert_eq!(euro.code(), Code::FailedPrecondition);
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.version, 1);
    }

    #[test]
    fn removing_the_last_line_forgets_the_currency() {
        let mut c = cart();
        add(&mut c, &product("AAA", 100, "USD", Status::Active), 1, 1).unwrap();
        assert_eq!(remove(&mut c, "BBB", 2).unwrap_err().code(), Code::NotFound);
        remove(&mut c, "AAA", 2).unwrap();
        assert!(c.currency.is_empty());
        add(&mut c, &product("CCC", 100, "EUR", Status::Active), 1, 3).unwrap();
        assert_eq!(c.currency, "EUR");
        assert_eq!(c.version, 3);
    }

    #[test]
    fn setting_and_clearing() {
        let mut c = cart();
        let a = product("AAA", 100, "USD", Status::Active);
        assert_eq!(set_quantity(&mut c, &a, 4, 1).unwrap_err().code(), Code::NotFound);
        add(&mut c, &a, 1, 1).unwrap();
        let dearer = product("AAA", 150, "USD", Status::Active);
        set_quantity(&mut c, &dearer, 4, 2).unwrap();
        assert_eq!((c.lines[0].quantity, c.lines[0].unit_price_minor), (4, 150));
        assert_eq!(clear(&mut c, 1, 3).unwrap_err().code(), Code::Aborted);
        assert!(clear(&mut c, 2, 3).unwrap());
        assert!(c.lines.is_empty() && c.currency.is_empty());
        assert!(!clear(&mut c, 0, 4).unwrap());
        assert_eq!(c.version, 3);
    }
}
