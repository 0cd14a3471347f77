//! The usage ledger: how many requests each key forwarded under each plan, per UTC day.
//!
//! The hot part is one [`DayCounter`] per key and plan (an atomic beside the quota count): the
//! day (index since the Unix epoch, plus one; 0 = never used) in the high 24 bits and the count in
//! the low 40. A request of the counter's day is one `fetch_add`. The first request of a new day
//! rolls the counter under the [`Ledger`]'s lock: the closed day moves into the book, so readers
//! (who take the same lock) never see a day counted twice or not at all.
//!
//! The book keeps, per key, plan and day, the count of closed days (and of days whose counter
//! went away), the quota adjustments made by `UpdateUsage`, and how much of the count a usage
//! sink has acknowledged. Days older than the retention are dropped.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const SECS_PER_DAY: i64 = 86_400;

/// The UTC day (days since 1970-01-01) of Unix time `unix`.
pub(crate) fn day_of(unix: i64) -> i32 {
    i32::try_from(unix.div_euclid(SECS_PER_DAY)).unwrap_or(if unix < 0 { i32::MIN } else { i32::MAX })
}

fn tag(day: i32) -> u64 {
    // Days before 1970 or after year 47,000 share the extreme tags: no real clock reads them.
    (u64::try_from(day).unwrap_or(0).min((1 << (64 - COUNT_BITS)) - 2) + 1) << COUNT_BITS
}

fn day_of_tag(raw: u64) -> Option<i32> {
    let t = raw >> COUNT_BITS;
    (t != 0).then(|| i32::try_from(t - 1).unwrap_or(i32::MAX))
}

/// Today's count of one key under one plan. See the module docs for the layout.
#[derive(Debug, Default)]
pub(crate) struct DayCounter(AtomicU64);

/// Where a counter's closed days go: the ledger and the (key id, plan id) it counts for.
#[derive(Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub(crate) ledger: &'a Ledger,
    pub(crate) key: &'a Arc<str>,
    pub(crate) plan: &'a Arc<str>,
}

impl DayCounter {
    /// Counts one request of day `day`.
    #[inline]
    pub(crate) fn add(&self, day: i32, owner: Owner<'_>) {
        if self.0.load(Ordering::Relaxed) & !COUNT_MASK == tag(day) {
            // A roll between the load and the add counts this request on the next day: the
            // total stays exact, only a request racing midnight may change sides.
            self.0.fetch_add(1, Ordering::Relaxed);
        } else {
            self.add_slow(day, owner);
        }
    }

    #[cold]
    fn add_slow(&self, day: i32, owner: Owner<'_>) {
        let mut book = owner.ledger.book.lock();
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let now = cur & !COUNT_MASK;
            if now == tag(day) {
                self.0.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if now > tag(day) {
                // A request that read the clock before another one rolled the day.
                book.row(owner.key, owner.plan, day).used += 1;
                return;
            }
            match self.0.compare_exchange_weak(cur, tag(day) | 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if let Some(closed) = day_of_tag(cur) {
                        book.row(owner.key, owner.plan, closed).used += cur & COUNT_MASK;
                    }
                    // The first roll of each day drops what is past the retention (a walk of the
                    // whole book, once a day, not once per key).
                    if book.pruned_on < day {
                        book.pruned_on = day;
                        book.prune(day.saturating_sub(owner.ledger.retention_days));
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes back one request counted on day `day` (refund policy).
    pub(crate) fn sub(&self, day: i32, owner: Owner<'_>) {
        let taken = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur & !COUNT_MASK == tag(day) && cur & COUNT_MASK > 0).then(|| cur - 1)
            })
            .is_ok();
        if !taken {
            let mut book = owner.ledger.book.lock();
            let row = book.row(owner.key, owner.plan, day);
            row.used = row.used.saturating_sub(1);
        }
    }

    /// The day and count held, if any.
    pub(crate) fn get(&self) -> Option<(i32, u64)> {
        let raw = self.0.load(Ordering::Acquire);
        day_of_tag(raw).map(|d| (d, raw & COUNT_MASK))
    }

    /// Moves the count into the book (a state being dropped). Call with the book locked.
    pub(crate) fn close_into(&self, book: &mut Book, key: &Arc<str>, plan: &Arc<str>) {
        let raw = self.0.swap(0, Ordering::AcqRel);
        if let Some(day) = day_of_tag(raw) {
            if raw & COUNT_MASK > 0 {
                book.row(key, plan, day).used += raw & COUNT_MASK;
            }
        }
    }
}

/// One key's usage under one plan on one day, beyond what its live counter holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    /// Forwarded requests (closed into the book).
    pub(crate) used: u64,
    /// Change of the quota count made that day by `UpdateUsage` (positive: less remaining).
    pub(crate) adjust: i64,
    /// The count (book plus counter) a usage sink has acknowledged.
    pub(crate) reported: u64,
}

impl Row {
    fn is_empty(&self) -> bool {
        *self == Row::default()
    }
}

/// Rows by plan id, then day.
pub(crate) type PlanRows = HashMap<Arc<str>, BTreeMap<i32, Row>>;

/// Rows by key id, plan id, day.
#[derive(Debug)]
pub(crate) struct Book {
    pub(crate) keys: HashMap<Arc<str>, PlanRows>,
    /// The day of the last prune.
    pruned_on: i32,
    /// Days before this one have been dropped (and must not come back as rows).
    pub(crate) first_kept: i32,
}

impl Default for Book {
    fn default() -> Self {
        Self { keys: HashMap::new(), pruned_on: i32::MIN, first_kept: i32::MIN }
    }
}

