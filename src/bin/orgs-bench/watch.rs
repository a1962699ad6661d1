//! `orgs-bench watch`: delivery latency of billable transitions to many open
//! watches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use orgs::proto::v1 as pb;

use crate::health::health_baseline;
use crate::report::ms;
use crate::target::Target;

#[derive(Args)]
pub struct WatchArgs {
    /// Open watches.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Watches per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
    /// Transitions to time, one after another.
    #[arg(long, default_value_t = 20)]
    transitions: usize,
}

pub async fn watch(target: &Target, run: &str, args: WatchArgs) -> anyhow::Result<()> {
    let (_, health_round_trip) = health_baseline(target, 1, 2).await?;
    println!(
        "baseline Health/Check round trip (median): {:.2} ms",
        ms(health_round_trip)
    );
    let connections = args.watchers.div_ceil(args.per_connection.max(1));
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(target.channel().await?);
    }
    // Every watch reports (transition index, arrival) on this channel.
    let (arrivals, mut arrived) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let (opened, mut ready) = tokio::sync::mpsc::unbounded_channel::<()>();
    let expected: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    for w in 0..args.watchers {
        let mut client = target.billing(channels[w % connections].clone());
        let (arrivals, opened, expected) = (arrivals.clone(), opened.clone(), expected.clone());
        tokio::spawn(async move {
            let mut stream = match client
                .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
                    start_cursor: String::new(),
                    send_initial_state: true,
                })
                .await
            {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    eprintln!("watch: {status}");
                    return;
                }
            };
            let mut announced = false;
            while let Ok(Some(message)) = stream.message().await {
                use pb::watch_billable_organizations_response::Event;
                match message.event {
                    Some(Event::Checkpoint(_)) if !announced => {
                        announced = true;
                        let _ = opened.send(());
                    }
                    Some(Event::OrganizationBecameBillable(usage)) if announced => {
                        let now = Instant::now();
                        let index = expected
                            .lock()
                            .map(|ids| ids.iter().position(|id| *id == usage.organization_id))
                            .ok()
                            .flatten();
                        if let Some(index) = index {
                            let _ = arrivals.send((index, now));
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    drop(arrivals);
    drop(opened);
    let opening = Instant::now();
    for _ in 0..args.watchers {
        tokio::time::timeout(Duration::from_secs(120), ready.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("a watch ended before it opened"))?;
    }
    println!(
        "{} watches open in {:.1} s over {connections} connections",
        args.watchers,
        opening.elapsed().as_secs_f64()
    );

    let channel = target.channel().await?;
    let mut orgs = target.orgs(channel.clone());
    let mut billing = target.billing(channel);
    let mut latencies = Vec::new();
    for t in 0..args.transitions {
        let (a, b) = (format!("bench_{run}_w{t}a"), format!("bench_{run}_w{t}b"));
        let created = orgs
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("watch {run} {t}"),
                created_by: a.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let organization = created.organization.map(|o| o.id).unwrap_or_default();
        orgs.create_membership(pb::CreateMembershipRequest {
            organization_id: organization.clone(),
            user_id: b.clone(),
            ..Default::default()
        })
        .await?;
        if let Ok(mut ids) = expected.lock() {
            ids.push(organization);
        }
        let events = [a, b]
            .into_iter()
            .map(|user_id| pb::ActivityEvent {
                user_id,
                occur_time: None,
            })
            .collect();
        let sent = Instant::now();
        billing
            .record_activity(pb::RecordActivityRequest { events })
            .await?;
        let mut received = 0;
        while received < args.watchers {
            let (index, at) = tokio::time::timeout(Duration::from_secs(60), arrived.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("every watch ended"))?;
            if index == t {
                latencies.push(at.duration_since(sent));
                received += 1;
            }
        }
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let (p50, p99, max) = (pick(0.5), pick(0.99), pick(1.0));
    println!(
        "delivery to {} watches, {} transitions (from the RecordActivity call to arrival):",
        args.watchers, args.transitions
    );
    println!(
        "  p50 {:.1} ms ({:.0}× health), p99 {:.1} ms ({:.0}× health), max {:.1} ms",
        ms(p50),
        ms(p50) / ms(health_round_trip),
        ms(p99),
        ms(p99) / ms(health_round_trip),
        ms(max)
    );
    Ok(())
}
