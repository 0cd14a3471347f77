//! The check script's reply, decoded into a [`Reply`] (see `script::CHECK` for
//! what it returns). A reply of another shape is a [`MalformedReply`], never a panic.

use redis::Value;

/// What the check script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// Every bucket admitted the request (`{1, granted, used, customer_used}`): `granted`
    /// requests were taken from the key's quota, which counts `used` now (grant included); the
    /// customer's quota (when sent) counts `customer_used`, this request included.
    Admitted { granted: u64, used: u64, customer_used: u64 },
    /// The bucket at index `bucket` (0-based, in the order the buckets were sent) refused
    /// (`{0, bucket + 1, wait_us, 0}`): it admits again in `wait_micros` (at least 1).
    Throttled { bucket: usize, wait_micros: u64 },
    /// The key's quota has no room left (`{2, used, held, 0}`): it counts `used`; `held`: a
    /// usage update is under way, the refusal is not to be cached.
    QuotaSpent { used: u64, held: bool },
    /// The customer's quota has no room left (`{3, used, 0, 0}`): it counts `used`.
    CustomerQuotaSpent { used: u64 },
}

/// The reply was not one the script gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum MalformedReply {
    /// Not a list (the server answered a status, a string, nil...).
    #[error("not a list: {0}")]
    NotAList(&'static str),
    /// A list of other than four items.
    #[error("{0} items, not 4")]
    Length(usize),
    /// Item number `0` (0-based) is not an integer.
    #[error("item {0} is not an integer")]
    NotAnInteger(usize),
    /// The first item is none of 0, 1, 2, 3.
    #[error("unknown status {0}")]
    UnknownStatus(i64),
    /// A refusal naming a bucket below 1.
    #[error("refused by bucket {0}")]
    NoSuchBucket(i64),
}

/// A count the script returned: one below 0 (a counter set below 0 by hand) reads as 0.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A short name of a value's type, for the error (never its content).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => "a string",
        Value::Okay => "OK",
        Value::ServerError(_) => "an error",
        _ => "another type",
    }
}

impl TryFrom<Value> for Reply {
    type Error = MalformedReply;

    fn try_from(value: Value) -> Result<Self, MalformedReply> {
        let items = match value {
            Value::Array(items) => items,
            other => return Err(MalformedReply::NotAList(type_name(&other))),
        };
        if items.len() != 4 {
            return Err(MalformedReply::Length(items.len()));
        }
        let mut ints = [0i64; 4];
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Int(n) => ints[i] = *n,
                _ => return Err(MalformedReply::NotAnInteger(i)),
            }
        }
        let [status, a, b, c] = ints;
        match status {
            1 => Ok(Reply::Admitted { granted: count(a), used: count(b), customer_used: count(c) }),
            0 => {
                let bucket =
                    a.checked_sub(1).and_then(|i| usize::try_from(i).ok()).ok_or(MalformedReply::NoSuchBucket(a))?;
                Ok(Reply::Throttled { bucket, wait_micros: count(b).max(1) })
            }
            2 => Ok(Reply::QuotaSpent { used: count(a), held: b == 1 }),
            3 => Ok(Reply::CustomerQuotaSpent { used: count(a) }),
            other => Err(MalformedReply::UnknownStatus(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[i64]) -> Value {
        Value::Array(items.iter().map(|n| Value::Int(*n)).collect())
    }

    #[test]
    fn each_answer_of_the_script_decodes() {
        let admitted = |granted, used, customer_used| Ok(Reply::Admitted { granted, used, customer_used });
        assert_eq!(Reply::try_from(list(&[1, 5, 42, 0])), admitted(5, 42, 0));
        assert_eq!(Reply::try_from(list(&[1, 0, 0, 7])), admitted(0, 0, 7));
        assert_eq!(Reply::try_from(list(&[0, 1, 250, 0])), Ok(Reply::Throttled { bucket: 0, wait_micros: 250 }));
        assert_eq!(Reply::try_from(list(&[0, 3, 9, 0])), Ok(Reply::Throttled { bucket: 2, wait_micros: 9 }));
        assert_eq!(Reply::try_from(list(&[2, 200, 0, 0])), Ok(Reply::QuotaSpent { used: 200, held: false }));
        assert_eq!(Reply::try_from(list(&[2, 200, 1, 0])), Ok(Reply::QuotaSpent { used: 200, held: true }));
        assert_eq!(Reply::try_from(list(&[3, 4, 0, 0])), Ok(Reply::CustomerQuotaSpent { used: 4 }));
    }

    #[test]
    fn out_of_range_numbers_are_clamped_as_before() {
        // A counter set below 0 reads as 0; a wait is at least 1 µs.
        let zero = Ok(Reply::Admitted { granted: 0, used: 0, customer_used: 0 });
        assert_eq!(Reply::try_from(list(&[1, -3, -1, -2])), zero);
        assert_eq!(Reply::try_from(list(&[0, 1, 0, 0])), Ok(Reply::Throttled { bucket: 0, wait_micros: 1 }));
        assert_eq!(Reply::try_from(list(&[0, 1, -7, 0])), Ok(Reply::Throttled { bucket: 0, wait_micros: 1 }));
        assert_eq!(Reply::try_from(list(&[2, -1, 0, 0])), Ok(Reply::QuotaSpent { used: 0, held: false }));
        assert_eq!(Reply::try_from(list(&[3, -1, 0, 0])), Ok(Reply::CustomerQuotaSpent { used: 0 }));
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        assert_eq!(Reply::try_from(Value::Nil), Err(MalformedReply::NotAList("nil")));
        assert_eq!(Reply::try_from(Value::Okay), Err(MalformedReply::NotAList("OK")));
        assert_eq!(Reply::try_from(Value::Int(1)), Err(MalformedReply::NotAList("an integer")));
        assert_eq!(Reply::try_from(list(&[])), Err(MalformedReply::Length(0)));
        assert_eq!(Reply::try_from(list(&[1, 2, 3])), Err(MalformedReply::Length(3)), "the old shape");
        assert_eq!(Reply::try_from(list(&[1, 2, 3, 4, 5])), Err(MalformedReply::Length(5)));
        let with_string =
            Value::Array(vec![Value::Int(1), Value::BulkString(b"5".to_vec()), Value::Int(0), Value::Int(0)]);
        assert_eq!(Reply::try_from(with_string), Err(MalformedReply::NotAnInteger(1)));
        assert_eq!(Reply::try_from(list(&[4, 0, 0, 0])), Err(MalformedReply::UnknownStatus(4)));
        assert_eq!(Reply::try_from(list(&[-1, 0, 0, 0])), Err(MalformedReply::UnknownStatus(-1)));
        assert_eq!(Reply::try_from(list(&[0, 0, 10, 0])), Err(MalformedReply::NoSuchBucket(0)));
        assert_eq!(Reply::try_from(list(&[0, -2, 10, 0])), Err(MalformedReply::NoSuchBucket(-2)));
        assert_eq!(MalformedReply::Length(3).to_string(), "3 items, not 4");
    }
}