impl Book {
    pub(crate) fn row(&mut self, key: &Arc<str>, plan: &Arc<str>, day: i32) -> &mut Row {
        // Cloning an `Arc` only counts a reference: no allocation for a known key or plan.
        self.keys.entry(Arc::clone(key)).or_default().entry(Arc::clone(plan)).or_default().entry(day).or_default()
    }

    pub(crate) fn days(&self, key: &str, plan: &str) -> Option<&BTreeMap<i32, Row>> {
        self.keys.get(key).and_then(|p| p.get(plan))
    }

    /// Drops the days before `first`.
    pub(crate) fn prune(&mut self, first: i32) {
        self.first_kept = self.first_kept.max(first);
        self.keys.retain(|_, plans| {
            plans.retain(|_, days| {
                while days.first_key_value().is_some_and(|(d, _)| *d < first) {
                    days.pop_first();
                }
                days.retain(|_, r| !r.is_empty());
                !days.is_empty()
            });
            !plans.is_empty()
        });
    }
}

/// The book of every key's past days, and the lock that orders day rolls with readers.
pub(crate) struct Ledger {
    pub(crate) book: Mutex<Book>,
    /// Days kept before today.
    pub(crate) retention_days: i32,
}

/// Days of usage kept by default (API Gateway keeps 90).
pub(crate) const DEFAULT_RETENTION_DAYS: u32 = 90;

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("retention_days", &self.retention_days).finish_non_exhaustive()
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new(DEFAULT_RETENTION_DAYS)
    }
}

impl Ledger {
    pub(crate) fn new(retention_days: u32) -> Self {
        Self { book: Mutex::new(Book::default()), retention_days: i32::try_from(retention_days).unwrap_or(i32::MAX) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner<'a>(ledger: &'a Ledger, key: &'a Arc<str>, plan: &'a Arc<str>) -> Owner<'a> {
        Owner { ledger, key, plan }
    }

    #[test]
    fn days_roll_into_the_book_exactly() {
        let ledger = Ledger::new(90);
        let (k, p): (Arc<str>, Arc<str>) = ("k".into(), "p".into());
        let c = DayCounter::default();
        for _ in 0..3 {
            c.add(100, owner(&ledger, &k, &p));
        }
        assert_eq!(c.get(), Some((100, 3)));
        c.add(101, owner(&ledger, &k, &p));
        assert_eq!(c.get(), Some((101, 1)));
        assert_eq!(ledger.book.lock().days("k", "p").unwrap()[&100].used, 3);
        // A late request of day 100 goes to the book, not to day 101.
        c.add(100, owner(&ledger, &k, &p));
        assert_eq!(ledger.book.lock().days("k", "p").unwrap()[&100].used, 4);
        // Refunds: today's from the counter, an earlier day's from the book.
        c.sub(101, owner(&ledger, &k, &p));
        c.sub(100, owner(&ledger, &k, &p));
        assert_eq!(c.get(), Some((101, 0)));
        assert_eq!(ledger.book.lock().days("k", "p").unwrap()[&100].used, 3);
    }

    #[test]
    fn old_days_are_dropped_after_the_retention() {
        let ledger = Ledger::new(2);
        let (k, p): (Arc<str>, Arc<str>) = ("k".into(), "p".into());
        let c = DayCounter::default();
        for day in [10, 11, 12, 13] {
            c.add(day, owner(&ledger, &k, &p));
        }
        let book = ledger.book.lock();
        assert_eq!(book.days("k", "p").unwrap().keys().copied().collect::<Vec<_>>(), vec![11, 12]);
    }

    #[test]
    fn concurrent_adds_across_midnight_lose_nothing() {
        let ledger = Ledger::new(90);
        let (k, p): (Arc<str>, Arc<str>) = ("k".into(), "p".into());
        let c = DayCounter::default();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (ledger, k, p, c) = (&ledger, &k, &p, &c);
                s.spawn(move || {
                    for i in 0..10_000 {
                        c.add(if i < 5_000 + t * 10 { 7 } else { 8 }, owner(ledger, k, p));
                    }
                });
            }
        });
        let book = ledger.book.lock();
        let closed: u64 = book.days("k", "p").map_or(0, |d| d.values().map(|r| r.used).sum());
        let (day, live) = c.get().unwrap();
        assert_eq!(day, 8);
        assert_eq!(closed + live, 40_000);
    }

    #[test]
    fn the_book_is_pruned_once_a_day_by_its_first_roll() {
        let ledger = Ledger::new(2);
        let p: Arc<str> = "p".into();
        let keys: Vec<Arc<str>> = (0..3).map(|i| Arc::from(format!("k{i}"))).collect();
        let counters: Vec<DayCounter> = (0..3).map(|_| DayCounter::default()).collect();
        counters[0].add(10, owner(&ledger, &keys[0], &p));
        counters[0].add(11, owner(&ledger, &keys[0], &p)); // day 11's first roll prunes (< 9)
        ledger.book.lock().row(&keys[2], &p, 5).used = 7; // an old row appears after that prune
        counters[1].add(11, owner(&ledger, &keys[1], &p)); // the same day: no second walk
        assert!(ledger.book.lock().days("k2", "p").is_some(), "pruned again on the same day");
        counters[1].add(12, owner(&ledger, &keys[1], &p)); // the next day's first roll
        assert!(ledger.book.lock().days("k2", "p").is_none());
        assert_eq!(ledger.book.lock().first_kept, 10);
    }
}
