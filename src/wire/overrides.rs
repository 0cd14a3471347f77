//! Members beyond API Gateway's: a key's own limits (`throttle`, `quota`, `methodThrottles`,
//! `concurrency`, `quotaAnchor` on an `ApiKey`), a plan's `concurrency`, and the `Customer`
//! shape of the admin API's `/customers` routes. Read as given, then checked whole, with errors
//! under these member names.

use crate::model::{ApiKey, Customer, Overrides, QuotaAnchor};
use crate::wire::{with_offset, Object, QuotaShape, ShapeError, Source, ThrottleShape};
use std::num::NonZeroU32;

/// A concurrency cap at `path`: 1 to `u32::MAX`.
pub(crate) fn concurrency(path: &str, n: i128) -> Result<NonZeroU32, ShapeError> {
    crate::model::concurrency_cap(path, n).map_err(|e| ShapeError::invalid(path, e.reason()))
}

/// A billing anchor at `path`: RFC 3339 text.
fn quota_anchor(path: &str, text: &str) -> Result<QuotaAnchor, ShapeError> {
    QuotaAnchor::parse(text)
        .map_err(|_| ShapeError::invalid(path, "must be an RFC 3339 time, e.g. 2026-01-31T09:30:00Z"))
}

/// RFC 3339 text of a billing anchor (UTC, `Z`), as `quotaAnchor` shows it.
pub(crate) fn anchor_text(a: QuotaAnchor) -> String {
    a.to_string()
}

/// A key's (or a customer's) own limits as given.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LimitsShape {
    /// `throttle`.
    pub(crate) throttle: Option<ThrottleShape>,
    /// `quota`.
    pub(crate) quota: Option<QuotaShape>,
    /// `methodThrottles` by method key (`/pets/GET`), in the object's order; `Some` (even
    /// empty) replaces the plan's.
    pub(crate) method_throttles: Option<Vec<(String, ThrottleShape)>>,
    /// `concurrency`.
    pub(crate) concurrency: Option<i128>,
    /// `quotaAnchor`, RFC 3339 text.
    pub(crate) quota_anchor: Option<String>,
}

impl LimitsShape {
    /// `throttle`, `quota`, `concurrency`, `quotaAnchor` and (when `methods`) `methodThrottles`
    /// of `o`.
    pub(crate) fn read(o: &Object<'_>, methods: bool) -> Result<Self, ShapeError> {
        let mut shape = Self {
            throttle: o.object("throttle")?.map(|t| ThrottleShape::read(&t)).transpose()?,
            quota: o.object("quota")?.map(|q| QuotaShape::read(&q)).transpose()?,
            method_throttles: None,
            concurrency: o.whole("concurrency")?,
            quota_anchor: o.string("quotaAnchor")?.map(str::to_owned),
        };
        if methods && o.object("methodThrottles")?.is_some() {
            let mut list = Vec::new();
            for (key, t) in o.object_map("methodThrottles")? {
                list.push((key.to_owned(), ThrottleShape::read(&t)?));
            }
            shape.method_throttles = Some(list);
        }
        Ok(shape)
    }

    /// The limits `key` has of its own now.
    pub(crate) fn of_key(key: &ApiKey) -> Self {
        Self {
            throttle: key.throttle().map(ThrottleShape::of),
            quota: key.quota().map(QuotaShape::of),
            method_throttles: key
                .method_throttles()
                .map(|list| list.iter().map(|(k, t)| (k.to_string(), ThrottleShape::of(*t))).collect()),
            concurrency: key.concurrency().map(|n| i128::from(n.get())),
            quota_anchor: key.quota_anchor().map(anchor_text),
        }
    }

    /// The limits checked: the throttle, the quota with its offset, the method throttles, the
    /// concurrency cap and the anchor, in that order.
    pub(crate) fn build(&self) -> Result<Overrides, ShapeError> {
        let source = Source::Request;
        let mut o = Overrides {
            throttle: self.throttle.map(|t| t.build("throttle", source)).transpose()?.flatten(),
            quota: match &self.quota {
                Some(q) => {
                    let (quota, offset) = q.build("quota", source)?;
                    Some(with_offset(quota, offset, "quota")?)
                }
                None => None,
            },
            methods: None,
            concurrency: self.concurrency.map(|n| concurrency("concurrency", n)).transpose()?,
            anchor: self.quota_anchor.as_deref().map(|a| quota_anchor("quotaAnchor", a)).transpose()?,
        };
        if let Some(list) = &self.method_throttles {
            o.methods = Some(Vec::with_capacity(list.len()));
            for (key, t) in list {
                let path = source.key_path("methodThrottles", key);
                let Some(t) = t.build(&path, source)? else { continue };
                o.push_method(key, t).map_err(|e| ShapeError::from_model(&e, &path))?;
            }
        }
        Ok(o)
    }
}

/// A `Customer` as given: `{"id", "name", "throttle", "quota", "concurrency", "quotaAnchor"}`.
#[derive(Debug, Clone)]
pub(crate) struct CustomerShape<'v> {
    /// `id`.
    pub(crate) id: Option<&'v str>,
    /// `name`.
    pub(crate) name: Option<&'v str>,
    /// The limits (no method throttles).
    pub(crate) limits: LimitsShape,
}

impl<'v> CustomerShape<'v> {
    /// The members of `o`.
    pub(crate) fn read(o: &Object<'v>) -> Result<Self, ShapeError> {
        Ok(Self { id: o.string("id")?, name: o.string("name")?, limits: LimitsShape::read(o, false)? })
    }

    /// The customer `id` these members describe, checked.
    pub(crate) fn build(&self, id: &str) -> Result<Customer, ShapeError> {
        if id.trim().is_empty() {
            return Err(ShapeError::invalid("id", "is required"));
        }
        let limits = self.limits.build()?;
        let mut c = Customer::new(id);
        if let Some(name) = self.name.filter(|n| !n.is_empty()) {
            c = c.with_name(name);
        }
        if let Some(t) = limits.throttle {
            c = c.with_throttle(t);
        }
        if let Some(q) = limits.quota {
            c = c.with_quota(q);
        }
        if let Some(n) = limits.concurrency {
            c = c.with_concurrency(n);
        }
        if let Some(a) = limits.anchor {
            c = c.with_quota_anchor(a);
        }
        Ok(c)
    }
}
