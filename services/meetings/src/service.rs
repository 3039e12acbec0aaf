//! The meetings service's domain operations over the Store, independent of gRPC.
//!
//! Each meeting has an event log of its own (`EventLog` named `<root>/m/<meeting_id>`), so its
//! events carry a gapless per-meeting sequence: the one order every participant sees, on every
//! replica. Every state change (meeting record, participant record) and its event are one
//! store transaction (transactional outbox), so there is no event without its change and no
//! change without its event; a meeting's whole state is in the Store and survives a restart.
//!
//! Changes to one meeting queue on a per-meeting lock inside the process (they would all
//! conflict on the log's head anyway, so queueing saves the retries); replicas sharing the
//! store still race optimistically and the loser of a conflict re-reads and retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshwork_common::caller::Caller;
use meshwork_common::fields::timestamp;
use meshwork_common::paging::{PageToken, fingerprint};
use meshwork_common::{Clock, EventLog, Fingerprint, Idempotency, Record, ServiceError, ServiceResult};
use meshwork_proto::pb::meetings::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, Txn, scan_all, transact};
use pb::EventType as E;
use prost::Message;

use crate::feed::Feeds;
use crate::keys::{Keys, ROOT};
use crate::model::{MeetingRecord, ParticipantRecord, PresenceRecord, Role, SessionRecord, Status};
use crate::rules::{self, Authority, JoinOutcome};
use crate::{access, passcode, validate, wire};

/// Tunables of the meetings service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The key root (`meetings`; tests use one of their own on the shared etcd cluster).
    pub root: String,
    /// How often each replica writes its heartbeat and sweeps participants whose stream
    /// dropped more than 60 s ago.
    pub sweep_interval: Duration,
    /// This replica's id in presence records (random by default).
    pub replica_id: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: ROOT.to_string(),
            sweep_interval: Duration::from_secs(5),
            replica_id: meshwork_common::random_id("rep_", 12),
        }
    }
}

/// A participant action (on the participant itself, or by a host on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Mute,
    Unmute,
    RaiseHand,
    LowerHand,
    StartScreenShare,
    StopScreenShare,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Mute => "mute",
            Action::Unmute => "unmute",
            Action::RaiseHand => "raise a hand",
            Action::LowerHand => "lower a hand",
            Action::StartScreenShare => "start sharing a screen",
            Action::StopScreenShare => "stop sharing a screen",
        }
    }

    /// Whether a host or co-host may do it to someone else.
    fn host_may_do_to_others(self) -> bool {
        matches!(self, Action::Mute | Action::LowerHand | Action::StopScreenShare)
    }
}

/// The answer of an operation on one participant: it, in its meeting, and the sequence of the
/// event appended (0 when nothing changed).
pub struct ParticipantAnswer {
    pub meeting: MeetingRecord,
    pub participant: ParticipantRecord,
    pub sequence: u64,
}

/// The meetings service.
pub struct Meetings {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: Keys,
    idem: Idempotency,
    pub(crate) config: Config,
    pub(crate) feeds: Feeds,
    locks: MeetingLocks,
}

/// The actor of what the service does by itself (marking a lost connection LEFT).
pub const SYSTEM: &str = "system";

/// Returns a new meeting id: `mtg_` and 20 random base62 characters.
pub fn new_meeting_id() -> String {
    meshwork_common::random_id("mtg_", 20)
}

/// The event-log type of an event (`meeting.joined`).
fn log_type(t: E) -> String {
    format!("meeting.{}", t.as_str_name().trim_start_matches("EVENT_TYPE_").to_ascii_lowercase())
}

