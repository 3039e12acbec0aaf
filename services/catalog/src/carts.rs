//! The cart operations over the store. A cart is one key (`catalog/carts/<user_id>`), changed
//! by read-modify-write transactions ([`transact_with`]): concurrent changes of one cart retry, so
//! 50 concurrent AddItem of one sku add up exactly. The product is read in the same
//! transaction, so a line never snapshots a price that was already replaced when it committed.
//! A caller acting on another user's cart needs the `admin` role.

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::caller::Caller;
use meshwork_common::record::Record;
use meshwork_common::{Clock, ServiceError, ServiceResult};
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_storage::{DynStore, RetryPolicy, Txn, transact_with};

use crate::cart;
use crate::keys;
use crate::model::{CartRecord, ProductRecord};
use crate::validate;

/// Retries of a cart transaction: a cart is one hot key when many requests of one user race,
/// so more attempts than the default.
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 200,
    initial_backoff: Duration::from_millis(1),
    max_backoff: Duration::from_millis(50),
};

/// The carts on a store.
pub struct Carts {
    store: DynStore,
    clock: Arc<dyn Clock>,
}

/// Checks that `caller` (if any: anonymous calls are allowed) may act on `user_id`'s cart.
pub fn may_use(caller: Option<&Caller>, user_id: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if c.subject != user_id && !c.is_admin() => Err(ServiceError::PermissionDenied(format!(
            "only {:?} or a caller with role \"admin\" may use this cart",
            user_id
        ))),
        _ => Ok(()),
    }
}

/// Reads `user_id`'s cart through `tx` (an empty one at version 0 when there is none).
async fn read_cart(tx: &Txn, user_id: &str) -> ServiceResult<CartRecord> {
    match tx.get(&keys::cart(user_id)).await? {
        Some(found) => CartRecord::decode(&found.value).map_err(Into::into),
        None => Ok(CartRecord { user_id: user_id.to_string(), ..CartRecord::default() }),
    }
}

/// Reads a product through `tx`: NOT_FOUND when unknown.
async fn read_product(tx: &Txn, sku: &str) -> ServiceResult<ProductRecord> {
    match tx.get(&keys::product(sku)).await? {
        Some(found) => ProductRecord::decode(&found.value).map_err(Into::into),
        None => Err(ServiceError::not_found(format!("product {sku:?}"))),
    }
}

impl Carts {
    /// Returns the carts on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        Carts { store, clock }
    }

    /// Runs `change` on `user_id`'s cart in one transaction and returns the changed cart.
    async fn change<F>(&self, user_id: &str, product_sku: Option<&str>, change: F) -> ServiceResult<pb::Cart>
    where
        F: Fn(&mut CartRecord, Option<&ProductRecord>, i64) -> ServiceResult<bool> + Sync,
    {
        let change = &change;
        transact_with(&self.store, RETRY, |tx| {
            Box::pin(async move {
                let product = match product_sku {
                    Some(sku) => Some(read_product(&tx, sku).await?),
                    None => None,
                };
                let mut cart = read_cart(&tx, user_id).await?;
                if change(&mut cart, product.as_ref(), self.clock.now_ms())? {
                    tx.put(keys::cart(user_id), cart.encode()?);
                }
                Ok(cart.to_proto())
            })
        })
        .await
    }

    /// AddItem.
    pub async fn add_item(&self, req: pb::AddItemRequest, caller: Option<&Caller>) -> ServiceResult<pb::Cart> {
        validate::add_item(&req)?;
        may_use(caller, &req.user_id)?;
        self.change(&req.user_id, Some(&req.sku), |cart, product, now| {
            let product = product.ok_or_else(|| ServiceError::Internal("product not read".into()))?;
            cart::add(cart, product, req.quantity, now).map(|()| true)
        })
        .await
    }

    /// UpdateItem.
    pub async fn update_item(&self, req: pb::UpdateItemRequest, caller: Option<&Caller>) -> ServiceResult<pb::Cart> {
        validate::update_item(&req)?;
        may_use(caller, &req.user_id)?;
        self.change(&req.user_id, Some(&req.sku), |cart, product, now| {
            let product = product.ok_or_else(|| ServiceError::Internal("product not read".into()))?;
            cart::set_quantity(cart, product, req.quantity, now).map(|()| true)
        })
        .await
    }

    /// RemoveItem (the product itself is not needed: an archived one can be removed).
    pub async fn remove_item(&self, req: pb::RemoveItemRequest, caller: Option<&Caller>) -> ServiceResult<pb::Cart> {
        validate::remove_item(&req)?;
        may_use(caller, &req.user_id)?;
        self.change(&req.user_id, None, |cart, _, now| cart::remove(cart, &req.sku, now).map(|()| true)).await
    }

    /// ClearCart.
    pub async fn clear(&self, req: pb::ClearCartRequest, caller: Option<&Caller>) -> ServiceResult<pb::Cart> {
        validate::clear_cart(&req)?;
        may_use(caller, &req.user_id)?;
        self.change(&req.user_id, None, |cart, _, now| cart::clear(cart, req.expected_version, now)).await
    }

    /// GetCart (an empty cart when the user has none).
    pub async fn get(&self, req: pb::GetCartRequest, caller: Option<&Caller>) -> ServiceResult<pb::Cart> {
        validate::get_cart(&req)?;
        may_use(caller, &req.user_id)?;
        Ok(self.record(&req.user_id).await?.to_proto())
    }

    /// Returns `user_id`'s cart record (empty at version 0 when there is none): for checkout.
    pub async fn record(&self, user_id: &str) -> ServiceResult<CartRecord> {
        match self.store.get(&keys::cart(user_id)).await? {
            Some(found) => CartRecord::decode(&found.value).map_err(Into::into),
            None => Ok(CartRecord { user_id: user_id.to_string(), ..CartRecord::default() }),
        }
    }
}
