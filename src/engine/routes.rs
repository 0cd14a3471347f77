//! Matching a request's method and path against resource-path templates (`/pets/{petId}`).
//!
//! One `matchit` router per HTTP method, plus one for `ANY`; a method-specific route wins over
//! `ANY`, and an `ANY` entry's slots are merged into the method-specific entry with the same path.

use crate::error::ConfigError;
use crate::model::MethodKey;
use http::Method;
use std::collections::{BTreeMap, HashMap};

/// "No slot" marker.
pub(crate) const NONE: u16 = u16::MAX;

/// The slot of the `i`th method throttle of a list. Lists are at most `MAX_METHODS_PER_STAGE`
/// long (checked when they are built, and asserted below [`NONE`] where it is defined); a longer
/// one could only come from a bug, and its extra entries get no slot rather than another entry's.
pub(crate) fn slot(i: usize) -> u16 {
    u16::try_from(i).ok().filter(|&s| s != NONE).unwrap_or(NONE)
}

/// What a matched route carries: which stage method bucket, which per-key method bucket, and
/// whether the method needs no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slots {
    pub(crate) stage: u16,
    pub(crate) plan: u16,
    pub(crate) public: bool,
}

impl Default for Slots {
    fn default() -> Self {
        Self { stage: NONE, plan: NONE, public: false }
    }
}

impl Slots {
    fn merge_missing(&mut self, other: Slots) {
        if self.stage == NONE {
            self.stage = other.stage;
        }
        if self.plan == NONE {
            self.plan = other.plan;
        }
        self.public |= other.public;
    }
}

/// Collects routes, then builds a [`RouteTable`].
#[derive(Debug, Default)]
pub(crate) struct RouteTableBuilder {
    entries: BTreeMap<(String, String), (Slots, String)>,
}

impl RouteTableBuilder {
    /// Sets slots for `key`, merging with what is already there.
    pub(crate) fn add(&mut self, key: &MethodKey, f: impl FnOnce(&mut Slots)) {
        let entry = self
            .entries
            .entry((key.method().to_owned(), key.normalized_path().to_owned()))
            .or_insert_with(|| (Slots::default(), key.to_string()));
        f(&mut entry.0);
    }

    /// Builds the table in `O(n log n)` for `n` routes (maps, no pairwise comparisons).
    pub(crate) fn build(mut self) -> Result<RouteTable, ConfigError> {
        let any: HashMap<String, Slots> =
            self.entries.iter().filter(|((m, _), _)| m == "ANY").map(|((_, p), (s, _))| (p.clone(), *s)).collect();
        if !any.is_empty() {
            for ((method, path), (slots, _)) in self.entries.iter_mut() {
                if method != "ANY" {
                    if let Some(a) = any.get(path) {
                        slots.merge_missing(*a);
                    }
                }
            }
        }
        let mut table = RouteTable { by_method: Vec::new(), any: None };
        let mut index: HashMap<String, usize> = HashMap::new();
        for ((method, path), (slots, original)) in self.entries {
            let router = if method == "ANY" {
                table.any.get_or_insert_with(matchit::Router::new)
            } else {
                let i = match index.get(&method) {
                    Some(&i) => i,
                    None => {
                        let m = Method::from_bytes(method.as_bytes())
                            .map_err(|e| ConfigError::invalid(original.clone(), e))?;
                        table.by_method.push((m, matchit::Router::new()));
                        index.insert(method, table.by_method.len() - 1);
                        table.by_method.len() - 1
                    }
                };
                &mut table.by_method[i].1
            };
            router.insert(path, slots).map_err(|e| {
                ConfigError::invalid(format!("methods.{original:?}"), format!("conflicts with another route: {e}"))
            })?;
        }
        Ok(table)
    }
}

/// Checks that a set of method keys can be matched together (no parameter and greedy parameter
/// at the same place, which API Gateway refuses too).
pub(crate) fn check_routes<'a>(keys: impl IntoIterator<Item = &'a MethodKey>) -> Result<(), ConfigError> {
    let mut b = RouteTableBuilder::default();
    for k in keys {
        b.add(k, |_| {});
    }
    b.build().map(|_| ())
}

/// Immutable route lookup.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    by_method: Vec<(Method, matchit::Router<Slots>)>,
    any: Option<matchit::Router<Slots>>,
}

impl RouteTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_method.is_empty() && self.any.is_none()
    }

    /// The slots of the route `method path` matches, or the defaults when none does.
    ///
    /// `HEAD` falls back to the `GET` routes (servers answer `HEAD` with the `GET` handler, so a
    /// `GET` limit must hold it too), and one trailing slash is ignored (`/pets/` is `/pets`), as
    /// API Gateway does.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Slots {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        let by = |m: &Method| {
            self.by_method.iter().find(|(mm, _)| mm == m).and_then(|(_, r)| r.at(path).ok()).map(|f| *f.value)
        };
        if let Some(found) = by(method) {
            return found;
        }
        if method == Method::HEAD {
            if let Some(found) = by(&Method::GET) {
                return found;
            }
        }
        match &self.any {
            Some(router) => router.at(path).map(|f| *f.value).unwrap_or_default(),
            None => Slots::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> MethodKey {
        s.parse().unwrap()
    }

    #[test]
    fn matches_templates_per_method() {
        let mut b = RouteTableBuilder::default();
        b.add(&key("/pets/GET"), |s| s.stage = 0);
        b.add(&key("/pets/{petId}/DELETE"), |s| s.plan = 1);
        b.add(&key("/pets/{id}/DELETE"), |s| s.stage = 2);
        b.add(&key("//GET"), |s| s.public = true);
        b.add(&key("/files/{proxy+}/ANY"), |s| s.stage = 3);
        b.add(&key("/files/{proxy+}/GET"), |s| s.plan = 4);
        let t = b.build().unwrap();
        assert_eq!(t.lookup(&Method::GET, "/pets").stage, 0);
        assert_eq!(t.lookup(&Method::GET, "/pets/1"), Slots::default());
        assert_eq!(t.lookup(&Method::DELETE, "/pets/42"), Slots { stage: 2, plan: 1, public: false });
        assert_eq!(t.lookup(&Method::POST, "/pets"), Slots::default());
        assert!(t.lookup(&Method::GET, "/").public);
        assert_eq!(t.lookup(&Method::PUT, "/files/a/b/c").stage, 3);
        assert_eq!(t.lookup(&Method::GET, "/files/a/b"), Slots { stage: 3, plan: 4, public: false });
        // HEAD is held by GET limits; a trailing slash is ignored.
        assert_eq!(t.lookup(&Method::HEAD, "/pets").stage, 0);
        assert!(t.lookup(&Method::HEAD, "/").public);
        assert_eq!(t.lookup(&Method::GET, "/pets/").stage, 0);
        assert_eq!(t.lookup(&Method::DELETE, "/pets/42/").plan, 1);
    }

    #[test]
    fn param_and_greedy_param_at_one_place_conflict() {
        let keys = [key("/x/{a}/GET"), key("/x/{b+}/GET")];
        let e = check_routes(&keys).unwrap_err();
        assert!(e.reason().contains("conflicts"), "{e}");
        assert!(check_routes(&[key("/x/{a}/GET"), key("/x/lit/GET"), key("/{a+}/GET")]).is_ok());
    }
}
