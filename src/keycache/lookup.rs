//! Asking the store about a value that is not cached: one store call per value at a time (the
//! single flight), then the answer recorded and decided, or, when the store failed, the
//! stale-if-error answer, fail-open, or 503.

use super::cache::KeyCache;
use super::flight::{Failure, Role};
use crate::engine::{Clock, Decision, Engine, Input};
use crate::rejection::{Rejection, RejectionKind};
use crate::store::{DynKeyStore, KeyRecord};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl KeyCache {
    /// Asks `store` about `value` (concurrent misses of one value wait for the first one's
    /// answer) and decides `input` with the answer, at a fresh reading of `clock`.
    pub(crate) async fn look_up(
        &self,
        engine: &Engine,
        store: &Arc<dyn DynKeyStore>,
        clock: &dyn Clock,
        value: Box<str>,
        input: Input<'_>,
    ) -> Decision {
        loop {
            match self.flights.join(&value, self.generation()) {
                Role::Leader(leader) => {
                    let generation = leader.generation();
                    self.stats.store_lookups.fetch_add(1, Ordering::Relaxed);
                    let looked_up = Arc::clone(store).lookup_owned(value.clone()).await;
                    leader.answer(&looked_up);
                    let looked_up = looked_up.map_err(|error| {
                        self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "API key lookup failed");
                        Failure::of(&error)
                    });
                    // The flight ends (`leader` dropped) once the answer is in the key cache.
                    return self.decide_looked_up(engine, looked_up, generation, &value, input.at(clock.now()));
                }
                Role::Follower(wait) => match wait.await {
                    Some((looked_up, generation)) => {
                        return self.decide_looked_up(engine, looked_up, generation, &value, input.at(clock.now()))
                    }
                    // The request asking the store was dropped: ask again.
                    None => continue,
                },
            }
        }
    }

    fn decide_looked_up(
        &self,
        engine: &Engine,
        looked_up: Result<Option<KeyRecord>, Failure>,
        generation: u32,
        value: &str,
        input: Input<'_>,
    ) -> Decision {
        match looked_up {
            Ok(record) => self.decide_record(engine, value.as_bytes(), record, generation, &input),
            Err(failure) => match self.decide_stale(engine, value.as_bytes(), &input) {
                Some(d) => d,
                // Never on an overloaded store: that would let a flood of random keys through.
                None if self.settings.fail_open && failure == Failure::Failed => {
                    // Fail-open skips the key's own limits, never the stage and account
                    // throttles that protect the backend.
                    self.stats.failed_open.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("key store failed: forwarding without per-key limits (fail-open)");
                    engine.decide_public(&input)
                }
                None => Decision::reject(Rejection::new(RejectionKind::StoreUnavailable)),
            },
        }
    }
}
