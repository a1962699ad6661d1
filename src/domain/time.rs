//! Time: the clock every rule reads (so tests can cross a period boundary without
//! waiting) and billing periods (UTC calendar months).

use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use super::error::FieldViolation;

/// Microseconds since the Unix epoch: how every time is stored.
pub type Micros = i64;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    fn now_micros(&self) -> Micros {
        self.now().timestamp_micros()
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.timestamp_micros())))
    }

    pub fn set(&self, time: DateTime<Utc>) {
        self.0.store(time.timestamp_micros(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.0
            .fetch_add(by.num_microseconds().unwrap_or(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        from_micros(self.0.load(Ordering::SeqCst))
    }
}

pub fn from_micros(micros: Micros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// A billing period: one UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BillingPeriod {
    year: i32,
    month: u32,
}

impl BillingPeriod {
    pub fn containing(time: DateTime<Utc>) -> Self {
        BillingPeriod {
            year: time.year(),
            month: time.month(),
        }
    }

    pub fn containing_micros(micros: Micros) -> Self {
        Self::containing(from_micros(micros))
    }

    /// Parses `YYYY-MM`.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let bad = || FieldViolation::new(field, "must be a period YYYY-MM");
        let value = value.trim();
        let (year, month) = value.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(BillingPeriod { year, month })
    }

    /// Parses `YYYY-MM`, or the period containing `now` when empty.
    pub fn parse_or_current(
        field: &str,
        value: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldViolation> {
        if value.trim().is_empty() {
            Ok(Self::containing(now))
        } else {
            Self::parse(field, value)
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    pub fn next(&self) -> Self {
        if self.month == 12 {
            BillingPeriod {
                year: self.year + 1,
                month: 1,
            }
        } else {
            BillingPeriod {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn previous(&self) -> Self {
        if self.month == 1 {
            BillingPeriod {
                year: self.year - 1,
                month: 12,
            }
        } else {
            BillingPeriod {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn start_micros(&self) -> Micros {
        self.start().timestamp_micros()
    }

    /// The first microsecond after the period.
    pub fn end_micros(&self) -> Micros {
        self.next().start_micros()
    }
}

impl std::fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let p = BillingPeriod::parse("period", "2026-12").unwrap();
        assert_eq!(p.to_string(), "2026-12");
        assert_eq!(p.next().to_string(), "2027-01");
        assert_eq!(p.next().previous(), p);
        assert_eq!(BillingPeriod::containing_micros(p.end_micros() - 1), p);
        assert_eq!(BillingPeriod::containing_micros(p.end_micros()), p.next());
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "abcd-ef"] {
            assert!(BillingPeriod::parse("period", bad).is_err(), "{bad}");
        }
    }
}
