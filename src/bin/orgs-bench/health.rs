//! The `grpc.health.v1.Health/Check` baseline every measurement is read against.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use tonic::transport::Channel;

use crate::load::{self, Caller, Measured};
use crate::target::Target;

/// Health/Check calls per second with `concurrency` in flight for `seconds`,
/// and the median round trip of one call at a time.
pub async fn health_baseline(
    target: &Target,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<(f64, Duration)> {
    let channel = target.channel().await?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut client = HealthClient::new(channel.clone());
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await?;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let mut client = HealthClient::new(channel);
    let mut round_trips = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        round_trips.push(start.elapsed());
    }
    round_trips.sort();
    Ok((rate, round_trips[round_trips.len() / 2]))
}

/// One caller of Health/Check.
pub struct HealthCaller {
    client: HealthClient<Channel>,
}

impl Caller for HealthCaller {
    async fn call(&mut self) -> Result<(), String> {
        self.client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    }
}

/// Health/Check with `concurrency` calls in flight on one connection for
/// `duration`, as every other measurement of a run is made.
pub async fn health_load(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let channel = target.channel().await?;
    let callers = (0..concurrency)
        .map(|_| HealthCaller {
            client: HealthClient::new(channel.clone()),
        })
        .collect();
    load::run(callers, duration).await
}
