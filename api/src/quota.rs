//! Per-user budgets, one GCRA limiter (governor) each per API process, keyed by username,
//! with a burst of the whole minute's budget (N API nodes let a user make up to N times as
//! many):
//!
//! - the quota of what a request creates for good: image UIDs (a `wp_image_uid` row and two
//!   events each) and jobs (an upload, a job record, events). A token is no licence to make
//!   them without end;
//! - the user-error-log items a user's failed requests write (the envelope's), and those
//!   of requests without a token, under one key.
//!
//! A limiter keeps a state per key it has seen. A state whose budget is whole again says
//! nothing a missing one would not, so the map is pruned to the keys of about the last
//! minute whenever it has doubled since the last pruning: memory follows the users active
//! in a minute, not every user since the process started, at an amortized cost of a few
//! map entries per request.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::ApiError;

/// The fewest states kept before the first pruning.
const PRUNE_FROM: usize = 1024;

type Limiter<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// So many a minute per key, in a burst of that many (GCRA), with the map of keys pruned as
/// the module says.
pub struct KeyedBudget<C: Clock = DefaultClock> {
    /// `None`: no limit (set to 0).
    limiter: Option<Limiter<C>>,
    /// How many states the map may hold before the next pruning.
    prune_at: AtomicUsize,
}

impl KeyedBudget {
    /// `per_minute` for each key; 0 for no limit.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock> KeyedBudget<C> {
    fn with_clock(per_minute: u32, clock: C) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| {
                RateLimiter::new(
                    Quota::per_minute(n),
                    DefaultKeyedStateStore::default(),
                    clock,
                )
            }),
            prune_at: AtomicUsize::new(PRUNE_FROM),
        }
    }

    /// Takes one of `key`'s budget, or says how long until one is back.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let taken = limiter.check_key(&key.to_owned());
        self.prune(limiter);
        taken.map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Drops the states whose budget is whole again, once the map has doubled.
    fn prune(&self, limiter: &Limiter<C>) {
        if limiter.len() < self.prune_at.load(Ordering::Relaxed) {
            return;
        }
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let next = (limiter.len() * 2).max(PRUNE_FROM);
        self.prune_at.store(next, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn states(&self) -> usize {
        self.limiter.as_ref().map_or(0, Limiter::len)
    }
}

/// The user-error-log items failed requests may write a minute: each user's own, and
/// those of requests without a valid token together (anyone can make those, each a write
/// under one partition key).
pub struct ErrorBudget {
    users: KeyedBudget,
    anonymous: KeyedBudget,
}

impl ErrorBudget {
    /// `per_user` for each user, `anonymous` for all requests without a token; 0: no limit.
    pub fn per_minute(per_user: u32, anonymous: u32) -> Self {
        Self {
            users: KeyedBudget::per_minute(per_user),
            anonymous: KeyedBudget::per_minute(anonymous),
        }
    }

    /// Takes one from `username`'s budget (`None`: the anonymous one); whether the error
    /// may be written.
    pub fn take(&self, username: Option<&str>) -> bool {
        match username {
            Some(user) => self.users.take(user).is_ok(),
            None => self.anonymous.take("").is_ok(),
        }
    }
}

/// Each user's quota of new UIDs and jobs.
pub struct WriteQuota {
    budget: KeyedBudget,
    per_minute: u32,
}

impl WriteQuota {
    /// `per_minute` new UIDs and jobs per user; 0 for no quota.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            budget: KeyedBudget::per_minute(per_minute),
            per_minute,
        }
    }

    /// Takes one of the user's quota, or says how long until one is back (429).
    pub fn take(&self, username: &str) -> Result<(), ApiError> {
        self.budget
            .take(username)
            .map_err(|wait| ApiError::RateLimited {
                per_minute: self.per_minute,
                // Whole seconds, rounded up: a client that waits that long gets one.
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_user_gets_the_minutes_quota_and_others_their_own() {
        let quota = WriteQuota::per_minute(3);
        for _ in 0..3 {
            quota.take("jamesbond").unwrap();
        }
        match quota.take("jamesbond") {
            Err(ApiError::RateLimited {
                per_minute: 3,
                retry_after_secs,
            }) => assert!((1..=20).contains(&retry_after_secs), "{retry_after_secs}"),
            other => panic!("{other:?}"),
        }
        quota.take("madamecoco").unwrap();
    }

    #[test]
    fn states_of_users_whose_quota_is_whole_again_are_pruned() {
        let clock = FakeRelativeClock::default();
        let quota = KeyedBudget::with_clock(2, clock.clone());
        let user = |i: usize| format!("user{i}");
        // More users than the first pruning keeps, all within one minute: all are kept,
        // and each still has the quota it did not use.
        for i in 0..1500 {
            quota.take(&user(i)).unwrap();
        }
        assert_eq!(quota.states(), 1500);
        quota.take(&user(7)).unwrap();
        assert!(quota.take(&user(7)).is_err(), "user7 used both");

        // A minute on, new users come: the old states go at the next pruning.
        clock.advance(Duration::from_secs(61));
        for i in 1500..2100 {
            quota.take(&user(i)).unwrap();
        }
        let states = quota.states();
        assert!(states < 1000, "{states} states kept");
        // Whole again after the minute, as a kept state would be.
        quota.take(&user(7)).unwrap();
        quota.take(&user(7)).unwrap();
    }

    #[test]
    fn zero_is_no_quota() {
        let quota = WriteQuota::per_minute(0);
        for _ in 0..1000 {
            quota.take("jamesbond").unwrap();
        }
    }
}
