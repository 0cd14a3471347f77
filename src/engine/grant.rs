//! What the engine decides a key's request on: the key's grant on this stage, made by the key
//! cache from the store's record.

use super::counter::KeyState;
use super::plan::CompiledPlan;
use crate::rejection::RejectionKind;
use std::fmt;
use std::sync::Arc;

/// What the store said about a key, as this stage sees it.
#[derive(Clone)]
pub(crate) enum Grant {
    /// A key in a plan bound to this stage: the plan and the backend's counters for the key.
    Plan(Arc<CompiledPlan>, KeyState),
    /// A key this stage refuses. Behind one pointer, so that a grant (and every cache entry)
    /// stays three words: two variants holding their id inline would need a fourth for the tag.
    Refused(Arc<RefusedKey>),
}

/// Why a known key is refused, and its id (a plan grant's id is in its backend state).
#[derive(Debug)]
pub(crate) struct RefusedKey {
    pub(crate) id: Arc<str>,
    /// `DisabledKey` or `WrongStage`.
    pub(crate) kind: RejectionKind,
}

impl Grant {
    pub(crate) fn refused(id: &Arc<str>, kind: RejectionKind) -> Self {
        Grant::Refused(Arc::new(RefusedKey { id: Arc::clone(id), kind }))
    }

    /// The key id.
    pub(crate) fn id(&self) -> &Arc<str> {
        match self {
            Grant::Plan(_, state) => state.key_id(),
            Grant::Refused(r) => &r.id,
        }
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Plan(p, _) => f.debug_tuple("Plan").field(&p.plan.id()).finish(),
            Grant::Refused(r) => f.debug_tuple("Refused").field(&r.kind).finish(),
        }
    }
}
