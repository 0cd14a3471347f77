//! Single flight: concurrent requests that miss the key cache for the same value make one store
//! call; the others wait for its answer. Runtime-agnostic (a mutex and wakers).
//!
//! If the request making the call is dropped before the store answers (client gone), the flight
//! is abandoned and one of the waiting requests makes the call itself.

use crate::store::{KeyRecord, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// What waiting requests get: the record, or how the store failed.
pub(crate) type Shared = Result<Option<KeyRecord>, Failure>;

/// How a store call failed, as far as a decision needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The store failed (stale-if-error, fail-open or 503).
    Failed,
    /// The store refused to be asked (overloaded): stale-if-error or 503, never fail-open.
    Overloaded,
}

impl Failure {
    pub(crate) fn of(error: &StoreError) -> Self {
        if error.is_overloaded() {
            Failure::Overloaded
        } else {
            Failure::Failed
        }
    }
}

#[derive(Debug)]
enum State {
    Running(Vec<Waker>),
    Done(Shared, u32),
    Abandoned,
}

#[derive(Debug)]
pub(crate) struct Flight {
    state: parking_lot::Mutex<State>,
    /// The invalidation generation the leader asks the store at.
    generation: u32,
}

impl Flight {
    fn settle(&self, state: State) {
        let previous = std::mem::replace(&mut *self.state.lock(), state);
        if let State::Running(wakers) = previous {
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

/// The flights in progress, by presented value.
#[derive(Default)]
pub(crate) struct Flights {
    map: parking_lot::Mutex<HashMap<Box<str>, Arc<Flight>>>,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The map's keys are presented key values: never shown.
        f.debug_struct("Flights").field("in_flight", &self.map.lock().len()).finish()
    }
}

/// This request's part in a flight.
pub(crate) enum Role<'a> {
    /// Make the store call, then [`Leader::answer`] and drop the leader.
    Leader(Leader<'a>),
    /// Wait for the leader's answer.
    Follower(Wait),
}

impl Flights {
    /// Joins the flight for `value` if one asks the store at the current invalidation
    /// `generation`; otherwise starts one (a flight begun before an invalidation may bring back
    /// an answer that the invalidation outdated, so later requests do not wait for it).
    pub(crate) fn join<'a>(&'a self, value: &'a str, generation: u32) -> Role<'a> {
        let mut map = self.map.lock();
        if let Some(flight) = map.get(value).filter(|f| f.generation == generation) {
            return Role::Follower(Wait(Arc::clone(flight)));
        }
        let flight = Arc::new(Flight { state: parking_lot::Mutex::new(State::Running(Vec::new())), generation });
        map.insert(value.into(), Arc::clone(&flight));
        Role::Leader(Leader { flights: self, value, flight })
    }
}

/// The request making the store call. Dropping it ends the flight (abandoned if no answer was
/// given), so waiting requests never wait forever.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    value: &'a str,
    flight: Arc<Flight>,
}

impl Leader<'_> {
    /// The invalidation generation the store is asked at.
    pub(crate) fn generation(&self) -> u32 {
        self.flight.generation
    }

    /// Hands the store's answer to the waiting requests.
    pub(crate) fn answer(&self, result: &Result<Option<KeyRecord>, StoreError>) {
        let shared = match result {
            Ok(record) => Ok(record.clone()),
            Err(e) => Err(Failure::of(e)),
        };
        self.flight.settle(State::Done(shared, self.flight.generation));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock();
        if map.get(self.value).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            map.remove(self.value);
        }
        drop(map);
        let mut state = self.flight.state.lock();
        if matches!(*state, State::Running(_)) {
            let State::Running(wakers) = std::mem::replace(&mut *state, State::Abandoned) else { return };
            drop(state);
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

/// Waits for a flight: `Some((answer, generation))`, or `None` if the leader was dropped
/// without one.
pub(crate) struct Wait(Arc<Flight>);

impl Future for Wait {
    type Output = Option<(Shared, u32)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.state.lock();
        match &mut *state {
            State::Done(answer, generation) => Poll::Ready(Some((answer.clone(), *generation))),
            State::Abandoned => Poll::Ready(None),
            State::Running(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(w: &mut Wait) -> Poll<Option<(Shared, u32)>> {
        Pin::new(w).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn followers_get_the_leaders_answer_and_a_dropped_leader_releases_them() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join("v", 7) else { panic!("first is the leader") };
        let Role::Follower(mut w) = flights.join("v", 7) else { panic!("second follows") };
        assert!(poll(&mut w).is_pending());
        assert_eq!(format!("{flights:?}"), "Flights { in_flight: 1 }");
        leader.answer(&Ok(None));
        assert!(matches!(poll(&mut w), Poll::Ready(Some((Ok(None), 7)))));
        drop(leader);
        assert!(flights.map.lock().is_empty());

        let Role::Leader(leader) = flights.join("v", 7) else { panic!("a new flight") };
        let Role::Follower(mut w) = flights.join("v", 7) else { panic!("follows") };
        drop(leader);
        assert!(matches!(poll(&mut w), Poll::Ready(None)));
        assert!(matches!(flights.join("v", 7), Role::Leader(_)));
    }

    #[test]
    fn a_request_after_an_invalidation_does_not_wait_for_an_older_flight() {
        let flights = Flights::default();
        let Role::Leader(old) = flights.join("v", 1) else { panic!("leader") };
        let Role::Leader(new) = flights.join("v", 2) else { panic!("a newer generation leads its own flight") };
        let Role::Follower(_) = flights.join("v", 2) else { panic!("follows the newer flight") };
        drop(old); // does not end the newer flight
        assert!(matches!(flights.join("v", 2), Role::Follower(_)));
        drop(new);
    }
}
