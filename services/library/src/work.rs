//! The records one circulation transaction works on ([`Work`]: each read once through the
//! [`Txn`], changed in memory, written back in the same commit) and the moves of a title's
//! holds queue over them: a copy coming back goes to the first waiting hold or to the shelf
//! ([`Work::hand_on`]), a hold leaves the queue ([`Work::remove_hold`]), and missed pickups pass
//! their copies on ([`Work::expire_pickups`]). The service's operations ([`crate::service`])
//! are built from these, so every path keeps the rule that no copy is on the shelf while a
//! hold of its title waits.

use std::collections::{BTreeMap, BTreeSet};

use meshwork_common::record::Record;
use meshwork_common::{ServiceError, ServiceResult};
use meshwork_storage::Txn;

use crate::keys::Keys;
use crate::model::{CopyRecord, CopyStatus, MemberRecord, TitleRecord};
use crate::policy::{DAY_MS, PICKUP_DAYS};

/// Most missed pickups one transaction settles: each costs about six store operations (the
/// member and the copy read and written, two deadline entries), within etcd's 128 per
/// transaction with room for the call's own.
const MAX_EXPIRED_PER_TXN: usize = 8;

/// Returns the NOT_FOUND of a copy.
pub(crate) fn copy_not_found(barcode: &str) -> ServiceError {
    ServiceError::not_found(format!("copy {barcode:?}"))
}

/// Returns the NOT_FOUND of a member.
pub(crate) fn member_not_found(member_id: &str) -> ServiceError {
    ServiceError::not_found(format!("member {member_id:?}"))
}

/// Returns the NOT_FOUND of a title.
pub(crate) fn title_not_found(isbn: &str) -> ServiceError {
    ServiceError::not_found(format!("title {isbn}"))
}

/// Returns the INTERNAL error of a copy whose title is missing (a bug or corrupted data).
pub(crate) fn orphan_copy(copy: &CopyRecord) -> ServiceError {
    ServiceError::Internal(format!("copy {:?} names title {} which is not catalogued", copy.barcode, copy.isbn))
}

/// The records one transaction works on: read once through the [`Txn`], changed in memory,
/// written back by [`Work::flush`].
pub(crate) struct Work {
    tx: Txn,
    keys: Keys,
    titles: BTreeMap<String, TitleRecord>,
    copies: BTreeMap<String, CopyRecord>,
    members: BTreeMap<String, MemberRecord>,
    dirty_titles: BTreeSet<String>,
    dirty_copies: BTreeSet<String>,
    dirty_members: BTreeSet<String>,
}

impl Work {
    pub(crate) fn new(tx: Txn, keys: Keys) -> Self {
        Work {
            tx,
            keys,
            titles: BTreeMap::new(),
            copies: BTreeMap::new(),
            members: BTreeMap::new(),
            dirty_titles: BTreeSet::new(),
            dirty_copies: BTreeSet::new(),
            dirty_members: BTreeSet::new(),
        }
    }

    pub(crate) async fn title(&mut self, isbn: &str) -> ServiceResult<Option<TitleRecord>> {
        if let Some(t) = self.titles.get(isbn) {
            return Ok(Some(t.clone()));
        }
        let Some(found) = self.tx.get(&self.keys.title(isbn)).await? else { return Ok(None) };
        let record = TitleRecord::decode(&found.value)?;
        self.titles.insert(isbn.to_string(), record.clone());
        Ok(Some(record))
    }

    pub(crate) async fn copy(&mut self, barcode: &str) -> ServiceResult<Option<CopyRecord>> {
        if let Some(c) = self.copies.get(barcode) {
            return Ok(Some(c.clone()));
        }
        let Some(found) = self.tx.get(&self.keys.copy(barcode)).await? else { return Ok(None) };
        let record = CopyRecord::decode(&found.value)?;
        self.copies.insert(barcode.to_string(), record.clone());
        Ok(Some(record))
    }

    pub(crate) async fn member(&mut self, member_id: &str) -> ServiceResult<Option<MemberRecord>> {
        if let Some(m) = self.members.get(member_id) {
            return Ok(Some(m.clone()));
        }
        let Some(found) = self.tx.get(&self.keys.member(member_id)).await? else { return Ok(None) };
        let record = MemberRecord::decode(&found.value)?;
        self.members.insert(member_id.to_string(), record.clone());
        Ok(Some(record))
    }

