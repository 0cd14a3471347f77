//! [`KeyCache`]: the store's answers by presented value, as grants on this stage. The one owner
//! of the key cache's TTL, generations, sweeping and stale-if-error window.

use super::entry::{KeyBytes, KeyEntry};
use crate::caller::CallerProfile;
use crate::engine::{nanos, unix_secs, Decision, Engine, Grant, Input, Now};
use crate::error::ConfigError;
use crate::rejection::{Rejection, RejectionKind};
use crate::store::{Invalidation, KeyRecord};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Map<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

/// How long answers from the key store are trusted, and what happens when it fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSettings {
    pub(crate) ttl: Duration,
    pub(crate) stale_if_error: Duration,
    /// Forward (held to the stage and account throttles only) when the store fails and the key
    /// has no usable answer.
    pub(crate) fail_open: bool,
    /// Make the key's part of a [`Caller`](crate::Caller) with each entry.
    pub(crate) caller: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(60), stale_if_error: Duration::from_secs(300), fail_open: false, caller: true }
    }
}

/// What the key cache did, for metrics and tests: cumulative since the layer was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyCacheStats {
    /// Calls made to the key store (one per value at a time, however many requests waited).
    pub store_lookups: u64,
    /// Store calls that failed.
    pub store_errors: u64,
    /// Requests decided with a key's answer past its TTL because the store failed
    /// (stale-if-error).
    pub stale_served: u64,
    /// Requests forwarded without per-key limits because the store failed (fail-open).
    pub failed_open: u64,
    /// Values cached now (valid or not yet swept).
    pub cached_keys: u64,
}

/// The counters behind [`KeyCacheStats`]; touched only off the hot path.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) store_lookups: AtomicU64,
    pub(super) store_errors: AtomicU64,
    pub(super) stale_served: AtomicU64,
    pub(super) failed_open: AtomicU64,
}

/// Whether generation `a` is later than `b` (low 32 bits, which wrap: compared by difference).
fn newer(a: u32, b: u32) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead < u32::MAX / 2
}

/// Sweeps of the key cache start from this many entries.
const SWEEP_FROM: usize = 1024;

/// The store's answers by presented value. Entries exist only for values the store answered
/// about, so a flood of random values cannot grow it beyond what the store let through.
pub(crate) struct KeyCache {
    /// A concurrent map tuned for read-mostly use: inserts happen only when a key is
    /// (re)validated, so resizes block the inserting thread instead of leaving a half-moved
    /// table that every lookup must search twice (papaya's incremental default).
    entries: Map<KeyBytes, KeyEntry>,
    pub(super) settings: CacheSettings,
    /// The store's invalidation handle: entries cached at an older generation are revalidated.
    invalidation: Option<Invalidation>,
    /// The cache's length after its last sweep (see [`KeyCache::sweep`]).
    swept_at: AtomicUsize,
    pub(super) flights: super::flight::Flights,
    pub(super) stats: Counters,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the map's keys: they are presented key values.
        f.debug_struct("KeyCache")
            .field("keys", &self.entries.len())
            .field("settings", &self.settings)
            .field("flights", &self.flights)
            .finish()
    }
}

impl KeyCache {
    pub(crate) fn new(settings: CacheSettings, invalidation: Option<Invalidation>) -> Self {
        Self {
            entries: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            settings,
            invalidation,
            swept_at: AtomicUsize::new(0),
            flights: Default::default(),
            stats: Counters::default(),
        }
    }

    /// What the cache has done so far.
    pub(crate) fn stats(&self) -> KeyCacheStats {
        let c = &self.stats;
        KeyCacheStats {
            store_lookups: c.store_lookups.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            failed_open: c.failed_open.load(Ordering::Relaxed),
            cached_keys: self.entries.len() as u64,
        }
    }

