//! The retry delay of a failed attempt: exponential in the receive count, capped, with a
//! random share so that jobs failing together do not all come back together.

use std::time::Duration;

use k8or::config::StageConfig;

/// The delay before attempt `receive_count + 1`: `backoff_base_ms` doubled for every
/// receive after the first, capped at `backoff_max_ms`; then `jitter` (0–1) of it is
/// replaced by `random` (0–1) times that share. Pure: the caller draws `random`.
pub fn retry_delay(cfg: &StageConfig, receive_count: u32, random: f64) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(63);
    let full = cfg
        .backoff_base_ms
        .saturating_mul(1u64.checked_shl(doublings).unwrap_or(u64::MAX))
        .min(cfg.backoff_max_ms);
    let jitter = cfg.jitter.clamp(0.0, 1.0);
    let random = random.clamp(0.0, 1.0);
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "delays are far below 2^52 ms, and the product is non-negative"
    )]
    let ms = (full as f64 * (1.0 - jitter + jitter * random)).round() as u64;
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(base: u64, max: u64, jitter: f64) -> StageConfig {
        let mut c = k8or::Settings::default().stages.validate;
        c.backoff_base_ms = base;
        c.backoff_max_ms = max;
        c.jitter = jitter;
        c
    }

    #[test]
    fn doubles_per_receive_without_jitter() {
        let c = cfg(1000, 60_000, 0.0);
        let delays: Vec<u64> = (1..=8)
            .map(|n| retry_delay(&c, n, 0.7).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
        );
    }

    #[test]
    fn jitter_replaces_its_share_of_the_delay() {
        let c = cfg(1000, 60_000, 0.5);
        assert_eq!(retry_delay(&c, 3, 0.0), Duration::from_millis(2000));
        assert_eq!(retry_delay(&c, 3, 1.0), Duration::from_millis(4000));
        assert_eq!(retry_delay(&c, 3, 0.5), Duration::from_millis(3000));
        let full = cfg(1000, 60_000, 1.0);
        assert_eq!(retry_delay(&full, 1, 0.0), Duration::ZERO);
    }

    #[test]
    fn receive_count_zero_and_huge_counts_are_safe() {
        let c = cfg(250, 10_000, 0.0);
        assert_eq!(retry_delay(&c, 0, 0.0), Duration::from_millis(250));
        assert_eq!(
            retry_delay(&c, u32::MAX, 0.0),
            Duration::from_millis(10_000)
        );
        let big = cfg(u64::MAX / 2, u64::MAX, 0.0);
        assert!(retry_delay(&big, 40, 0.0) >= Duration::from_millis(u64::MAX / 2));
    }

    #[test]
    fn out_of_range_inputs_are_clamped() {
        let c = cfg(1000, 8000, 0.5);
        assert_eq!(retry_delay(&c, 1, -3.0), retry_delay(&c, 1, 0.0));
        assert_eq!(retry_delay(&c, 1, 9.0), retry_delay(&c, 1, 1.0));
    }
}
