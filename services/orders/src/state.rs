//! The order state machine, pure: which states an order may move to from each state, and
//! whether a return is still within its window. Nothing here touches the store or the clock;
//! callers pass the times in.
//!
//! ```text
//! CREATED -> CONFIRMED -> PACKED -> SHIPPED -> DELIVERED -> RETURN_REQUESTED -> RETURNED
//! CREATED | CONFIRMED | PACKED -> CANCELLED
//! ```

use serde::{Deserialize, Serialize};

/// How long after delivery a return may be requested: 30 days, in milliseconds.
pub const RETURN_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// The state of an order (the proto's `OrderState` without UNSPECIFIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Created,
    Confirmed,
    Packed,
    Shipped,
    Delivered,
    Cancelled,
    ReturnRequested,
    Returned,
}

impl State {
    /// Every state, in the proto's order.
    pub const ALL: [State; 8] = [
        State::Created,
        State::Confirmed,
        State::Packed,
        State::Shipped,
        State::Delivered,
        State::Cancelled,
        State::ReturnRequested,
        State::Returned,
    ];

    /// Returns the state's name as in the proto without its prefix (`CONFIRMED`).
    pub fn name(self) -> &'static str {
        match self {
            State::Created => "CREATED",
            State::Confirmed => "CONFIRMED",
            State::Packed => "PACKED",
            State::Shipped => "SHIPPED",
            State::Delivered => "DELIVERED",
            State::Cancelled => "CANCELLED",
            State::ReturnRequested => "RETURN_REQUESTED",
            State::Returned => "RETURNED",
        }
    }

    /// Returns the states an order in this state may move to.
    pub fn next(self) -> &'static [State] {
        match self {
            State::Created => &[State::Confirmed, State::Cancelled],
            State::Confirmed => &[State::Packed, State::Cancelled],
            State::Packed => &[State::Shipped, State::Cancelled],
            State::Shipped => &[State::Delivered],
            State::Delivered => &[State::ReturnRequested],
            State::ReturnRequested => &[State::Returned],
            State::Cancelled | State::Returned => &[],
        }
    }

    /// Returns whether no transition leaves this state.
    pub fn is_final(self) -> bool {
        self.next().is_empty()
    }

    /// Returns whether moving to this state is warehouse work (packing, shipping, delivery),
    /// which staff with the `orders` role may do on anyone's order.
    pub fn is_staff_work(self) -> bool {
        matches!(self, State::Packed | State::Shipped | State::Delivered)
    }

    /// Returns whether moving to this state needs a reason.
    pub fn needs_reason(self) -> bool {
        matches!(self, State::Cancelled | State::ReturnRequested)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// `to` is not one of the states `from` may move to.
    #[error("{}", illegal_message(*.from, *.to))]
    Illegal { from: State, to: State },
    /// The return was requested more than the window after delivery.
    #[error(
        "the return window closed: the order was delivered {} days ago and returns are accepted for {} days after delivery",
        (.now_ms - .delivered_ms) / 86_400_000,
        .window_ms / 86_400_000
    )]
    ReturnWindowClosed { delivered_ms: i64, now_ms: i64, window_ms: i64 },
}

fn illegal_message(from: State, to: State) -> String {
    let allowed: Vec<&str> = from.next().iter().map(|s| s.name()).collect();
    if allowed.is_empty() {
        format!("order is {from}, a final state: it cannot move to {to} (allowed: none)")
    } else {
        format!("order is {from}: it cannot move to {to} (allowed: {})", allowed.join(", "))
    }
}

