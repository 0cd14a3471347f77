//! Failed authentications slowed down per client address: a token bucket of failures for each
//! address, in a table of bounded size. Time is monotonic nanoseconds from the router's clock.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;

/// How many addresses the table remembers; past it, the one that failed least recently goes.
pub(crate) const MAX_ADDRESSES: usize = 4096;

/// Failures allowed at once, then `per_second`, per client address (`None`: callers whose
/// address is not known share one bucket).
#[derive(Debug)]
pub(crate) struct FailureLimit {
    burst: f64,
    per_second: f64,
    capacity: usize,
    table: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

/// Failures left as of `at` (monotonic nanoseconds of the last failure).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: u64,
}

impl FailureLimit {
    /// `burst` failures at once (>= 1), then `per_second` (> 0, finite); the router checks.
    pub(crate) fn new(burst: u32, per_second: f64, capacity: usize) -> Self {
        Self { burst: f64::from(burst), per_second, capacity: capacity.max(1), table: Mutex::new(HashMap::new()) }
    }

    /// The failures `bucket` has left at `now`.
    fn left(&self, bucket: Bucket, now: u64) -> f64 {
        let secs = now.saturating_sub(bucket.at) as f64 / 1e9;
        (bucket.tokens + secs * self.per_second).min(self.burst)
    }

    /// `Err(seconds to wait)` when `client` has no failure left at `now`: it is not to be
    /// heard until then.
    pub(crate) fn check(&self, client: Option<IpAddr>, now: u64) -> Result<(), u64> {
        let table = self.table.lock();
        let Some(&bucket) = table.get(&client) else { return Ok(()) };
        let left = self.left(bucket, now);
        if left >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - left) / self.per_second).ceil();
        // `as` saturates: a tiny rate waits u64::MAX seconds at most.
        Err((wait as u64).max(1))
    }

    /// Counts a failed authentication of `client` at `now`.
    pub(crate) fn failed(&self, client: Option<IpAddr>, now: u64) {
        let mut table = self.table.lock();
        if !table.contains_key(&client) && table.len() >= self.capacity {
            let oldest = table.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
        let bucket = table.entry(client).or_insert(Bucket { tokens: self.burst, at: now });
        bucket.tokens = (self.left(*bucket, now) - 1.0).max(0.0);
        bucket.at = bucket.at.max(now);
    }

    /// Addresses remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SEC: u64 = 1_000_000_000;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn burst_then_rate_per_address_in_a_bounded_table() {
        let limit = FailureLimit::new(3, 0.5, 4);
        for _ in 0..3 {
            assert_eq!(limit.check(ip(1), 0), Ok(()));
            limit.failed(ip(1), 0);
        }
        assert_eq!(limit.check(ip(1), 0), Err(2));
        assert_eq!(limit.check(ip(1), SEC), Err(1));
        assert_eq!(limit.check(ip(1), 2 * SEC), Ok(()));
        assert_eq!(limit.check(ip(2), 0), Ok(()), "another address is not affected");
        assert_eq!(limit.check(None, 0), Ok(()));
        // Four more addresses fail: the table keeps 4, dropping the one that failed first.
        for n in 2..6 {
            limit.failed(ip(n), SEC + u64::from(n));
        }
        assert_eq!(limit.len(), 4);
        limit.failed(ip(1), 0);
        assert_eq!(limit.check(ip(1), 0), Ok(()), "forgotten: a fresh burst");
    }
}
