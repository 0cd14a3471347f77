//! Usage queries and changes on the in-process counters. Lock order: the key index, then the
//! ledger's book (a day roll takes only the book).

use super::key::LocalKey;
use super::InProcess;
use crate::engine::ledger::{Book, Row};
use crate::engine::QuotaRule;
use crate::usage::{ready, Answer, Counts, DayTotal, Pending, UsageBackend};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Every (key, plan, day) row: the book's, plus what the live counters hold.
fn rows_with_live<'a>(
    book: &Book,
    states: impl Iterator<Item = &'a Arc<LocalKey>>,
) -> HashMap<(Arc<str>, Arc<str>), BTreeMap<i32, Row>> {
    let mut all: HashMap<(Arc<str>, Arc<str>), BTreeMap<i32, Row>> = HashMap::new();
    for (key, plans) in &book.keys {
        for (plan, days) in plans {
            all.insert((Arc::clone(key), Arc::clone(plan)), days.clone());
        }
    }
    for s in states {
        if let Some((day, count)) = s.core().day.get() {
            if count > 0 {
                let plan = Arc::clone(s.plan.plan.id_arc());
                all.entry((Arc::clone(&s.id), plan)).or_default().entry(day).or_default().used += count;
            }
        }
    }
    all
}

impl InProcess {
    pub(super) fn local_days(&self, key: &str, plan: &str, from: i32, to: i32) -> Vec<DayTotal> {
        let keys = self.keys.lock();
        // The book's lock first: a day roll holds it while it moves the closed day from the
        // counter into the book, so reading the counter under it sees the day in one place.
        let book = self.ledger.book.lock();
        let live = keys.get(key, plan).and_then(|s| s.core().day.get());
        let mut days: BTreeMap<i32, DayTotal> = book
            .days(key, plan)
            .into_iter()
            .flat_map(|d| d.range(from..=to))
            .map(|(day, r)| (*day, DayTotal { day: *day, used: r.used, adjust: r.adjust }))
            .collect();
        if let Some((day, count)) = live.filter(|(d, c)| (from..=to).contains(d) && *c > 0) {
            days.entry(day).or_insert(DayTotal { day, used: 0, adjust: 0 }).used += count;
        }
        days.into_values().collect()
    }

    pub(super) fn local_keys_of_plan(&self, plan: &str) -> Vec<Arc<str>> {
        let keys = self.keys.lock();
        let mut ids: HashSet<Arc<str>> =
            keys.iter().filter(|s| s.plan.plan.id() == plan).map(|s| Arc::clone(&s.id)).collect();
        ids.extend(keys.seeds.iter().filter(|(_, p)| p.contains_key(plan)).map(|(k, _)| Arc::clone(k)));
        let book = self.ledger.book.lock();
        ids.extend(book.keys.iter().filter(|(_, p)| p.contains_key(plan)).map(|(k, _)| Arc::clone(k)));
        ids.into_iter().collect()
    }

    pub(super) fn local_quota_used(&self, key: &str, plan: &str, rule: &QuotaRule, unix: i64) -> i64 {
        let keys = self.keys.lock();
        match keys.get(key, plan) {
            Some(s) => rule.used(&s.core().quota, unix),
            None => {
                let seed = keys.seeds.get(key).and_then(|p| p.get(plan)).copied().unwrap_or(0);
                rule.used(&AtomicU64::new(seed), unix)
            }
        }
    }

    pub(super) fn local_set_quota_used(
        &self,
        key: &Arc<str>,
        plan: &Arc<str>,
        rule: &QuotaRule,
        unix: i64,
        used: i64,
    ) -> i64 {
        let mut keys = self.keys.lock();
        let old = match keys.get(key, plan) {
            Some(s) => rule.set_used(&s.core().quota, unix, used),
            None => {
                let seeds = keys.seeds.entry(Arc::clone(key)).or_default();
                let seed = AtomicU64::new(seeds.get(&**plan).copied().unwrap_or(0));
                let old = rule.set_used(&seed, unix, used);
                seeds.insert(Arc::clone(plan), seed.into_inner());
                old
            }
        };
        let mut book = self.ledger.book.lock();
        let delta = used.saturating_sub(old);
        let row = book.row(key, plan, crate::engine::ledger::day_of(unix));
        row.adjust = row.adjust.saturating_add(delta);
        old
    }

