//! Every storage key of the meetings service, in one place. Layout under a root (`meetings` in
//! production; tests give each case a root of its own on the shared etcd cluster):
//!
//! - `<root>/meeting/<meeting_id>`                    -> the meeting record
//! - `<root>/m/<meeting_id>/p/<user>`                 -> one participant's record
//! - `<root>/m/<meeting_id>/presence/<user>`          -> whether a stream of theirs is open
//! - `<root>/m/<meeting_id>/events/<seq>`, `.../event-head` -> the meeting's own event log
//!   (`meshwork_common::EventLog` named `<root>/m/<meeting_id>`: a gapless sequence per meeting)
//! - `<root>/live/<meeting_id>`                       -> empty: a meeting not ended (the sweeper's list)
//! - `<root>/replicas/<replica_id>`                   -> a replica's heartbeat (presence)
//! - `<root>/requests/<request_id>`                   -> idempotency records (kit)
//!
//! User ids may hold any printable character, `/` included, so they are escaped (`%` ->
//! `%25`, `/` -> `%2F`): one user's key is never a prefix of another's, and key order is the
//! order of escaped ids. Meeting ids are `mtg_` and base62 characters.

/// The root of production keys: the service's name.
pub const ROOT: &str = "meetings";

/// The keys of one meetings deployment (one root). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

/// Returns `user` escaped for a key segment.
pub fn escape(user: &str) -> String {
    user.replace('%', "%25").replace('/', "%2F")
}

/// Returns the user id of an escaped key segment.
pub fn unescape(segment: &str) -> String {
    segment.replace("%2F", "/").replace("%25", "%")
}

impl Keys {
    /// Returns the keys under `root`.
    pub fn new(root: &str) -> Self {
        Keys { root: root.to_string() }
    }

    /// Returns the root (`meetings`): also the idempotency namespace.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Returns the key of a meeting's record.
    pub fn meeting(&self, meeting_id: &str) -> Vec<u8> {
        format!("{}/meeting/{meeting_id}", self.root).into_bytes()
    }

    /// Returns the name of a meeting's event log (its key root, for `EventLog::new`).
    pub fn log(&self, meeting_id: &str) -> String {
        format!("{}/m/{meeting_id}", self.root)
    }

    /// Returns the prefix of a meeting's participants.
    pub fn participants(&self, meeting_id: &str) -> Vec<u8> {
        format!("{}/m/{meeting_id}/p/", self.root).into_bytes()
    }

    /// Returns the key of a participant's record.
    pub fn participant(&self, meeting_id: &str, user: &str) -> Vec<u8> {
        let mut key = self.participants(meeting_id);
        key.extend_from_slice(escape(user).as_bytes());
        key
    }

    /// Returns the prefix of a meeting's presence records.
    pub fn presences(&self, meeting_id: &str) -> Vec<u8> {
        format!("{}/m/{meeting_id}/presence/", self.root).into_bytes()
    }

    /// Returns the key of a participant's presence record.
    pub fn presence(&self, meeting_id: &str, user: &str) -> Vec<u8> {
        let mut key = self.presences(meeting_id);
        key.extend_from_slice(escape(user).as_bytes());
        key
    }

    /// Returns the prefix of the live-meeting list.
    pub fn live_prefix(&self) -> Vec<u8> {
        format!("{}/live/", self.root).into_bytes()
    }

    /// Returns the key marking a meeting live (not ended).
    pub fn live(&self, meeting_id: &str) -> Vec<u8> {
        format!("{}/live/{meeting_id}", self.root).into_bytes()
    }

    /// Returns the meeting id of a live-list key.
    pub fn meeting_of_live<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        let rest = key.strip_prefix(self.live_prefix().as_slice())?;
        std::str::from_utf8(rest).ok().filter(|s| !s.is_empty())
    }

    /// Returns the key of a replica's heartbeat.
    pub fn replica(&self, replica_id: &str) -> Vec<u8> {
        format!("{}/replicas/{replica_id}", self.root).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_key_never_covers_another_users() {
        let k = Keys::new("meetings");
        let a = k.participant("mtg_x", "a/b");
        assert!(a.starts_with(&k.participants("mtg_x")));
        assert_ne!(a, k.participant("mtg_x", "a%2Fb"));
        assert_eq!(unescape(&escape("a/%2F/b")), "a/%2F/b");
        assert!(!k.participant("mtg_x", "u").starts_with(&k.presences("mtg_x")));
        assert_eq!(k.meeting_of_live(&k.live("mtg_q")), Some("mtg_q"));
        assert_eq!(k.meeting_of_live(b"other/live/mtg_q"), None);
    }

    #[test]
    fn the_log_root_holds_no_other_key() {
        let k = Keys::new("meetings");
        let log = format!("{}/events/", k.log("mtg_a"));
        assert!(!k.participant("mtg_a", "events").starts_with(log.as_bytes()));
        assert!(!k.meeting("mtg_a").starts_with(k.log("mtg_a").as_bytes()));
    }
}
