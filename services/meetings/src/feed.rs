//! The per-replica fan-out of a meeting's events: one follower of the meeting's event log
//! per replica (scan, then the store's watch), broadcast to every stream of that meeting the
//! replica serves. A hundred participants on a replica cost one watch on the store, not a
//! hundred.
//!
//! The broadcast is only a hint of what to send next: each stream keeps its own next
//! sequence, skips what it has sent, and when the broadcast skips ahead (it started after the
//! stream's position, or the stream lagged behind a full channel) it reads the missing
//! events from the log itself. So a stream never misses or repeats an event whatever the
//! timing (see [`crate::stream`]). A follower stops when its meeting ends or when no stream
//! listens any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::{Event, EventLog};
use meshwork_proto::pb::meetings::v1 as pb;
use prost::Message;
use tokio::sync::broadcast;

/// Events buffered per meeting for slow streams before they fall back to reading the log.
const CAPACITY: usize = 1024;

/// How often an idle follower checks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(5);

type Senders = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>>;

/// The followers of this replica, by meeting. Cheap to clone.
#[derive(Clone, Default)]
pub struct Feeds {
    senders: Senders,
}

/// Whether an event is a meeting's ENDED (its last).
pub fn is_end(event: &Event) -> bool {
    pb::MeetingEvent::decode(event.payload.as_slice()).is_ok_and(|e| e.r#type == pb::EventType::Ended as i32)
}

impl Feeds {
    /// Returns a receiver of the meeting's events from about now on, starting the meeting's
    /// follower on this replica if none runs.
    pub fn subscribe(&self, meeting_id: &str, log: &EventLog) -> broadcast::Receiver<Arc<Event>> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = senders.get(meeting_id) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(CAPACITY);
        senders.insert(meeting_id.to_string(), tx.clone());
        tokio::spawn(follow(self.senders.clone(), meeting_id.to_string(), log.clone(), tx));
        rx
    }

    /// Returns how many meetings this replica follows now.
    pub fn followed(&self) -> usize {
        self.senders.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Removes `tx`'s entry (only if it is still the meeting's current one).
fn retire(senders: &Senders, meeting_id: &str, tx: &broadcast::Sender<Arc<Event>>) {
    let mut map = senders.lock().unwrap_or_else(|p| p.into_inner());
    if map.get(meeting_id).is_some_and(|t| t.same_channel(tx)) {
        map.remove(meeting_id);
    }
}

async fn follow(senders: Senders, meeting_id: String, log: EventLog, tx: broadcast::Sender<Arc<Event>>) {
    // Streams fill anything before this from the log themselves.
    let from = match log.head().await {
        Ok(head) => head + 1,
        Err(e) => {
            tracing::warn!(error = %e, meeting_id = %meeting_id, "meeting feed cannot read its head");
            retire(&senders, &meeting_id, &tx);
            return;
        }
    };
    let mut events = log.follow(from);
    let mut idle = tokio::time::interval(IDLE_CHECK);
    idle.tick().await;
    loop {
        tokio::select! {
            next = events.next() => match next {
                Some(Ok(event)) => {
                    let end = is_end(&event);
                    let _ = tx.send(Arc::new(event));
                    if end {
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, meeting_id = %meeting_id, "meeting feed stopped");
                    break;
                }
                None => break,
            },
            _ = idle.tick() => {
                // Under the lock `subscribe` takes, so no one subscribes in between.
                let mut map = senders.lock().unwrap_or_else(|p| p.into_inner());
                if tx.receiver_count() == 0 {
                    if map.get(&meeting_id).is_some_and(|t| t.same_channel(&tx)) {
                        map.remove(&meeting_id);
                    }
                    return;
                }
            }
        }
    }
    retire(&senders, &meeting_id, &tx);
}