/// Checks the move of an order from `from` to `to` at `now_ms`; `delivered_ms` is when it
/// became DELIVERED (0 if never) and `window_ms` how long after that a return may be asked.
pub fn check(from: State, to: State, delivered_ms: i64, now_ms: i64, window_ms: i64) -> Result<(), TransitionError> {
    if !from.next().contains(&to) {
        return Err(TransitionError::Illegal { from, to });
    }
    if to == State::ReturnRequested && now_ms.saturating_sub(delivered_ms) > window_ms {
        return Err(TransitionError::ReturnWindowClosed { delivered_ms, now_ms, window_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    use super::*;

    #[test]
    fn the_happy_path_and_the_exits() {
        let path = [State::Created, State::Confirmed, State::Packed, State::Shipped, State::Delivered];
        for pair in path.windows(2) {
            assert!(check(pair[0], pair[1], 0, 0, RETURN_WINDOW_MS).is_ok(), "{} -> {}", pair[0], pair[1]);
        }
        for from in [State::Created, State::Confirmed, State::Packed] {
            assert!(check(from, State::Cancelled, 0, 0, RETURN_WINDOW_MS).is_ok());
        }
        for from in [State::Shipped, State::Delivered, State::Cancelled, State::Returned] {
            assert!(check(from, State::Cancelled, 0, 0, RETURN_WINDOW_MS).is_err());
        }
        assert!(check(State::Delivered, State::ReturnRequested, 100, 200, RETURN_WINDOW_MS).is_ok());
        assert!(check(State::ReturnRequested, State::Returned, 100, 200, RETURN_WINDOW_MS).is_ok());
    }

    #[test]
    fn illegal_moves_name_the_current_and_allowed_states() {
        let err = check(State::Confirmed, State::Delivered, 0, 0, RETURN_WINDOW_MS).unwrap_err();
        assert_eq!(err.to_string(), "order is CONFIRMED: it cannot move to DELIVERED (allowed: PACKED, CANCELLED)");
        let err = check(State::Returned, State::Created, 0, 0, RETURN_WINDOW_MS).unwrap_err();
        assert!(err.to_string().contains("RETURNED, a final state"), "{err}");
        assert!(err.to_string().contains("allowed: none"), "{err}");
    }

    #[test]
    fn returns_close_thirty_days_after_delivery() {
        let delivered = 1_000_000;
        let last = delivered + RETURN_WINDOW_MS;
        assert!(check(State::Delivered, State::ReturnRequested, delivered, last, RETURN_WINDOW_MS).is_ok());
        let err = check(State::Delivered, State::ReturnRequested, delivered, last + 1, RETURN_WINDOW_MS).unwrap_err();
        assert!(matches!(err, TransitionError::ReturnWindowClosed { .. }));
        assert!(err.to_string().contains("30 days"), "{err}");
    }

    #[test]
    fn nothing_moves_back_to_created_and_final_states_are_final() {
        for s in State::ALL {
            assert!(!s.next().contains(&State::Created));
            assert!(!s.next().contains(&s), "{s} moves to itself");
        }
        assert!(State::Cancelled.is_final() && State::Returned.is_final());
        assert_eq!(State::ALL.iter().filter(|s| s.is_final()).count(), 2);
    }

    impl Arbitrary for State {
        fn arbitrary(g: &mut Gen) -> Self {
            *g.choose(&State::ALL).unwrap_or(&State::Created)
        }
    }

    /// Any sequence of attempted moves from CREATED, applying only the accepted ones, stays
    /// on the graph: every state reached is reachable, a final state is never left, CANCELLED
    /// is only reached before shipping, and RETURNED only after DELIVERED and RETURN_REQUESTED.
    #[test]
    fn random_walks_stay_on_the_graph() {
        fn walk(attempts: Vec<State>) -> bool {
            let mut state = State::Created;
            let mut seen = vec![state];
            for to in attempts {
                let accepted = check(state, to, 0, 0, RETURN_WINDOW_MS).is_ok();
                if accepted != state.next().contains(&to) {
                    return false;
                }
                if accepted {
                    if state.is_final() {
                        return false;
                    }
                    state = to;
                    seen.push(state);
                }
            }
            let pos = |s: State| seen.iter().position(|x| *x == s);
            let cancelled_ok = pos(State::Cancelled).is_none_or(|_| pos(State::Shipped).is_none());
            let returned_ok = pos(State::Returned)
                .is_none_or(|r| pos(State::ReturnRequested).is_some_and(|q| q < r) && pos(State::Delivered).is_some());
            // Versions only grow: no state repeats on a walk.
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            cancelled_ok && returned_ok && unique.len() == seen.len()
        }
        QuickCheck::new().tests(500).quickcheck(walk as fn(Vec<State>) -> bool);
    }
}
