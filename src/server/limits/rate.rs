//! Per-principal token buckets, one set for reads and one for writes, kept by
//! `governor` (GCRA, keyed by the token's `sub`). The keyed state holds only
//! principals whose buckets are not full: [`RateLimits::forget_idle`], run
//! periodically, drops the others, so a flood of distinct principals cannot
//! grow it without limit.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock, Reference},
    middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use crate::auth::policy::CallKind;

type Buckets<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The read and write buckets of every principal.
pub struct RateLimits<C: Clock = DefaultClock> {
    reads: Option<Buckets<C>>,
    writes: Option<Buckets<C>>,
    clock: C,
}

impl RateLimits {
    /// `reads_per_second` and `writes_per_second` per principal, bursts of
    /// twice that; 0 switches a limit off.
    pub fn new(reads_per_second: u32, writes_per_second: u32) -> Self {
        Self::with_clock(reads_per_second, writes_per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    pub fn with_clock(reads_per_second: u32, writes_per_second: u32, clock: C) -> Self {
        let buckets = |per_second: u32| {
            NonZeroU32::new(per_second).map(|rate| {
                let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
                RateLimiter::dashmap_with_clock(
                    Quota::per_second(rate).allow_burst(burst),
                    clock.clone(),
                )
            })
        };
        RateLimits {
            reads: buckets(reads_per_second),
            writes: buckets(writes_per_second),
            clock,
        }
    }

    fn buckets(&self, kind: CallKind) -> Option<&Buckets<C>> {
        match kind {
            CallKind::Read => self.reads.as_ref(),
            CallKind::Write => self.writes.as_ref(),
        }
    }

    /// Takes one call of `kind` from `principal`'s bucket, or says how long
    /// until the bucket has one again.
    pub fn check(&self, kind: CallKind, principal: &String) -> Result<(), Duration> {
        let Some(buckets) = self.buckets(kind) else {
            return Ok(());
        };
        buckets
            .check_key(principal)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the state of principals whose buckets are full again.
    pub fn forget_idle(&self) {
        for buckets in [&self.reads, &self.writes].into_iter().flatten() {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }

    /// The principals with state, reads and writes counted separately.
    pub fn tracked(&self) -> usize {
        [&self.reads, &self.writes]
            .into_iter()
            .flatten()
            .map(|buckets| buckets.len())
            .sum()
    }
}

impl<C: Clock> std::fmt::Debug for RateLimits<C>
where
    C::Instant: Reference,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("reads", &self.reads.is_some())
            .field("writes", &self.writes.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn a_principal_gets_its_burst_then_waits_and_others_are_unaffected() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(0, 10, clock.clone());
        let alice = "alice".to_string();
        for _ in 0..20 {
            assert_eq!(limits.check(CallKind::Write, &alice), Ok(()));
        }
        let wait = limits.check(CallKind::Write, &alice).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(limits.check(CallKind::Write, &"bob".to_string()), Ok(()));
        // Reads are switched off: never limited.
        for _ in 0..1000 {
            assert_eq!(limits.check(CallKind::Read, &alice), Ok(()));
        }
        clock.advance(wait);
        assert_eq!(limits.check(CallKind::Write, &alice), Ok(()));
    }

    #[test]
    fn a_flood_of_distinct_principals_is_forgotten_once_their_buckets_refill() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(1000, 100, clock.clone());
        for i in 0..10_000 {
            let principal = format!("user_{i}");
            limits.check(CallKind::Read, &principal).unwrap();
            limits.check(CallKind::Write, &principal).unwrap();
        }
        assert_eq!(limits.tracked(), 20_000);
        // A principal that used its whole burst stays until it refills.
        let busy = "busy".to_string();
        while limits.check(CallKind::Write, &busy).is_ok() {}
        clock.advance(Duration::from_millis(100));
        limits.forget_idle();
        assert_eq!(limits.tracked(), 1);
        clock.advance(Duration::from_secs(2));
        limits.forget_idle();
        assert_eq!(limits.tracked(), 0);
    }
}
