//! Each user's quota of what a request creates for good: image UIDs (a `wp_image_uid` row
//! and two events each) and jobs (an upload, a job record, events). A token is no licence
//! to make them without end. One GCRA limiter (governor) per API process, keyed by
//! username, with a burst of the whole minute's quota: N API nodes let a user make up to
//! N times as many.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;

pub struct WriteQuota {
    /// `None`: no quota (set to 0).
    limiter: Option<(DefaultKeyedRateLimiter<String>, u32)>,
}

impl WriteQuota {
    /// `per_minute` new UIDs and jobs per user; 0 for no quota.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| {
                (
                    DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)),
                    per_minute,
                )
            }),
        }
    }

    /// Takes one of the user's quota, or says how long until one is back (429).
    pub fn take(&self, username: &str) -> Result<(), ApiError> {
        let Some((limiter, per_minute)) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&username.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                ApiError::RateLimited {
                    per_minute: *per_minute,
                    // Whole seconds, rounded up: a client that waits that long gets one.
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
            })
    }
}

#[cfg(test)]
mod tests {
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
    fn zero_is_no_quota() {
        let quota = WriteQuota::per_minute(0);
        for _ in 0..1000 {
            quota.take("jamesbond").unwrap();
        }
    }
}
