//! Reading a whole key range across pages. [`Store::scan`] returns at most
//! [`MAX_SCAN_LIMIT`](crate::MAX_SCAN_LIMIT) entries and a continuation key; [`scan_all`]
//! follows the continuations into one `Vec` (for ranges known to be small), [`scan_stream`]
//! yields the entries page by page as a stream (for large ranges: memory stays one page).
//! Each page is its own read, so a range changed while it is being read is not one snapshot:
//! every key present for the whole read is seen exactly once, in order.

use std::ops::Bound;

use futures::stream::{self, BoxStream, StreamExt};

use crate::{Direction, DynStore, Entry, KeyRange, Result};

/// Entries asked for per page by the helpers of this module.
pub const SCAN_PAGE: usize = 1_000;

/// Returns the range that continues `range` from `next` (a [`Page::next`](crate::Page::next)
/// key) in `direction`.
fn continue_from(mut range: KeyRange, next: Vec<u8>, direction: Direction) -> KeyRange {
    match direction {
        Direction::Forward => range.start = Bound::Included(next),
        Direction::Reverse => range.end = Bound::Included(next),
    }
    range
}

/// Returns every entry of `range` in `direction` order, reading it page by page.
pub async fn scan_all(store: &DynStore, range: KeyRange, direction: Direction) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut range = range;
    loop {
        let page = store.scan(range.clone(), SCAN_PAGE, direction).await?;
        out.extend(page.entries);
        match page.next {
            Some(next) => range = continue_from(range, next, direction),
            None => return Ok(out),
        }
    }
}

/// Returns a stream of every entry of `range` in `direction` order, reading one page of
/// `page_size` entries (0 = [`SCAN_PAGE`]) at a time as the stream is consumed. A failed page
/// read is yielded as an error and ends the stream.
pub fn scan_stream(
    store: DynStore,
    range: KeyRange,
    direction: Direction,
    page_size: usize,
) -> BoxStream<'static, Result<Entry>> {
    let page_size = if page_size == 0 { SCAN_PAGE } else { page_size };
    // State: the range still to read (None once exhausted or failed).
    let pages = stream::unfold(Some(range), move |state| {
        let store = store.clone();
        async move {
            let range = state?;
            match store.scan(range.clone(), page_size, direction).await {
                Ok(page) => {
                    let rest = page.next.map(|next| continue_from(range, next, direction));
                    let entries: Vec<Result<Entry>> = page.entries.into_iter().map(Ok).collect();
                    Some((stream::iter(entries), rest))
                }
                Err(e) => Some((stream::iter(vec![Err(e)]), None)),
            }
        }
    });
    pages.flatten().boxed()
}