    pub(super) fn local_counts(&self) -> Counts {
        let keys = self.keys.lock();
        let mut quotas: Vec<(Arc<str>, Arc<str>, u64)> = keys
            .iter()
            .map(|s| (Arc::clone(&s.id), Arc::clone(s.plan.plan.id_arc()), s.core().quota.load(Ordering::Acquire)))
            .filter(|(_, _, raw)| *raw != 0)
            .collect();
        for (key, plans) in &keys.seeds {
            quotas.extend(plans.iter().map(|(plan, raw)| (Arc::clone(key), Arc::clone(plan), *raw)));
        }
        let book = self.ledger.book.lock();
        let days = rows_with_live(&book, keys.iter())
            .into_iter()
            .flat_map(|((k, p), days)| days.into_iter().map(move |(d, r)| (Arc::clone(&k), Arc::clone(&p), d, r)))
            .collect();
        let customers = self
            .customers
            .lock()
            .iter()
            .map(|(id, c)| (Arc::clone(id), c.quota.load(Ordering::Acquire)))
            .filter(|(_, raw)| *raw != 0)
            .collect();
        Counts { quotas, days, customers }
    }

    pub(super) fn local_restore(&self, counts: Counts) {
        let mut keys = self.keys.lock();
        for (key, plan, raw) in counts.quotas {
            let merged = |cur: u64| crate::engine::merge_quota(cur, raw);
            match keys.get(&key, &plan) {
                Some(s) => {
                    let _ = s.core().quota.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(merged(c)));
                }
                None => {
                    let seed = keys.seeds.entry(key).or_default().entry(plan).or_insert(0);
                    *seed = merged(*seed);
                }
            }
        }
        drop(keys);
        let mut customers = self.customers.lock();
        for (id, raw) in counts.customers {
            let c = customers.entry(id).or_insert_with(super::key::LocalCustomer::new);
            let _ = c
                .quota
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| Some(crate::engine::merge_quota(cur, raw)));
        }
        drop(customers);
        let mut book = self.ledger.book.lock();
        for (key, plan, day, r) in counts.days {
            let row = book.row(&key, &plan, day);
            row.used += r.used;
            row.adjust = row.adjust.saturating_add(r.adjust);
            row.reported = row.reported.max(r.reported);
        }
    }

    pub(super) fn local_pending(&self) -> Vec<Pending> {
        let keys = self.keys.lock();
        let book = self.ledger.book.lock();
        let mut out: Vec<Pending> = rows_with_live(&book, keys.iter())
            .into_iter()
            .flat_map(|((key, plan), days)| {
                days.into_iter().filter(|(_, r)| r.used != r.reported).map(move |(day, r)| Pending {
                    key: Arc::clone(&key),
                    plan: Arc::clone(&plan),
                    day,
                    total: r.used,
                    reported: r.reported,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.day, &a.key, &a.plan).cmp(&(b.day, &b.key, &b.plan)));
        out
    }

    pub(super) fn local_acknowledge(&self, batch: &[Pending]) {
        let mut book = self.ledger.book.lock();
        for p in batch {
            // A day dropped since `pending` (past the retention) is not brought back.
            if p.day < book.first_kept {
                continue;
            }
            // Lower than before after a refund: the sink has the lower count now.
            book.row(&p.key, &p.plan, p.day).reported = p.total;
        }
    }
}

impl UsageBackend for InProcess {
    fn days<'a>(&'a self, key: &'a str, plan: &'a str, from: i32, to: i32) -> Answer<'a, Vec<DayTotal>> {
        ready(self.local_days(key, plan, from, to))
    }

    fn keys_of_plan<'a>(&'a self, plan: &'a str) -> Answer<'a, Vec<Arc<str>>> {
        ready(self.local_keys_of_plan(plan))
    }

    fn quota_used<'a>(&'a self, key: &'a str, plan: &'a str, rule: &'a QuotaRule, unix: i64) -> Answer<'a, i64> {
        ready(self.local_quota_used(key, plan, rule, unix))
    }

    fn customer_used<'a>(&'a self, customer: &'a str, rule: &'a QuotaRule, unix: i64) -> Answer<'a, i64> {
        let raw = self.customer_quota(customer).unwrap_or(0);
        ready(rule.used(&AtomicU64::new(raw), unix))
    }

    fn set_quota_used<'a>(
        &'a self,
        key: &'a Arc<str>,
        plan: &'a Arc<str>,
        rule: &'a QuotaRule,
        unix: i64,
        used: i64,
    ) -> Answer<'a, i64> {
        ready(self.local_set_quota_used(key, plan, rule, unix, used))
    }

    fn counts(&self) -> Answer<'_, Counts> {
        ready(self.local_counts())
    }

    fn restore(&self, counts: Counts) -> Answer<'_, ()> {
        self.local_restore(counts);
        ready(())
    }

    fn pending(&self) -> Answer<'_, Vec<Pending>> {
        ready(self.local_pending())
    }

    fn acknowledge<'a>(&'a self, batch: &'a [Pending]) -> Answer<'a, ()> {
        self.local_acknowledge(batch);
        ready(())
    }
}
