//! The in-process backend: every counter is an atomic in this process. Exact under any
//! concurrency; answers at once and allocates nothing on the allowed path.

use super::{bucket_view, BucketSlot, Check, CounterBackend, KeyState, Outcome, Refused, Verdict};
use crate::engine::{CompiledPlan, Gcra, Limits, QuotaRule, Undo};
use crate::model::Stage;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// One key's state under one version of a plan: its plan bucket and quota count inline (one
/// cache line to touch), and one bucket per method throttle.
#[derive(Debug)]
struct LocalKey {
    key: AtomicU64,
    quota: AtomicU64,
    /// When a plan change replaced the method list, the first state of this key and plan: its
    /// `key` and `quota` are the ones that count, so a plan change never loses a count.
    origin: Option<Arc<LocalKey>>,
    /// One bucket per method throttle of the plan, in the plan's order.
    methods: Box<[AtomicU64]>,
    /// `METHOD normalized-path` of each method throttle, to carry buckets over plan changes.
    method_keys: Box<[String]>,
}

impl LocalKey {
    /// The state holding the plan bucket and the quota count.
    fn core(&self) -> &LocalKey {
        self.origin.as_deref().unwrap_or(self)
    }
}

/// Counters in this process.
pub(crate) struct InProcess {
    stage_methods: Box<[AtomicU64]>,
    stage_default: AtomicU64,
    account: AtomicU64,
    keys: crate::engine::Map<(Arc<str>, Arc<str>), Arc<LocalKey>>,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

fn method_keys(plan: &CompiledPlan) -> Box<[String]> {
    plan.method_keys.iter().map(|k| format!("{} {}", k.method(), k.normalized_path())).collect()
}

impl InProcess {
    pub(crate) fn new(stage: Option<&Stage>) -> Self {
        Self {
            stage_methods: (0..stage.map_or(0, |s| s.methods().len())).map(|_| AtomicU64::new(0)).collect(),
            stage_default: AtomicU64::new(0),
            account: AtomicU64::new(0),
            keys: crate::engine::read_mostly_map(),
        }
    }

    fn bucket<'a>(&'a self, local: Option<&'a LocalKey>, slot: BucketSlot) -> Option<&'a AtomicU64> {
        match slot {
            BucketSlot::KeyMethod(i) => local.and_then(|l| l.methods.get(usize::from(i))),
            BucketSlot::Key => local.map(|l| &l.core().key),
            BucketSlot::StageMethod(i) => self.stage_methods.get(usize::from(i)),
            BucketSlot::Stage => Some(&self.stage_default),
            BucketSlot::Account => Some(&self.account),
        }
    }

    fn limits(&self, check: &Check<'_>, local: Option<&LocalKey>, quota: Option<crate::engine::QuotaView>) -> Limits {
        let (Some(key), Some(local)) = (check.key, local) else { return Limits::default() };
        if !check.views {
            return Limits::default();
        }
        let method = check.buckets[0].and_then(|b| match b.slot {
            BucketSlot::KeyMethod(i) => local.methods.get(usize::from(i)).map(|s| b.gcra.view(s, check.now.mono_nanos)),
            _ => None,
        });
        Limits {
            quota: quota.or_else(|| key.plan.quota.as_ref().map(|q| q.peek(&local.core().quota, check.now.unix_secs))),
            key: bucket_view(true, key.plan.throttle.as_ref(), &local.core().key, check.now),
            method,
        }
    }

    fn release(taken: &[Option<(&AtomicU64, Undo)>]) {
        for (state, undo) in taken.iter().flatten() {
            Gcra::undo(state, *undo);
        }
    }
}

impl CounterBackend for InProcess {
    fn key_state(&self, id: &Arc<str>, plan: &Arc<CompiledPlan>) -> KeyState {
        let map = self.keys.pin();
        let wanted = method_keys(plan);
        let make = |origin: Option<Arc<LocalKey>>, old: Option<&LocalKey>| {
            let methods = wanted
                .iter()
                .map(|k| {
                    // A method throttle the plan already had keeps its bucket (approximately:
                    // copied, not shared); a new one starts full.
                    let carried = old.and_then(|o| o.method_keys.iter().position(|ok| ok == k).map(|i| &o.methods[i]));
                    AtomicU64::new(carried.map_or(0, |s| s.load(std::sync::atomic::Ordering::Acquire)))
                })
                .collect();
            Arc::new(LocalKey {
                key: AtomicU64::new(0),
                quota: AtomicU64::new(0),
                origin,
                methods,
                method_keys: wanted.clone(),
            })
        };
        let key = (Arc::clone(id), Arc::clone(plan.plan.id_arc()));
        let current = map.get_or_insert_with(key.clone(), || make(None, None));
        if current.method_keys == wanted {
            return Arc::clone(current) as KeyState;
        }
        let origin = current.origin.clone().unwrap_or_else(|| Arc::clone(current));
        let fresh = make(Some(origin), Some(current));
        map.insert(key, Arc::clone(&fresh));
        fresh
    }

    fn check(&self, check: &Check<'_>) -> Verdict {
        let local = check.key.and_then(|k| k.state.downcast_ref::<LocalKey>());
        let mut taken: [Option<(&AtomicU64, Undo)>; 5] = [None; 5];
        for (i, bucket) in check.buckets.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            let Some(state) = self.bucket(local, bucket.slot) else { continue };
            match bucket.gcra.acquire(state, check.now.mono_nanos) {
                Ok(undo) => taken[i] = Some((state, undo)),
                Err(wait_nanos) => {
                    Self::release(&taken);
                    return Verdict::Ready(Outcome {
                        result: Err(Refused::Throttled { scope: bucket.scope, wait_nanos }),
                        limits: self.limits(check, local, None),
                    });
                }
            }
        }
        let mut quota_view = None;
        let mut refund = None;
        if let (Some(rule), Some(key), Some(local)) = (check.quota, check.key, local) {
            match rule.acquire(&local.core().quota, check.now.unix_secs) {
                Ok(counted) => {
                    if check.views {
                        quota_view = Some(rule.view_of(&counted, check.now.unix_secs));
                    }
                    if check.refund {
                        let state = Arc::clone(key.state);
                        let ticket = counted.ticket;
                        refund = Some(Box::new(move || {
                            if let Some(local) = state.downcast_ref::<LocalKey>() {
                                QuotaRule::refund(&local.core().quota, ticket);
                            }
                        }) as super::Refund);
                    }
                }
                Err(counted) => {
                    Self::release(&taken);
                    let view = rule.view_of(&counted, check.now.unix_secs);
                    return Verdict::Ready(Outcome {
                        result: Err(Refused::Quota(view)),
                        limits: self.limits(check, Some(local), Some(view)),
                    });
                }
            }
        }
        Verdict::Ready(Outcome { result: Ok(refund), limits: self.limits(check, local, quota_view) })
    }
}
