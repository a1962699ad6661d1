//! Closed-loop load: a fixed number of callers, each starting its next call
//! when the previous one returns, for a fixed time or number of calls; every call's latency goes
//! into an HDR histogram.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with three
/// significant digits.
const HIGHEST_MICROS: u64 = 600_000_000;

/// One caller of a measurement: makes one call at a time.
pub trait Caller: Send + 'static {
    /// One call; an error is counted and not timed.
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send + '_;
}

/// What one measurement saw.
pub struct Measured {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies of the successful calls, in microseconds.
    pub latency: Histogram<u64>,
}

impl Measured {
    fn empty() -> Measured {
        Measured {
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latency: new_histogram(),
        }
    }

    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// The latency at quantile `q` (0.5, 0.99, …) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// Another measurement of the same call folded into this one: counts and
    /// histograms add up, and so do the times, so the rate stays calls per
    /// second of measuring.
    pub fn merge(&mut self, other: &Measured) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.elapsed += other.elapsed;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("constant, valid histogram bounds")
}

/// Runs `callers` concurrently for `duration`: each makes calls one after
/// another until the time is up. The rate counts the calls that succeeded over
/// the time until the last caller returned.
pub async fn run<C: Caller>(callers: Vec<C>, duration: Duration) -> anyhow::Result<Measured> {
    let deadline = Instant::now() + duration;
    run_while(callers, move || Instant::now() < deadline).await
}

/// Runs `callers` concurrently until they have made `total` calls between
/// them.
pub async fn run_count<C: Caller>(callers: Vec<C>, total: usize) -> anyhow::Result<Measured> {
    let left = Arc::new(AtomicUsize::new(total));
    run_while(callers, move || {
        left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    })
    .await
}

/// Runs `callers` concurrently; each makes another call while `go_on` says so.
async fn run_while<C: Caller>(
    callers: Vec<C>,
    go_on: impl Fn() -> bool + Clone + Send + 'static,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(callers.len());
    for mut caller in callers {
        let go_on = go_on.clone();
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::empty();
            while go_on() {
                let start = Instant::now();
                match caller.call().await {
                    Ok(()) => {
                        let micros = start.elapsed().as_micros();
                        measured
                            .latency
                            .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                        measured.ok += 1;
                    }
                    Err(error) => {
                        measured.errors += 1;
                        if measured.first_error.is_none() {
                            measured.first_error = Some(error);
                        }
                    }
                }
            }
            measured
        }));
    }
    let mut total = Measured::empty();
    for task in tasks {
        total.merge(&task.await?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
