//! Token buckets keyed by who asks (a remote address on `POST /didcomm`, a
//! token on the control plane). Idle buckets are forgotten.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate and a burst; `per_sec` 0 admits everything.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

pub struct RateLimiter<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Buckets idle this long are full again and can be forgotten.
const FORGET_AFTER_SECS: f64 = 60.0;
const MAX_TRACKED: usize = 100_000;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: Rate) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at the default rate; false when empty.
    pub fn admit(&self, key: &K) -> bool {
        self.take(key, 1, self.rate).is_ok()
    }

    /// Takes `cost` tokens for `key` at `rate` (0: the default rate), or
    /// says how long until they are there.
    pub fn take(&self, key: &K, cost: u32, rate: Rate) -> Result<(), Duration> {
        let rate = if rate.per_sec == 0 { self.rate } else { rate };
        if rate.per_sec == 0 {
            return Ok(());
        }
        let (per_sec, burst) = (rate.per_sec as f64, rate.burst.max(cost) as f64);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() < FORGET_AFTER_SECS);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(burst);
        *at = now;
        let cost = cost as f64;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - *tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn burst_then_refuse_then_refill() {
        let l = RateLimiter::new(Rate {
            per_sec: 1000,
            burst: 3,
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.admit(&a)));
        assert!(!l.admit(&a));
        assert!(l.admit(&b), "buckets are per key");
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.admit(&a), "refilled at 1000/s");
        let off = RateLimiter::new(Rate {
            per_sec: 0,
            burst: 0,
        });
        assert!(off.admit(&a), "0 turns the limit off");
    }

    #[test]
    fn costs_and_per_key_rates() {
        let l = RateLimiter::new(Rate {
            per_sec: 1,
            burst: 10,
        });
        let slow = Rate {
            per_sec: 2,
            burst: 4,
        };
        assert!(l.take(&"t", 4, slow).is_ok());
        let wait = l.take(&"t", 3, slow).unwrap_err();
        assert!(
            wait > Duration::from_millis(1000) && wait <= Duration::from_millis(1500),
            "{wait:?}"
        );
        assert!(
            l.take(
                &"u",
                10,
                Rate {
                    per_sec: 0,
                    burst: 0
                }
            )
            .is_ok(),
            "the default rate"
        );
        assert!(
            l.take(
                &"u",
                1,
                Rate {
                    per_sec: 0,
                    burst: 0
                }
            )
            .is_err()
        );
    }
}