    /// The store's current invalidation generation (0 for a store without a handle). Read it
    /// before asking the store, and pass it to [`decide_record`](Self::decide_record).
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        // Compared for equality only: the low 32 bits suffice.
        self.invalidation.as_ref().map_or(0, |i| i.generation() as u32)
    }

    /// Whether `entry` is still good at the current invalidation generation: one comparison
    /// when nothing was invalidated since it was cached; otherwise the handle says whether the
    /// invalidations since then were about this key (or every key), and an entry they were not
    /// about is moved to the current generation.
    #[inline]
    fn valid(&self, entry: &KeyEntry) -> bool {
        let Some(handle) = &self.invalidation else { return true };
        let current = handle.generation();
        let cached = entry.generation();
        let behind = (current as u32).wrapping_sub(cached);
        if behind == 0 {
            return true;
        }
        if handle.outdates(current.saturating_sub(u64::from(behind)), entry.grant.id()) {
            return false;
        }
        entry.generation.store(current as u32, Ordering::Relaxed);
        true
    }

    /// Decides a keyed request from the cache if the key's entry is fresh; `None` when the
    /// store must be asked.
    #[inline]
    pub(crate) fn decide_cached(&self, engine: &Engine, value: &[u8], input: &Input<'_>) -> Option<Decision> {
        let guard = self.entries.pin();
        let entry = guard.get(value)?;
        (entry.fresh_until > input.now.mono_nanos && self.valid(entry))
            .then(|| engine.decide(&entry.grant, entry.expires, entry.caller.as_ref(), input))
    }

    /// Decides with a cached entry that is past its TTL but within the stale-if-error window.
    pub(crate) fn decide_stale(&self, engine: &Engine, value: &[u8], input: &Input<'_>) -> Option<Decision> {
        let guard = self.entries.pin();
        // An invalidated entry is not served stale: it may be a key that was just disabled.
        let entry = guard.get(value).filter(|e| self.valid(e))?;
        let stale_until = entry.fresh_until.saturating_add(nanos(self.settings.stale_if_error));
        let decided = (stale_until > input.now.mono_nanos)
            .then(|| engine.decide(&entry.grant, entry.expires, entry.caller.as_ref(), input));
        if decided.is_some() {
            self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
        }
        decided
    }

    /// Records the store's answer for `value` (asked at invalidation `generation`) and decides
    /// the request with it.
    pub(crate) fn decide_record(
        &self,
        engine: &Engine,
        value: &[u8],
        record: Option<KeyRecord>,
        generation: u32,
        input: &Input<'_>,
    ) -> Decision {
        let Some(record) = record else {
            // Unless a lookup that started later has put a newer answer there meanwhile.
            let _ = self.entries.pin().remove_if(value, |_, e| !newer(e.generation(), generation));
            return Decision::reject(Rejection::new(RejectionKind::UnknownKey));
        };
        let now = input.now;
        self.sweep(now);
        let guard = self.entries.pin();
        let previous = guard.get(value);
        let entry = match self.entry_for(engine, record, previous, generation, now) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "usage plan cannot be applied to this stage");
                return Decision::reject(Rejection::new(RejectionKind::StoreUnavailable));
            }
        };
        let decide = |e: &KeyEntry| engine.decide(&e.grant, e.expires, e.caller.as_ref(), input);
        // Insert unless a fresh entry asked at our generation or a later one is there (a racing
        // lookup, or the flight's leader before its followers): then decide with that one, so
        // that racing first requests of a key share one entry, and an answer asked before an
        // invalidation never replaces one asked after it.
        let result = guard.compute(KeyBytes::new(value), |existing| match existing {
            Some((_, e))
                if e.fresh_until > now.mono_nanos
                    && (e.generation() == generation || newer(e.generation(), generation)) =>
            {
                papaya::Operation::Abort(())
            }
            _ => papaya::Operation::Insert(entry.clone()),
        });
        match result {
            papaya::Compute::Inserted(_, e) | papaya::Compute::Updated { new: (_, e), .. } => decide(e),
            papaya::Compute::Aborted(()) => match guard.get(value) {
                Some(e) => decide(e),
                None => decide(&entry),
            },
            papaya::Compute::Removed(..) => decide(&entry),
        }
    }

    /// The cache entry for the store's answer: the key's grant on this stage. The counter state
    /// of the previous entry for the same value is handed to the backend, which keeps it when
    /// the key and plan are unchanged, so revalidation loses no count.
    fn entry_for(
        &self,
        engine: &Engine,
        record: KeyRecord,
        previous: Option<&KeyEntry>,
        generation: u32,
        now: Now,
    ) -> Result<KeyEntry, ConfigError> {
        let key = record.key();
        let stage = engine.stage();
        let plan = record.plans().iter().find(|p| p.stage_binding(stage.api(), stage.stage_name()).is_some());
        let mut caller = None;
        let grant = match plan {
            _ if !key.is_enabled() => Grant::refused(key.id_arc(), RejectionKind::DisabledKey),
            None => Grant::refused(key.id_arc(), RejectionKind::WrongStage),
            Some(plan) => {
                let compiled = engine.compile_for(plan, key.overrides().map(|o| &**o), record.customer(), now)?;
                if self.settings.caller {
                    caller = Some(Arc::new(CallerProfile::new(key, plan, engine.shared_stage())));
                }
                let previous = previous.and_then(|p| match &p.grant {
                    Grant::Plan(_, state) if **state.key_id() == *key.id() => Some(state),
                    _ => None,
                });
                let state = engine.backend().key_state(key.id_arc(), &compiled, previous, now);
                Grant::Plan(compiled, state)
            }
        };
        let ttl = self.settings.ttl;
        Ok(KeyEntry {
            grant,
            caller,
            expires: key.expires().map_or(u32::MAX, |t| u32::try_from(unix_secs(t).max(0)).unwrap_or(u32::MAX)),
            fresh_until: now.mono_nanos.saturating_add(nanos(ttl)),
            generation: AtomicU32::new(generation),
        })
    }

    /// Drops cache entries that can no longer be used, even stale (asked about longer ago than
    /// TTL + stale-if-error): their key's next request asks the store anyway, and the counts live
    /// on in the backend. Runs when the cache has doubled since the last sweep, so idle keys do
    /// not hold memory for ever at O(1) cost per insertion.
    fn sweep(&self, now: Now) {
        let len = self.entries.len();
        if len < SWEEP_FROM.max(2 * self.swept_at.load(Ordering::Relaxed)) {
            return;
        }
        let horizon = nanos(self.settings.stale_if_error);
        self.entries.pin().retain(|_, e| e.fresh_until.saturating_add(horizon) > now.mono_nanos);
        self.swept_at.store(self.entries.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::InProcess;
    use crate::engine::{Req, Want};
    use crate::model::{ApiKey, PlanStage, Stage, UsagePlan};
    use std::sync::Arc;

    fn record(enabled: bool) -> KeyRecord {
        let plan = Arc::new(UsagePlan::new("p").stage(PlanStage::new("petstore", "prod")));
        KeyRecord::new(ApiKey::new("k").plan("p").enabled(enabled), vec![plan])
    }

    fn status(d: Decision) -> Option<RejectionKind> {
        match d {
            Decision::Ready(Ok(_)) => None,
            Decision::Ready(Err(r)) => Some(r.kind()),
            Decision::Pending(_) => panic!("the in-process backend answers at once"),
        }
    }

    #[test]
    fn an_answer_asked_before_an_invalidation_never_replaces_one_asked_after_it() {
        let stage = Stage::new("petstore", "prod");
        let engine = Engine::new(stage.clone(), Arc::new(InProcess::new(&stage, 90)));
        let handle = Invalidation::new();
        let cache = KeyCache::new(CacheSettings::default(), Some(handle.clone()));
        let method = http::Method::GET;
        let now = Now { mono_nanos: 1_000, unix_secs: 1_795_435_200 };
        let input = Input {
            req: Req { method: &method, path: "/pets" },
            slots: Default::default(),
            now,
            want: Want::default(),
        };
        // A lookup starts at generation 0; the key is disabled and invalidated; a later lookup
        // (generation 1) records "disabled"; then the first one's "enabled" arrives.
        let before = cache.generation();
        handle.invalidate_key("k");
        let after = cache.generation();
        assert_eq!(
            status(cache.decide_record(&engine, b"v", Some(record(false)), after, &input)),
            Some(RejectionKind::DisabledKey)
        );
        // Decided with the newer entry, and that entry stays.
        assert_eq!(
            status(cache.decide_record(&engine, b"v", Some(record(true)), before, &input)),
            Some(RejectionKind::DisabledKey)
        );
        assert_eq!(cache.decide_cached(&engine, b"v", &input).map(status), Some(Some(RejectionKind::DisabledKey)));
        // An old "no such key" does not remove the newer entry either.
        assert_eq!(status(cache.decide_record(&engine, b"v", None, before, &input)), Some(RejectionKind::UnknownKey));
        assert!(cache.decide_cached(&engine, b"v", &input).is_some(), "the newer entry is still cached");
        // Another key's invalidation leaves the entry valid; its own outdates it.
        handle.invalidate_key("other");
        assert!(cache.decide_cached(&engine, b"v", &input).is_some());
        handle.invalidate_key("k");
        assert!(cache.decide_cached(&engine, b"v", &input).is_none(), "asks the store again");
    }
}