impl Meetings {
    /// Returns the service on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        Meetings {
            idem: Idempotency::new(store.clone(), &config.root).with_clock(clock.clone()),
            keys: Keys::new(&config.root),
            feeds: Feeds::default(),
            locks: MeetingLocks::default(),
            store,
            clock,
            config,
        }
    }

    /// Returns the event log of a meeting.
    pub fn log(&self, meeting_id: &str) -> EventLog {
        EventLog::new(self.store.clone(), &self.keys.log(meeting_id)).with_clock(self.clock.clone())
    }

    /// Returns the keys of this deployment.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Buffers an event in `tx` and returns its sequence.
    async fn emit(&self, tx: &Txn, log: &EventLog, t: E, user: &str, actor: &str, text: &str) -> ServiceResult<u64> {
        let event = pb::MeetingEvent {
            sequence: 0,
            r#type: t as i32,
            time: Some(timestamp(self.clock.now_ms())),
            user_id: user.to_string(),
            actor_id: actor.to_string(),
            text: text.to_string(),
        };
        log.append(tx, &log_type(t), event.encode_to_vec()).await
    }

    async fn meeting_in(&self, tx: &Txn, meeting_id: &str) -> ServiceResult<MeetingRecord> {
        match tx.get(&self.keys.meeting(meeting_id)).await? {
            Some(v) => Ok(MeetingRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("meeting {meeting_id}"))),
        }
    }

    /// Returns the meeting, read outside any transaction.
    pub async fn meeting(&self, meeting_id: &str) -> ServiceResult<MeetingRecord> {
        match self.store.get(&self.keys.meeting(meeting_id)).await? {
            Some(v) => Ok(MeetingRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("meeting {meeting_id}"))),
        }
    }

    async fn participant_in(&self, tx: &Txn, meeting_id: &str, user: &str) -> ServiceResult<Option<ParticipantRecord>> {
        match tx.get(&self.keys.participant(meeting_id, user)).await? {
            Some(v) => Ok(Some(ParticipantRecord::decode(&v.value)?)),
            None => Ok(None),
        }
    }

    async fn existing_participant_in(
        &self,
        tx: &Txn,
        meeting_id: &str,
        user: &str,
    ) -> ServiceResult<ParticipantRecord> {
        self.participant_in(tx, meeting_id, user)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("participant {user:?} of meeting {meeting_id}")))
    }

    /// Returns a participant's record, read outside any transaction.
    pub async fn participant(&self, meeting_id: &str, user: &str) -> ServiceResult<Option<ParticipantRecord>> {
        match self.store.get(&self.keys.participant(meeting_id, user)).await? {
            Some(v) => Ok(Some(ParticipantRecord::decode(&v.value)?)),
            None => Ok(None),
        }
    }

    fn put_meeting(&self, tx: &Txn, m: &MeetingRecord) -> ServiceResult<()> {
        tx.put(self.keys.meeting(&m.meeting_id), m.encode()?);
        Ok(())
    }

    fn put_participant(&self, tx: &Txn, meeting_id: &str, p: &ParticipantRecord) -> ServiceResult<()> {
        tx.put(self.keys.participant(meeting_id, &p.user_id), p.encode()?);
        Ok(())
    }

    /// Whether a stream of `user` is open (on any replica).
    pub async fn connected(&self, meeting_id: &str, user: &str) -> bool {
        match self.store.get(&self.keys.presence(meeting_id, user)).await {
            Ok(Some(v)) => PresenceRecord::decode(&v.value).is_ok_and(|p| p.connected),
            _ => false,
        }
    }

    async fn answer(&self, a: ParticipantAnswer) -> pb::ParticipantResponse {
        let connected = self.connected(&a.meeting.meeting_id, &a.participant.user_id).await;
        pb::ParticipantResponse {
            participant: Some(wire::participant(&a.meeting, &a.participant, connected)),
            sequence: a.sequence,
        }
    }

    /// Ends `p`'s session in `m` with `status` at `now`: closes its open IN_MEETING session,
    /// and stops its screen share with a SHARE_STOPPED event (after the caller's own event).
    async fn end_session(
        &self,
        tx: &Txn,
        m: &mut MeetingRecord,
        p: &mut ParticipantRecord,
        status: Status,
        now: i64,
        actor: &str,
    ) -> ServiceResult<()> {
        if p.status == Status::InMeeting {
            m.participant_count = m.participant_count.saturating_sub(1);
            if let Some(s) = p.sessions.last_mut().filter(|s| s.leave_ms == 0) {
                s.leave_ms = now;
            }
        }
        p.status = status;
        p.leave_ms = now;
        p.hand_raised = false;
        if m.sharer == p.user_id {
            m.sharer.clear();
            let log = self.log(&m.meeting_id);
            self.emit(tx, &log, E::ShareStopped, &p.user_id, actor, "").await?;
        }
        // Nothing to sweep for someone who is gone.
        tx.delete(self.keys.presence(&m.meeting_id, &p.user_id));
        Ok(())
    }

    /// Creates a meeting; the same `request_id` with the same request answers the same one.
    pub async fn create(&self, caller: Option<&Caller>, req: &pb::CreateMeetingRequest) -> ServiceResult<pb::Meeting> {
        let now = self.clock.now_ms();
        let (start_ms, duration_ms, max) = validate::create(req, now)?;
        access::acting(caller, &req.host)?;
        // Hashed outside the transaction: PBKDF2 is slow on purpose.
        let code = (!req.passcode.is_empty()).then(|| passcode::hash(&req.passcode));
        let settings = req.settings.unwrap_or_default();
        let answer: pb::CreateMeetingResponse = self
            .idem
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                let code = code.clone();
                Box::pin(async move {
                    let meeting_id = new_meeting_id();
                    // Reading the key makes the commit require it absent.
                    if tx.get(&self.keys.meeting(&meeting_id)).await?.is_some() {
                        return Err(ServiceError::Aborted("meeting id collision; retry".into()));
                    }
                    let m = MeetingRecord {
                        meeting_id: meeting_id.clone(),
                        host: req.host.clone(),
                        topic: req.topic.clone(),
                        start_ms,
                        duration_ms,
                        passcode: code,
                        waiting_room: req.waiting_room,
                        mute_on_entry: settings.mute_on_entry,
                        disable_chat: settings.disable_chat,
                        max_participants: max,
                        locked: false,
                        allow_unmute: true,
                        sharer: String::new(),
                        participant_count: 0,
                        peak_participants: 0,
                        mute_all_seq: 0,
                        ended_ms: 0,
                        create_ms: self.clock.now_ms(),
                    };
                    let log = self.log(&meeting_id);
                    let seq = self.emit(&tx, &log, E::Created, "", &req.host, &req.topic).await?;
                    self.put_meeting(&tx, &m)?;
                    tx.put(self.keys.live(&meeting_id), Vec::new());
                    Ok(pb::CreateMeetingResponse { meeting: Some(wire::meeting(&m, seq)) })
                })
            })
            .await?;
        answer.meeting.ok_or_else(|| ServiceError::Internal("recorded CreateMeeting answer without a meeting".into()))
    }

    /// Returns one meeting.
    pub async fn get(&self, meeting_id: &str) -> ServiceResult<pb::Meeting> {
        validate::meeting_id("meeting_id", meeting_id)?;
        let m = self.meeting(meeting_id).await?;
        let head = self.log(meeting_id).head().await?;
        Ok(wire::meeting(&m, head))
    }

    /// Enters a meeting (or its waiting room).
    pub async fn join(&self, caller: Option<&Caller>, req: &pb::JoinRequest) -> ServiceResult<pb::ParticipantResponse> {
        validate::join(req)?;
        access::acting(caller, &req.user_id)?;
        let seen = self.meeting(&req.meeting_id).await?;
        if let Some(code) = &seen.passcode {
            passcode::verify(code, &req.passcode)?;
        }
        let _turn = self.locks.lock(&req.meeting_id).await;
        let log = self.log(&req.meeting_id);
        let log = &log;
        let user = req.user_id.as_str();
        let a = transact(&self.store, |tx| {
            Box::pin(async move {
                let mut m = self.meeting_in(&tx, &req.meeting_id).await?;
                let existing = self.participant_in(&tx, &req.meeting_id, user).await?;
                let status = match rules::join(&m, user, existing.as_ref())? {
                    JoinOutcome::Already => {
                        let participant = existing.ok_or_else(|| ServiceError::Internal("no participant".into()))?;
                        return Ok::<_, ServiceError>(ParticipantAnswer { meeting: m, participant, sequence: 0 });
                    }
                    JoinOutcome::Enter(status) => status,
                };
                if status == Status::InMeeting {
                    rules::has_room(&m)?;
                }
                let now = self.clock.now_ms();
                let t = if status == Status::InMeeting { E::Joined } else { E::Waiting };
                let seq = self.emit(&tx, log, t, user, user, "").await?;
                let role =
                    if user == m.host { Role::Host } else { existing.as_ref().map_or(Role::Attendee, |p| p.role) };
                let mut sessions = existing.map(|p| p.sessions).unwrap_or_default();
                if status == Status::InMeeting {
                    sessions.push(SessionRecord { join_ms: now, leave_ms: 0 });
                    m.participant_count += 1;
                    m.peak_participants = m.peak_participants.max(m.participant_count);
                    self.put_meeting(&tx, &m)?;
                }
                let p = ParticipantRecord {
                    user_id: user.to_string(),
                    status,
                    role,
                    muted: m.mute_on_entry && role == Role::Attendee,
                    mute_seq: seq,
                    hand_raised: false,
                    session_seq: seq,
                    join_ms: now,
                    leave_ms: 0,
                    sessions,
                };
                self.put_participant(&tx, &req.meeting_id, &p)?;
                // Joined without a stream yet: the 60 s to open one start now.
                let presence = self.keys.presence(&req.meeting_id, user);
                let open = match tx.get(&presence).await? {
                    Some(v) => PresenceRecord::decode(&v.value)?.connected,
                    None => false,
                };
                if !open {
                    let record = PresenceRecord {
                        replica: String::new(),
                        stream: String::new(),
                        connected: false,
                        since_ms: now,
                    };
                    tx.put(presence, record.encode()?);
                }
                Ok(ParticipantAnswer { meeting: m, participant: p, sequence: seq })
            })
        })
        .await?;
        Ok(self.answer(a).await)
    }

    /// Leaves a meeting.
    pub async fn leave(
        &self,
        caller: Option<&Caller>,
        req: &pb::ParticipantActionRequest,
    ) -> ServiceResult<pb::ParticipantResponse> {
        let acting = validate::participant_action(req)?;
        access::acting(caller, &acting)?;
        if acting != req.user_id {
            return Err(ServiceError::PermissionDenied(format!(
                "only {:?} may leave for themselves (a host removes with Remove)",
                req.user_id
            )));
        }
        let a = self.leave_as(&req.meeting_id, &req.user_id, "left", &req.user_id).await?;
        Ok(self.answer(a).await)
    }

    /// Marks `user` LEFT with `reason` (`left`, `connection lost`); unchanged when not present.
    pub(crate) async fn leave_as(
        &self,
        meeting_id: &str,
        user: &str,
        reason: &str,
        actor: &str,
    ) -> ServiceResult<ParticipantAnswer> {
        let _turn = self.locks.lock(meeting_id).await;
        let log = self.log(meeting_id);
        let log = &log;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let mut m = self.meeting_in(&tx, meeting_id).await?;
                let mut p = self.existing_participant_in(&tx, meeting_id, user).await?;
                if !p.status.is_present() || m.ended() {
                    return Ok(ParticipantAnswer { meeting: m, participant: p, sequence: 0 });
                }
                let now = self.clock.now_ms();
                let seq = self.emit(&tx, log, E::Left, user, actor, reason).await?;
                self.end_session(&tx, &mut m, &mut p, Status::Left, now, actor).await?;
                self.put_meeting(&tx, &m)?;
                self.put_participant(&tx, meeting_id, &p)?;
                Ok(ParticipantAnswer { meeting: m, participant: p, sequence: seq })
            })
        })
        .await
    }

    /// Marks `user` LEFT ("connection lost") if its presence record, read in the same
    /// transaction, is still gone by `is_gone(record, now)`; returns whether it did.
    pub(crate) async fn leave_gone(
        &self,
        meeting_id: &str,
        user: &str,
        is_gone: &(dyn Fn(&PresenceRecord, i64) -> bool + Sync),
    ) -> ServiceResult<bool> {
        let _turn = self.locks.lock(meeting_id).await;
        let log = self.log(meeting_id);
        let log = &log;
        let key = self.keys.presence(meeting_id, user);
        let key = &key;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let Some(found) = tx.get(key).await? else { return Ok(false) };
                let presence = PresenceRecord::decode(&found.value)?;
                let now = self.clock.now_ms();
                if !is_gone(&presence, now) {
                    return Ok(false);
                }
                let mut m = self.meeting_in(&tx, meeting_id).await?;
                let p = self.participant_in(&tx, meeting_id, user).await?;
                let Some(mut p) = p.filter(|p| p.status.is_present() && !m.ended()) else {
                    // Nothing to mark: the record is left over.
                    tx.delete(key.clone());
                    return Ok(false);
                };
                self.emit(&tx, log, E::Left, user, SYSTEM, "connection lost").await?;
                self.end_session(&tx, &mut m, &mut p, Status::Left, now, SYSTEM).await?;
                self.put_meeting(&tx, &m)?;
                self.put_participant(&tx, meeting_id, &p)?;
                Ok(true)
            })
        })
        .await
    }

    /// Admits, denies or removes a participant (host controls on one participant).
    pub async fn host_action(
        &self,
        caller: Option<&Caller>,
        req: &pb::HostActionRequest,
        t: E,
    ) -> ServiceResult<pb::ParticipantResponse> {
        validate::host_action(req)?;
        access::acting(caller, &req.acting_user_id)?;
        let _turn = self.locks.lock(&req.meeting_id).await;
        let log = self.log(&req.meeting_id);
        let log = &log;
        let (meeting_id, actor, user) = (req.meeting_id.as_str(), req.acting_user_id.as_str(), req.user_id.as_str());
        let a = transact(&self.store, |tx| {
            Box::pin(async move {
                let mut m = self.meeting_in(&tx, meeting_id).await?;
                let actor_record = self.participant_in(&tx, meeting_id, actor).await?;
                let authority = rules::authority(&m, actor, actor_record.as_ref())?;
                rules::not_ended(&m)?;
                let mut p = self.existing_participant_in(&tx, meeting_id, user).await?;
                let now = self.clock.now_ms();
                let seq = match t {
                    E::Admitted | E::Denied => {
                        if p.status != Status::Waiting {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "{user:?} is not in the waiting room (status {})",
                                rules::status_name(p.status)
                            )));
                        }
                        let seq = self.emit(&tx, log, t, user, actor, "").await?;
                        if t == E::Admitted {
                            rules::has_room(&m)?;
                            p.status = Status::InMeeting;
                            p.join_ms = now;
                            p.sessions.push(SessionRecord { join_ms: now, leave_ms: 0 });
                            m.participant_count += 1;
                            m.peak_participants = m.peak_participants.max(m.participant_count);
                        } else {
                            self.end_session(&tx, &mut m, &mut p, Status::Denied, now, actor).await?;
                        }
                        seq
                    }
                    _ => {
                        if user == m.host {
                            return Err(ServiceError::FailedPrecondition("the host cannot be removed".into()));
                        }
                        if p.role == Role::CoHost && authority == Authority::CoHost {
                            return Err(ServiceError::PermissionDenied("only the host may remove a co-host".into()));
                        }
                        if p.status == Status::Removed {
                            return Ok(ParticipantAnswer { meeting: m, participant: p, sequence: 0 });
                        }
                        let seq = self.emit(&tx, log, E::Removed, user, actor, "").await?;
                        self.end_session(&tx, &mut m, &mut p, Status::Removed, now, actor).await?;
                        seq
                    }
                };
                self.put_meeting(&tx, &m)?;
                self.put_participant(&tx, meeting_id, &p)?;
                Ok(ParticipantAnswer { meeting: m, participant: p, sequence: seq })
            })
        })
        .await?;
        Ok(self.answer(a).await)
    }

    /// A meeting-wide control by the host or a co-host: returns the meeting after it.
    async fn control<F>(
        &self,
        meeting_id: &str,
        actor: &str,
        host_only: Option<&str>,
        change: F,
    ) -> ServiceResult<pb::MeetingResponse>
    where
        F: Fn(&mut MeetingRecord) -> Option<E> + Sync,
    {
        let _turn = self.locks.lock(meeting_id).await;
        let log = self.log(meeting_id);
        let log = &log;
        let change = &change;
        let (m, seq) = transact(&self.store, |tx| {
            Box::pin(async move {
                let mut m = self.meeting_in(&tx, meeting_id).await?;
                match host_only {
                    Some(what) => rules::host_only(&m, actor, what)?,
                    None => {
                        let actor_record = self.participant_in(&tx, meeting_id, actor).await?;
                        rules::authority(&m, actor, actor_record.as_ref())?;
                    }
                }
                let before = m.clone();
                let Some(t) = change(&mut m) else { return Ok::<_, ServiceError>((before, 0)) };
                let seq = self.emit(&tx, log, t, "", actor, "").await?;
                if t == E::MutedAll {
                    m.mute_all_seq = seq;
                }
                if t == E::Ended {
                    m.ended_ms = self.clock.now_ms();
                    m.sharer.clear();
                    tx.delete(self.keys.live(meeting_id));
                }
                self.put_meeting(&tx, &m)?;
                Ok((m, seq))
            })
        })
        .await?;
        Ok(pb::MeetingResponse {
            meeting: Some(wire::meeting(&m, if seq == 0 { self.log(meeting_id).head().await? } else { seq })),
            sequence: seq,
        })
    }

    /// Mutes everyone but the host and co-hosts and disallows unmuting.
    pub async fn mute_all(
        &self,
        caller: Option<&Caller>,
        req: &pb::MeetingControlRequest,
    ) -> ServiceResult<pb::MeetingResponse> {
        validate::control(&req.meeting_id, &req.acting_user_id)?;
        access::acting(caller, &req.acting_user_id)?;
        self.control(&req.meeting_id, &req.acting_user_id, None, |m| {
            if m.ended() {
                return None;
            }
            m.allow_unmute = false;
            Some(E::MutedAll)
        })
        .await
    }

    /// Allows or disallows participants to unmute themselves.
    pub async fn allow_unmute(
        &self,
        caller: Option<&Caller>,
        req: &pb::AllowUnmuteRequest,
    ) -> ServiceResult<pb::MeetingResponse> {
        validate::control(&req.meeting_id, &req.acting_user_id)?;
        access::acting(caller, &req.acting_user_id)?;
        let allowed = req.allowed;
        self.control(&req.meeting_id, &req.acting_user_id, None, move |m| {
            if m.ended() || m.allow_unmute == allowed {
                return None;
            }
            m.allow_unmute = allowed;
            Some(if allowed { E::UnmuteAllowed } else { E::UnmuteDisallowed })
        })
        .await
    }

    /// Locks or unlocks a meeting.
    pub async fn lock(
        &self,
        caller: Option<&Caller>,
        req: &pb::LockMeetingRequest,
    ) -> ServiceResult<pb::MeetingResponse> {
        validate::control(&req.meeting_id, &req.acting_user_id)?;
        access::acting(caller, &req.acting_user_id)?;
        let locked = req.locked;
        self.control(&req.meeting_id, &req.acting_user_id, None, move |m| {
            if m.ended() || m.locked == locked {
                return None;
            }
            m.locked = locked;
            Some(if locked { E::Locked } else { E::Unlocked })
        })
        .await
    }

    /// Ends a meeting for everyone.
    pub async fn end(
        &self,
        caller: Option<&Caller>,
        req: &pb::MeetingControlRequest,
    ) -> ServiceResult<pb::MeetingResponse> {
        validate::control(&req.meeting_id, &req.acting_user_id)?;
        access::acting(caller, &req.acting_user_id)?;
        let answer = self
            .control(&req.meeting_id, &req.acting_user_id, Some("end the meeting"), |m| {
                (!m.ended()).then_some(E::Ended)
            })
            .await?;
        self.locks.forget(&req.meeting_id);
        Ok(answer)
    }

    /// Grants or revokes the co-host role (host only).
    pub async fn make_co_host(
        &self,
        caller: Option<&Caller>,
        req: &pb::MakeCoHostRequest,
    ) -> ServiceResult<pb::ParticipantResponse> {
        validate::make_co_host(req)?;
        access::acting(caller, &req.acting_user_id)?;
        let _turn = self.locks.lock(&req.meeting_id).await;
        let log = self.log(&req.meeting_id);
        let log = &log;
        let a = transact(&self.store, |tx| {
            Box::pin(async move {
                let m = self.meeting_in(&tx, &req.meeting_id).await?;
                rules::host_only(&m, &req.acting_user_id, "appoint co-hosts")?;
                rules::not_ended(&m)?;
                let mut p = self.existing_participant_in(&tx, &req.meeting_id, &req.user_id).await?;
                if p.role == Role::Host {
                    return Err(ServiceError::FailedPrecondition("the host is the host already".into()));
                }
                let want = if req.revoke { Role::Attendee } else { Role::CoHost };
                if p.role == want {
                    return Ok(ParticipantAnswer { meeting: m, participant: p, sequence: 0 });
                }
                if !req.revoke {
                    rules::in_meeting(&m, &p)?;
                }
                let t = if req.revoke { E::CoHostRevoked } else { E::CoHostGranted };
                let seq = self.emit(&tx, log, t, &req.user_id, &req.acting_user_id, "").await?;
                // The mute state stays what it was across the role change.
                p.muted = rules::effective_muted(&m, &p);
                p.mute_seq = seq;
                p.role = want;
                self.put_participant(&tx, &req.meeting_id, &p)?;
                Ok(ParticipantAnswer { meeting: m, participant: p, sequence: seq })
            })
        })
        .await?;
        Ok(self.answer(a).await)
    }

    /// Runs a participant action from a unary call.
    pub async fn act_request(
        &self,
        caller: Option<&Caller>,
        req: &pb::ParticipantActionRequest,
        action: Action,
    ) -> ServiceResult<pb::ParticipantResponse> {
        let acting = validate::participant_action(req)?;
        access::acting(caller, &acting)?;
        let a = self.act(&req.meeting_id, &req.user_id, &acting, action).await?;
        Ok(self.answer(a).await)
    }

    /// Runs `action` on `user` by `acting` (checked already against the caller).
    pub(crate) async fn act(
        &self,
        meeting_id: &str,
        user: &str,
        acting: &str,
        action: Action,
    ) -> ServiceResult<ParticipantAnswer> {
        let _turn = self.locks.lock(meeting_id).await;
        let log = self.log(meeting_id);
        let log = &log;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let mut m = self.meeting_in(&tx, meeting_id).await?;
                rules::not_ended(&m)?;
                if acting != user {
                    if !action.host_may_do_to_others() {
                        return Err(ServiceError::PermissionDenied(format!(
                            "only {user:?} may {} for themselves",
                            action.verb()
                        )));
                    }
                    let actor_record = self.participant_in(&tx, meeting_id, acting).await?;
                    rules::authority(&m, acting, actor_record.as_ref())?;
                }
                let mut p = self.existing_participant_in(&tx, meeting_id, user).await?;
                rules::in_meeting(&m, &p)?;
                let muted = rules::effective_muted(&m, &p);
                let t = match action {
                    Action::Mute if !muted => E::Muted,
                    Action::Unmute if muted => {
                        if !m.allow_unmute && p.role == Role::Attendee {
                            return Err(ServiceError::FailedPrecondition(
                                "the host has not allowed participants to unmute themselves".into(),
                            ));
                        }
                        E::Unmuted
                    }
                    Action::RaiseHand if !p.hand_raised => E::HandRaised,
                    Action::LowerHand if p.hand_raised => E::HandLowered,
                    Action::StartScreenShare if m.sharer != user => {
                        if !m.sharer.is_empty() {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "{:?} is sharing their screen; one participant may share at a time",
                                m.sharer
                            )));
                        }
                        E::ShareStarted
                    }
                    Action::StopScreenShare if m.sharer == user => E::ShareStopped,
                    // Already in effect.
                    _ => return Ok(ParticipantAnswer { meeting: m, participant: p, sequence: 0 }),
                };
                let seq = self.emit(&tx, log, t, user, acting, "").await?;
                match t {
                    E::Muted | E::Unmuted => {
                        p.muted = t == E::Muted;
                        p.mute_seq = seq;
                    }
                    E::HandRaised | E::HandLowered => p.hand_raised = t == E::HandRaised,
                    _ => {
                        m.sharer = if t == E::ShareStarted { user.to_string() } else { String::new() };
                        self.put_meeting(&tx, &m)?;
                    }
                }
                self.put_participant(&tx, meeting_id, &p)?;
                Ok(ParticipantAnswer { meeting: m, participant: p, sequence: seq })
            })
        })
        .await
    }

    /// Sends a chat message from a unary call.
    pub async fn send_chat(&self, caller: Option<&Caller>, req: &pb::SendChatRequest) -> ServiceResult<u64> {
        validate::send_chat(req)?;
        access::acting(caller, &req.user_id)?;
        self.chat(&req.meeting_id, &req.user_id, &req.text).await
    }

    /// Appends a chat message of `user` (checked already) and returns its sequence.
    pub(crate) async fn chat(&self, meeting_id: &str, user: &str, text: &str) -> ServiceResult<u64> {
        let _turn = self.locks.lock(meeting_id).await;
        let log = self.log(meeting_id);
        let log = &log;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let m = self.meeting_in(&tx, meeting_id).await?;
                rules::not_ended(&m)?;
                if m.disable_chat {
                    return Err(ServiceError::FailedPrecondition(format!("chat is off in meeting {meeting_id}")));
                }
                let p = self.existing_participant_in(&tx, meeting_id, user).await?;
                rules::in_meeting(&m, &p)?;
                self.emit(&tx, log, E::Chat, user, user, text).await
            })
        })
        .await
    }

    /// Returns a page of a meeting's participants (user id order) and the next page's token.
    pub async fn list(&self, req: &pb::ListParticipantsRequest) -> ServiceResult<(Vec<pb::Participant>, String)> {
        let size = validate::list(req)?;
        let fp = fingerprint(&[b"participants", req.meeting_id.as_bytes(), &req.status.to_be_bytes()]);
        let token = PageToken::decode(&req.page_token, fp)?;
        let m = self.meeting(&req.meeting_id).await?;
        let mut range = KeyRange::prefix(self.keys.participants(&req.meeting_id));
        if let Some(token) = token {
            if !range.contains(&token.resume_key) {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            range.start = std::ops::Bound::Included(token.resume_key);
        }
        // By the status shown (after the end, everyone shows LEFT).
        let wanted = |shown: i32| match pb::ParticipantStatus::try_from(req.status) {
            Ok(pb::ParticipantStatus::Unspecified) | Err(_) => {
                shown == pb::ParticipantStatus::Waiting as i32 || shown == pb::ParticipantStatus::InMeeting as i32
            }
            Ok(want) => shown == want as i32,
        };
        let presence =
            scan_all(&self.store, KeyRange::prefix(self.keys.presences(&req.meeting_id)), Direction::Forward).await?;
        let prefix_len = self.keys.presences(&req.meeting_id).len();
        let connected: std::collections::HashSet<Vec<u8>> = presence
            .iter()
            .filter(|e| PresenceRecord::decode(&e.value).is_ok_and(|p| p.connected))
            .map(|e| e.key[prefix_len..].to_vec())
            .collect();
        let participants_len = self.keys.participants(&req.meeting_id).len();
        let mut out = Vec::new();
        loop {
            let page = self.store.scan(range.clone(), 500, Direction::Forward).await?;
            for entry in &page.entries {
                let p = ParticipantRecord::decode(&entry.value)?;
                let online = connected.contains(&entry.key[participants_len..]);
                let shown = wire::participant(&m, &p, online);
                if !wanted(shown.status) {
                    continue;
                }
                if out.len() == size {
                    return Ok((out, PageToken { resume_key: entry.key.clone(), fingerprint: fp }.encode()));
                }
                out.push(shown);
            }
            match page.next {
                Some(next) => range.start = std::ops::Bound::Included(next),
                None => return Ok((out, String::new())),
            }
        }
    }

    /// Returns the meeting's attendance report.
    pub async fn report(&self, meeting_id: &str) -> ServiceResult<pb::GetMeetingReportResponse> {
        validate::meeting_id("meeting_id", meeting_id)?;
        let m = self.meeting(meeting_id).await?;
        let head = self.log(meeting_id).head().await?;
        let entries =
            scan_all(&self.store, KeyRange::prefix(self.keys.participants(meeting_id)), Direction::Forward).await?;
        let now = self.clock.now_ms();
        let mut attendance = Vec::new();
        for e in &entries {
            let p = ParticipantRecord::decode(&e.value)?;
            if !p.sessions.is_empty() {
                attendance.push(wire::attendance(&m, &p, now));
            }
        }
        Ok(pb::GetMeetingReportResponse {
            peak_participants: i32::try_from(m.peak_participants).unwrap_or(i32::MAX),
            meeting: Some(wire::meeting(&m, head)),
            attendance,
        })
    }

    /// Returns the meeting's configured sweep interval.
    pub fn sweep_interval(&self) -> Duration {
        self.config.sweep_interval
    }
}

/// One async lock per meeting in this process (see the module doc). Entries are dropped when
/// no one holds or waits for them.
#[derive(Default)]
struct MeetingLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held [`MeetingLocks`] turn.
struct Turn<'a> {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    owner: &'a MeetingLocks,
    meeting_id: String,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's handle and this turn's guard: no one else holds or waits.
        if locks.get(&self.meeting_id).is_some_and(|l| Arc::strong_count(l) <= 2) {
            locks.remove(&self.meeting_id);
        }
    }
}

impl MeetingLocks {
    async fn lock(&self, meeting_id: &str) -> Turn<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(meeting_id.to_string()).or_default().clone()
        };
        Turn { _guard: lock.lock_owned().await, owner: self, meeting_id: meeting_id.to_string() }
    }

    fn forget(&self, meeting_id: &str) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(meeting_id).is_some_and(|l| Arc::strong_count(l) <= 1) {
            locks.remove(meeting_id);
        }
    }
}
