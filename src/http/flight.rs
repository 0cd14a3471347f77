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

/// What waiting requests get: the record, or the fact that the store failed.
pub(crate) type Shared = Result<Option<KeyRecord>, ()>;

#[derive(Debug)]
enum State {
    Running(Vec<Waker>),
    Done(Shared, u32),
    Abandoned,
}

#[derive(Debug)]
pub(crate) struct Flight {
    state: parking_lot::Mutex<State>,
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
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: parking_lot::Mutex<HashMap<Box<str>, Arc<Flight>>>,
}

/// This request's part in a flight.
pub(crate) enum Role<'a> {
    /// Make the store call, then [`Leader::answer`] and drop the leader.
    Leader(Leader<'a>),
    /// Wait for the leader's answer.
    Follower(Wait),
}

impl Flights {
    pub(crate) fn join<'a>(&'a self, value: &'a str) -> Role<'a> {
        let mut map = self.map.lock();
        if let Some(flight) = map.get(value) {
            return Role::Follower(Wait(Arc::clone(flight)));
        }
        let flight = Arc::new(Flight { state: parking_lot::Mutex::new(State::Running(Vec::new())) });
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
    /// Hands the store's answer, asked at invalidation `generation`, to the waiting requests.
    pub(crate) fn answer(&self, result: &Result<Option<KeyRecord>, StoreError>, generation: u32) {
        let shared = match result {
            Ok(record) => Ok(record.clone()),
            Err(_) => Err(()),
        };
        self.flight.settle(State::Done(shared, generation));
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
        let Role::Leader(leader) = flights.join("v") else { panic!("first is the leader") };
        let Role::Follower(mut w) = flights.join("v") else { panic!("second follows") };
        assert!(poll(&mut w).is_pending());
        leader.answer(&Ok(None), 7);
        assert!(matches!(poll(&mut w), Poll::Ready(Some((Ok(None), 7)))));
        drop(leader);
        assert!(flights.map.lock().is_empty());

        let Role::Leader(leader) = flights.join("v") else { panic!("a new flight") };
        let Role::Follower(mut w) = flights.join("v") else { panic!("follows") };
        drop(leader);
        assert!(matches!(poll(&mut w), Poll::Ready(None)));
        assert!(matches!(flights.join("v"), Role::Leader(_)));
    }
}
