//! The in-process states by (key id, plan id), and the counts waiting for a state (restored from
//! a snapshot or set by `UpdateUsage` before the key's first request).

use super::key::LocalKey;
use crate::engine::ledger::Ledger;
use crate::engine::Now;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// The states by (key id, plan id): a table of pointers (9 bytes a slot), each state carrying
/// its own ids for hashing and comparison.
#[derive(Default)]
pub(super) struct KeyIndex {
    table: hashbrown::HashTable<Arc<LocalKey>>,
    hasher: foldhash::fast::RandomState,
    /// The table's length after the last sweep: the next one runs when it has doubled.
    swept_at: usize,
    /// Raw quota counts by key id and plan id for keys without a state yet; a new state starts
    /// from its seed.
    pub(super) seeds: HashMap<Arc<str>, HashMap<Arc<str>, u64>>,
}

/// Sweeps start from this many states.
const SWEEP_FROM: usize = 1024;

impl KeyIndex {
    fn hash(&self, id: &str, plan: &str) -> u64 {
        self.hasher.hash_one((id, plan))
    }

    pub(super) fn get(&self, id: &str, plan: &str) -> Option<&Arc<LocalKey>> {
        self.table.find(self.hash(id, plan), |s| &*s.id == id && s.plan.plan.id() == plan)
    }

    /// Every state.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<LocalKey>> {
        self.table.iter()
    }

    /// Takes the seed of (key, plan), if any.
    pub(super) fn take_seed(&mut self, id: &str, plan: &str) -> Option<u64> {
        let plans = self.seeds.get_mut(id)?;
        let seed = plans.remove(plan);
        if plans.is_empty() {
            self.seeds.remove(id);
        }
        seed
    }

    /// Drops the states nothing else holds (no cache entry, no request in progress) that have
    /// nothing to keep: every bucket full and no request counted in the current quota period.
    /// Their day counts move into the ledger's `book`. Run when the table has doubled since the
    /// last sweep, so it costs O(1) per insertion.
    pub(super) fn sweep(&mut self, now: Now, ledger: &Ledger) {
        if self.table.len() < SWEEP_FROM.max(2 * self.swept_at) {
            return;
        }
        let mut book = ledger.book.lock();
        self.table.retain(|s| {
            let keep = Arc::strong_count(s) > 1 || !s.is_idle(now);
            if !keep {
                s.core().day.close_into(&mut book, &s.id, s.plan.plan.id_arc());
            }
            keep
        });
        self.swept_at = self.table.len();
    }

    pub(super) fn put(&mut self, state: &Arc<LocalKey>) {
        let (id, plan) = (&*state.id, state.plan.plan.id());
        let hash = self.hash(id, plan);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |s| &*s.id == id && s.plan.plan.id() == plan,
            |s| hasher.hash_one((&*s.id, s.plan.plan.id())),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = Arc::clone(state),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(Arc::clone(state));
            }
        }
    }
}
