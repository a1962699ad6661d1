//! `orgs-bench watch-events`: delivery latency of changes to many open
//! `WatchEvents` streams under a write load, next to the Health/Check round
//! trip measured in the same run (before the streams open, and while they
//! stream), and the server's memory with those streams open.
//!
//! The streams are opened with the bench token; the server's
//! `ORGS_WATCHES_PER_PRINCIPAL` must allow that many (`bench/events.sh` sets
//! it). Latency runs from just before the `CreateMembership` call to the
//! arrival of its `membership.created` event at each stream, so it includes
//! the commit and this process's own work on 2 shared cores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use orgs::proto::v1 as pb;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::health::health_baseline;
use crate::report::{self, ms};
use crate::target::Target;

#[derive(Args)]
pub struct WatchEventsArgs {
    /// Open `WatchEvents` streams.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Streams per HTTP/2 connection (at most the server's
    /// `ORGS_MAX_CONCURRENT_STREAMS`).
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
    /// `CreateMembership` calls per second while the streams are open.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// How long the write load runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Organizations the memberships are spread over.
    #[arg(long, default_value_t = 10)]
    organizations: usize,
    /// The server's process id, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn quantile(histogram: &Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1000.0
}

pub async fn watch_events(target: &Target, run: &str, args: WatchEventsArgs) -> anyhow::Result<()> {
    let (_, health_round_trip) = health_baseline(target, 1, 2).await?;
    println!(
        "baseline Health/Check round trip (median, no streams open): {:.2} ms",
        ms(health_round_trip)
    );
    report::print_memory(args.server_pid, "before the streams");

    // The organizations the load writes into.
    let channel = target.channel().await?;
    let mut orgs = target.orgs(channel.clone());
    let mut organizations = Vec::new();
    for o in 0..args.organizations.max(1) {
        let created = orgs
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("events {run} {o}"),
                ..Default::default()
            })
            .await?
            .into_inner();
        organizations.push(created.organization.map(|o| o.id).unwrap_or_default());
    }

    // When each membership's call was sent, by user id.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (arrivals, mut arrived) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let connections = args.streams.div_ceil(args.per_connection.max(1));
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(target.channel().await?);
    }
    let opening = Instant::now();
    let mut opened = Vec::new();
    for s in 0..args.streams {
        let mut client = target.events(channels[s % connections].clone());
        opened.push(tokio::spawn(async move {
            client
                .watch_events(pb::WatchEventsRequest {
                    types: vec!["membership.created".into()],
                    ..Default::default()
                })
                .await
                .map(|response| response.into_inner())
        }));
    }
    let mut streams = Vec::new();
    for task in opened {
        streams.push(task.await??);
    }
    println!(
        "{} WatchEvents streams open in {:.1} s over {connections} connections",
        args.streams,
        opening.elapsed().as_secs_f64()
    );
    for mut stream in streams {
        let (arrivals, sent) = (arrivals.clone(), sent.clone());
        tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                let now = Instant::now();
                if let Some(pb::watch_events_response::Message::Event(event)) = message.message
                    && let Some(pb::event::Resource::Membership(membership)) = event.resource
                {
                    let at = sent
                        .lock()
                        .ok()
                        .and_then(|sent| sent.get(&membership.user_id).copied());
                    if let Some(at) = at {
                        let _ = arrivals.send(now.duration_since(at));
                    }
                }
            }
        });
    }
    drop(arrivals);
    tokio::time::sleep(Duration::from_secs(1)).await;
    report::print_memory(
        args.server_pid,
        &format!("with {} idle streams", args.streams),
    );

    // Health/Check round trips while the streams stream.
    let health_channel = target.channel().await?;
    let load_over = Instant::now() + Duration::from_secs(args.seconds);
    let health = tokio::spawn(async move {
        let mut client = HealthClient::new(health_channel);
        let mut round_trips = Vec::new();
        while Instant::now() < load_over {
            let start = Instant::now();
            if client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok()
            {
                round_trips.push(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        round_trips.sort();
        round_trips
    });

    // The write load: CreateMembership at a fixed rate, each call on its own
    // task so a slow one does not slow the rate.
    let total = u64::from(args.rate) * args.seconds;
    let mut ticker =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
    let mut calls = Vec::new();
    for n in 0..total {
        ticker.tick().await;
        let user_id = format!("bench_{run}_e{n}");
        let organization_id = organizations[n as usize % organizations.len()].clone();
        let mut orgs = orgs.clone();
        let sent = sent.clone();
        calls.push(tokio::spawn(async move {
            if let Ok(mut sent) = sent.lock() {
                sent.insert(user_id.clone(), Instant::now());
            }
            orgs.create_membership(pb::CreateMembershipRequest {
                organization_id,
                user_id,
                ..Default::default()
            })
            .await
        }));
    }
    let mut failed = 0;
    for call in calls {
        if call.await?.is_err() {
            failed += 1;
        }
    }
    let expected = (total - failed) as usize * args.streams;
    let mut latencies = Histogram::<u64>::new(3)?;
    let wait = Instant::now() + Duration::from_secs(60);
    while (latencies.len() as usize) < expected {
        let left = wait.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, arrived.recv()).await {
            Ok(Some(latency)) => latencies.record(latency.as_micros() as u64)?,
            _ => break,
        }
    }
    let health = health.await?;
    report::print_memory(args.server_pid, "after the write load");

    println!(
        "{} CreateMembership calls at {}/s ({failed} failed) delivered to {} streams: {} of {expected} deliveries",
        total,
        args.rate,
        args.streams,
        latencies.len()
    );
    let pick = |q: f64| {
        health
            .get(((health.len().max(1) - 1) as f64 * q) as usize)
            .copied()
    };
    let (health_p50, health_p99) = (
        pick(0.5).map(ms).unwrap_or_default(),
        pick(0.99).map(ms).unwrap_or_default(),
    );
    println!(
        "  delivery latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
    );
    println!(
        "  Health/Check round trip during the load: p50 {health_p50:.2} ms, p99 {health_p99:.2} ms ({} calls); delivery p50 = {:.0}× the baseline round trip",
        health.len(),
        quantile(&latencies, 0.5) / ms(health_round_trip)
    );
    Ok(())
}