    pub(crate) fn put_title(&mut self, record: TitleRecord) {
        self.dirty_titles.insert(record.isbn.clone());
        self.titles.insert(record.isbn.clone(), record);
    }

    pub(crate) fn put_copy(&mut self, record: CopyRecord) {
        self.dirty_copies.insert(record.barcode.clone());
        self.copies.insert(record.barcode.clone(), record);
    }

    pub(crate) fn put_member(&mut self, record: MemberRecord) {
        self.dirty_members.insert(record.member_id.clone());
        self.members.insert(record.member_id.clone(), record);
    }

    /// Buffers every changed record in the transaction.
    pub(crate) fn flush(&self) -> ServiceResult<()> {
        for isbn in &self.dirty_titles {
            if let Some(r) = self.titles.get(isbn) {
                self.tx.put(self.keys.title(isbn), r.encode()?);
            }
        }
        for barcode in &self.dirty_copies {
            if let Some(r) = self.copies.get(barcode) {
                self.tx.put(self.keys.copy(barcode), r.encode()?);
            }
        }
        for id in &self.dirty_members {
            if let Some(r) = self.members.get(id) {
                self.tx.put(self.keys.member(id), r.encode()?);
            }
        }
        Ok(())
    }

    /// Hands `barcode` (coming back into circulation) to the first waiting hold of `title`,
    /// set aside until a pickup deadline, or puts it on the shelf.
    pub(crate) async fn hand_on(&mut self, title: &mut TitleRecord, barcode: &str, now: i64) -> ServiceResult<()> {
        let mut copy = self.copy(barcode).await?.ok_or_else(|| copy_not_found(barcode))?;
        copy.clear_circulation();
        title.shelf.retain(|b| b != barcode);
        match title.holds.iter_mut().find(|h| h.is_waiting()) {
            Some(hold) => {
                let deadline = now.saturating_add(PICKUP_DAYS * DAY_MS);
                hold.barcode = Some(barcode.to_string());
                hold.pickup_deadline_ms = deadline;
                copy.status = CopyStatus::OnHoldShelf;
                copy.hold_for = hold.member_id.clone();
                copy.pickup_deadline_ms = deadline;
                self.tx.put(self.keys.pickup(deadline, &title.isbn, &hold.member_id), Vec::new());
            }
            None => {
                copy.status = CopyStatus::Available;
                title.shelf.push(barcode.to_string());
            }
        }
        self.put_copy(copy);
        Ok(())
    }

    /// Removes the hold at `index` of `title`'s queue (and from its member's list); a copy set
    /// aside for it passes on when `pass_on`, and is returned.
    pub(crate) async fn remove_hold(
        &mut self,
        title: &mut TitleRecord,
        index: usize,
        now: i64,
        pass_on: bool,
    ) -> ServiceResult<Option<String>> {
        let hold = title.holds.remove(index);
        if let Some(mut member) = self.member(&hold.member_id).await? {
            member.holds.retain(|isbn| *isbn != title.isbn);
            self.put_member(member);
        }
        let Some(barcode) = hold.barcode else { return Ok(None) };
        self.tx.delete(self.keys.pickup(hold.pickup_deadline_ms, &title.isbn, &hold.member_id));
        if pass_on {
            self.hand_on(title, &barcode, now).await?;
        }
        Ok(Some(barcode))
    }

    /// Passes on the copies whose pickup deadline has come (a bounded number per call).
    /// Returns how many holds it expired.
    pub(crate) async fn expire_pickups(&mut self, title: &mut TitleRecord, now: i64) -> ServiceResult<usize> {
        let mut expired = 0;
        while expired < MAX_EXPIRED_PER_TXN {
            let Some(index) = title.holds.iter().position(|h| !h.is_waiting() && h.pickup_deadline_ms <= now) else {
                break;
            };
            tracing::debug!(isbn = %title.isbn, member = %title.holds[index].member_id, "pickup missed; passing the copy on");
            self.remove_hold(title, index, now, true).await?;
            expired += 1;
        }
        Ok(expired)
    }
}

/// Returns whether `title` has a copy set aside past its pickup deadline at `now`.
pub(crate) fn has_due_pickup(title: &TitleRecord, now: i64) -> bool {
    title.holds.iter().any(|h| !h.is_waiting() && h.pickup_deadline_ms <= now)
}
