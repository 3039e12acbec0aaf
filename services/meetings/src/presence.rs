//! Presence: who still has a stream open, and the sweeper that marks LEFT whoever has had
//! none for more than 60 s, across replicas.
//!
//! How it works: a participant's presence record (`<root>/m/<id>/presence/<user>`) says either
//! "a stream is open on replica R (stream S)" or "no stream since T". Opening a stream writes
//! the first; closing it (the client went away, the connection broke) writes the second,
//! unless a newer stream of the same participant took over meanwhile (checked by S). Joining
//! writes "no stream since now", so a participant has 60 s to open a stream. A replica that
//! dies cannot write "closed", so every replica also writes a heartbeat
//! (`<root>/replicas/<R>`) every sweep interval, and a stream held by a replica whose
//! heartbeat is more than 60 s old counts as closed since that heartbeat.
//!
//! Every replica sweeps every interval (ctx.clock's time; tests move a `ManualClock`): for each
//! meeting not ended (`<root>/live/`), each presence record that is gone by
//! [`rules::gone`] is re-read in a transaction with the participant and the meeting, and the
//! participant is marked LEFT ("connection lost") with its event. Two replicas sweeping the same
//! participant conflict on the presence record (deleted by the sweep) or the meeting's log
//! head: one marks it, the other finds it gone already. A stream that reopens at the same
//! moment conflicts the same way, and either wins cleanly. Cost: one scan of the live list
//! and one of each live meeting's presence records per replica per interval.

use std::collections::HashMap;
use std::sync::Arc;

use meshwork_common::{Record, ServiceResult};
use meshwork_storage::{Direction, KeyRange, scan_all, transact};

use crate::keys;
use crate::model::{PresenceRecord, ReplicaRecord};
use crate::rules;
use crate::service::Meetings;

/// How old a replica's heartbeat is when its record is deleted.
const DEAD_REPLICA_MS: i64 = 24 * 3600 * 1000;

/// Records that the stream `stream` of `user` closed (now), unless another one replaced it.
pub async fn close(meetings: &Meetings, meeting_id: &str, user: &str, stream: &str) -> ServiceResult<()> {
    let key = meetings.keys.presence(meeting_id, user);
    let key = &key;
    transact(&meetings.store, |tx| {
        Box::pin(async move {
            let Some(found) = tx.get(key).await? else { return Ok(()) };
            let record = PresenceRecord::decode(&found.value)?;
            if !record.connected || record.stream != stream {
                return Ok(());
            }
            let closed = PresenceRecord {
                replica: String::new(),
                stream: String::new(),
                connected: false,
                since_ms: meetings.clock.now_ms(),
            };
            tx.put(key.clone(), closed.encode()?);
            Ok(())
        })
    })
    .await
}

/// Writes this replica's heartbeat.
pub async fn heartbeat(meetings: &Meetings) -> ServiceResult<()> {
    let record = ReplicaRecord { beat_ms: meetings.clock.now_ms() };
    let key = meetings.keys.replica(&meetings.config.replica_id);
    meetings.store.write(vec![], vec![meshwork_storage::Mutation::put(key, record.encode()?)]).await?;
    Ok(())
}

/// One sweep: marks LEFT every participant gone by [`rules::gone`]; returns how many.
pub async fn sweep(meetings: &Meetings) -> ServiceResult<usize> {
    let now = meetings.clock.now_ms();
    let beats = replica_beats(meetings).await?;
    let own = meetings.config.replica_id.as_str();
    let live = scan_all(&meetings.store, KeyRange::prefix(meetings.keys.live_prefix()), Direction::Forward).await?;
    let mut marked = 0;
    for entry in &live {
        let Some(meeting_id) = meetings.keys.meeting_of_live(&entry.key) else { continue };
        let prefix = meetings.keys.presences(meeting_id);
        let records = scan_all(&meetings.store, KeyRange::prefix(prefix.clone()), Direction::Forward).await?;
        for record in &records {
            let presence = PresenceRecord::decode(&record.value)?;
            if !rules::gone(&presence, own, beats.get(&presence.replica).copied(), now) {
                continue;
            }
            let Some(user) = std::str::from_utf8(&record.key[prefix.len()..]).ok().map(keys::unescape) else {
                continue;
            };
            if mark_left(meetings, meeting_id, &user, &beats).await? {
                marked += 1;
            }
        }
    }
    Ok(marked)
}

/// Every replica's last heartbeat.
async fn replica_beats(meetings: &Meetings) -> ServiceResult<HashMap<String, i64>> {
    let prefix = meetings.keys.replica("");
    let entries = scan_all(&meetings.store, KeyRange::prefix(prefix.clone()), Direction::Forward).await?;
    let mut beats = HashMap::new();
    let mut dead = Vec::new();
    let cutoff = meetings.clock.now_ms().saturating_sub(DEAD_REPLICA_MS);
    for e in entries {
        if let (Ok(id), Ok(r)) = (std::str::from_utf8(&e.key[prefix.len()..]), ReplicaRecord::decode(&e.value)) {
            if r.beat_ms < cutoff {
                dead.push(meshwork_storage::Mutation::delete(e.key.clone()));
            }
            beats.insert(id.to_string(), r.beat_ms);
        }
    }
    // The heartbeats of replicas gone for a day: their streams were judged long ago.
    for batch in dead.chunks(100) {
        meetings.store.write(vec![], batch.to_vec()).await?;
    }
    Ok(beats)
}

/// Marks `user` LEFT if its presence is still gone when re-read in the leave's transaction.
async fn mark_left(
    meetings: &Meetings,
    meeting_id: &str,
    user: &str,
    beats: &HashMap<String, i64>,
) -> ServiceResult<bool> {
    let own = meetings.config.replica_id.as_str();
    let is_gone =
        |presence: &PresenceRecord, now: i64| rules::gone(presence, own, beats.get(&presence.replica).copied(), now);
    meetings.leave_gone(meeting_id, user, &is_gone).await
}

/// The sweeper task: heartbeat and sweep every interval, forever.
pub async fn run(meetings: Arc<Meetings>) {
    let mut every = tokio::time::interval(meetings.sweep_interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = heartbeat(&meetings).await {
            tracing::warn!(error = %e, "meetings heartbeat failed");
        }
        match sweep(&meetings).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(marked = n, "participants without a stream for 60 s marked left"),
            Err(e) => tracing::warn!(error = %e, "meetings presence sweep failed"),
        }
    }
}
