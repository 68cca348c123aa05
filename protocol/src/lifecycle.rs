//! The entry lifecycle as a pure function, shared by the server (which
//! guards every stored transition with it) and clients (which may predict it).
//!
//! ```text
//!   uploading ──InputVerified──▶ processing ──Succeeded──▶ complete
//!       │                            │
//!   InputRejected                 Failed
//!       ▼                            ▼
//!     failed ◀───────────────────────┘
//!       │ Retry { input_stored: true }  ─▶ processing
//!       └ Retry { input_stored: false } ─▶ uploading
//! ```
//!
//! `complete` is final: only a delete (which removes the entry) ends it.

use crate::status::State;

/// Something that happens to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Every block arrived and the whole input hashed to the claimed hash.
    InputVerified,
    /// Every block arrived but the input hashed to something else.
    InputRejected,
    /// The operation produced a result.
    Succeeded,
    /// The operation failed (bad input, timeout, crash).
    Failed,
    /// A client asked again after a failure.
    Retry { input_stored: bool },
}

impl State {
    /// The state after `event`, or `None` if the event cannot happen now.
    pub fn on(self, event: Event) -> Option<State> {
        use {Event as E, State as S};
        match (self, event) {
            (S::Uploading, E::InputVerified) => Some(S::Processing),
            (S::Uploading, E::InputRejected) => Some(S::Failed),
            (S::Processing, E::Succeeded) => Some(S::Complete),
            (S::Processing, E::Failed) => Some(S::Failed),
            (S::Failed, E::Retry { input_stored: true }) => Some(S::Processing),
            (
                S::Failed,
                E::Retry {
                    input_stored: false,
                },
            ) => Some(S::Uploading),
            _ => None,
        }
    }

    /// Whether waiting clients are answered in this state.
    pub fn is_settled(self) -> bool {
        matches!(self, State::Complete | State::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::InputVerified),
            Just(Event::InputRejected),
            Just(Event::Succeeded),
            Just(Event::Failed),
            any::<bool>().prop_map(|input_stored| Event::Retry { input_stored }),
        ]
    }

    fn start() -> impl Strategy<Value = State> {
        prop_oneof![Just(State::Uploading), Just(State::Processing)]
    }

    proptest! {
        /// Whatever happens, in whatever order: a result only ever comes from
        /// processing, complete never changes, and an upload is only reopened
        /// by a retry of a failure whose input is not stored.
        #[test]
        fn invariants_hold_for_any_history(first in start(), events in proptest::collection::vec(event(), 0..40)) {
            let mut state = first;
            for e in events {
                let Some(next) = state.on(e) else { continue };
                prop_assert_ne!(state, State::Complete, "complete is final");
                if next == State::Complete {
                    prop_assert_eq!((state, e), (State::Processing, Event::Succeeded));
                }
                if next == State::Uploading {
                    prop_assert_eq!((state, e), (State::Failed, Event::Retry { input_stored: false }));
                }
                if next == State::Processing {
                    let by_retry = e == Event::Retry { input_stored: true };
                    prop_assert!(state == State::Uploading || by_retry, "processing from {:?} on {:?}", state, e);
                }
                prop_assert_ne!(next, state, "every accepted event changes the state");
                state = next;
            }
        }

        /// Only settled states answer waiters; a retry is the only way out of failed.
        #[test]
        fn failed_is_left_only_by_retry(e in event()) {
            let out = State::Failed.on(e);
            prop_assert_eq!(out.is_some(), matches!(e, Event::Retry { .. }));
        }
    }

    #[test]
    fn settled_states() {
        assert!(State::Complete.is_settled() && State::Failed.is_settled());
        assert!(!State::Uploading.is_settled() && !State::Processing.is_settled());
    }
}
