//! Pagination as API Gateway does it: `limit` (default 25, at most 500) and `position`, an
//! opaque token the previous page returned (here: the id of the next item). Items are in id order.

use crate::admin::error::{ApiError, ApiResult};
use crate::admin::input::Query;
use crate::store::{CustomerQuery, KeyQuery, PlanQuery};
use crate::wire::Page;

/// Items per page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 25;
/// Largest `limit` accepted.
pub(crate) const MAX_LIMIT: usize = 500;

/// Where a page starts and how long it is.
#[derive(Debug)]
pub(crate) struct Paging {
    limit: usize,
    position: Option<String>,
}

impl Paging {
    pub(crate) fn parse(query: &Query) -> ApiResult<Self> {
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(ApiError::invalid("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
            },
        };
        let position = query.get("position").filter(|p| !p.is_empty()).map(str::to_owned);
        Ok(Self { limit, position })
    }

    /// The store query for keys of this page.
    pub(crate) fn key_query(&self) -> KeyQuery {
        let q = KeyQuery::new().with_limit(self.limit);
        match &self.position {
            Some(p) => q.with_position(p.clone()),
            None => q,
        }
    }

    /// The store query for plans of this page.
    pub(crate) fn plan_query(&self) -> PlanQuery {
        let q = PlanQuery::new().with_limit(self.limit);
        match &self.position {
            Some(p) => q.with_position(p.clone()),
            None => q,
        }
    }

    /// The store query for customers of this page.
    pub(crate) fn customer_query(&self) -> CustomerQuery {
        let q = CustomerQuery::new().with_limit(self.limit);
        match &self.position {
            Some(p) => q.with_position(p.clone()),
            None => q,
        }
    }

    /// The page of `items` (sorted here by their ids) that this paging selects.
    pub(crate) fn page<T>(&self, mut items: Vec<(String, T)>) -> Page<T> {
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let start = self.position.as_ref().map_or(0, |p| items.partition_point(|(id, _)| id < p));
        let mut rest = items.into_iter().skip(start);
        let item: Vec<T> = rest.by_ref().take(self.limit).map(|(_, t)| t).collect();
        Page { position: rest.next().map(|(id, _)| id), item }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paging(q: &str) -> ApiResult<Paging> {
        Paging::parse(&Query::parse(&format!("/x?{q}").parse().unwrap()).unwrap())
    }

    #[test]
    fn walks_all_pages_in_id_order() {
        let items: Vec<(String, u32)> = (0..7).rev().map(|i| (format!("id{i}"), i)).collect();
        let p = paging("limit=3").unwrap().page(items.clone());
        assert_eq!((p.item, p.position.as_deref()), (vec![0, 1, 2], Some("id3")));
        let p = paging("limit=3&position=id3").unwrap().page(items.clone());
        assert_eq!((p.item, p.position.as_deref()), (vec![3, 4, 5], Some("id6")));
        let p = paging("limit=3&position=id6").unwrap().page(items.clone());
        assert_eq!((p.item, p.position), (vec![6], None));
        assert_eq!(paging("").unwrap().page(items).item.len(), 7);
        for bad in ["limit=0", "limit=501", "limit=x", "limit=-1"] {
            assert!(paging(bad).is_err(), "{bad}");
        }
    }
}
