//! Failed authentications slowed down per client address: a token bucket of failures for each
//! address, in a table of bounded size. Time is monotonic nanoseconds from the router's clock.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;

/// The bucket an address counts against: IPv4 addresses (also IPv4-mapped IPv6 ones) one by
/// one, IPv6 addresses by /64, the block one host is usually given.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

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

    /// Takes one failure of `client` at `now`, before its credentials are checked:
    /// `Err(seconds to wait)` when it has none left (it is not to be heard until then). A
    /// request that authenticates gives it back ([`succeeded`](Self::succeeded)); one that
    /// fails, or never finishes sending what its signature covers, keeps it spent. Taking the
    /// failure first bounds the requests of one address whose checks are in flight at once.
    pub(crate) fn take(&self, client: Option<IpAddr>, now: u64) -> Result<(), u64> {
        let client = client.map(group);
        let mut table = self.table.lock();
        if !table.contains_key(&client) && table.len() >= self.capacity {
            let oldest = table.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
        let bucket = table.entry(client).or_insert(Bucket { tokens: self.burst, at: now });
        let left = self.left(*bucket, now);
        if left < 1.0 {
            let wait = ((1.0 - left) / self.per_second).ceil();
            // `as` saturates: a tiny rate waits u64::MAX seconds at most.
            return Err((wait as u64).max(1));
        }
        bucket.tokens = left - 1.0;
        bucket.at = bucket.at.max(now);
        Ok(())
    }

    /// Gives back the failure [`take`](Self::take) took for `client`, which authenticated. An
    /// address back to a full allowance is forgotten.
    pub(crate) fn succeeded(&self, client: Option<IpAddr>, now: u64) {
        let client = client.map(group);
        let mut table = self.table.lock();
        let Some(bucket) = table.get_mut(&client) else { return };
        bucket.tokens = self.left(*bucket, now) + 1.0;
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= self.burst {
            table.remove(&client);
        }
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
            assert_eq!(limit.take(ip(1), 0), Ok(()));
        }
        assert_eq!(limit.take(ip(1), 0), Err(2));
        assert_eq!(limit.take(ip(1), SEC), Err(1));
        assert_eq!(limit.take(ip(1), 2 * SEC), Ok(()));
        assert_eq!(limit.take(ip(2), 0), Ok(()), "another address is not affected");
        assert_eq!(limit.take(None, 0), Ok(()));
        // More addresses fail: the table keeps 4, dropping the one that failed first.
        for n in 3..7 {
            assert_eq!(limit.take(ip(n), 3 * SEC + u64::from(n)), Ok(()));
        }
        assert_eq!(limit.len(), 4);
        assert_eq!(limit.take(ip(1), 3 * SEC), Ok(()), "forgotten: a fresh burst");
    }

    #[test]
    fn a_success_gives_its_failure_back_and_requests_in_flight_are_bounded() {
        let limit = FailureLimit::new(2, 1.0, 8);
        // Two requests of one address are being checked at once: a third waits.
        assert_eq!(limit.take(ip(1), 0), Ok(()));
        assert_eq!(limit.take(ip(1), 0), Ok(()));
        assert_eq!(limit.take(ip(1), 0), Err(1));
        // Both authenticate: the address is back to its burst, and forgotten.
        limit.succeeded(ip(1), 0);
        limit.succeeded(ip(1), 0);
        assert_eq!(limit.len(), 0);
        assert_eq!([limit.take(ip(1), 0), limit.take(ip(1), 0)], [Ok(()), Ok(())]);
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket_and_mapped_ipv4_is_ipv4() {
        let limit = FailureLimit::new(1, 1.0, 8);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit.take(Some(a), 0), Ok(()));
        assert_eq!(limit.take(Some(b), 0), Err(1), "same /64");
        assert_eq!(limit.take(Some(other), 0), Ok(()), "another /64");
        assert_eq!(limit.take(ip(0x7f00_0001), 0), Ok(()));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(limit.take(Some(mapped), 0), Err(1), "the IPv4 address's bucket");
    }
}
