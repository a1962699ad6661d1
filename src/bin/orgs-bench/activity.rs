//! `orgs-bench activity`: RecordActivity events/s for several batch sizes,
//! new users and repeats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use orgs::proto::v1 as pb;

use crate::health::health_baseline;
use crate::target::Target;

#[derive(Args)]
pub struct ActivityArgs {
    /// Batch sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    batches: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Organizations created first, each with `members` members from the user
    /// pool, so new activity also moves organization counters.
    #[arg(long, default_value_t = 200)]
    organizations: usize,
    #[arg(long, default_value_t = 5)]
    members: usize,
}

pub async fn activity(target: &Target, run: &str, args: ActivityArgs) -> anyhow::Result<()> {
    let channel = target.channel().await?;
    let pool = args.organizations * args.members;
    println!(
        "setting up {} organizations with {} members each",
        args.organizations, args.members
    );
    let mut orgs = target.orgs(channel.clone());
    for o in 0..args.organizations {
        let created = orgs
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("bench {run} {o}"),
                created_by: member_id(run, o * args.members),
                ..Default::default()
            })
            .await?
            .into_inner();
        let organization = created.organization.map(|o| o.id).unwrap_or_default();
        for m in 1..args.members {
            orgs.create_membership(pb::CreateMembershipRequest {
                organization_id: organization.clone(),
                user_id: member_id(run, o * args.members + m),
                ..Default::default()
            })
            .await?;
        }
    }
    let (health_rate, _) = health_baseline(target, args.concurrency, args.seconds).await?;
    println!(
        "baseline Health/Check: {health_rate:.0} calls/s ({} in flight, {} s)",
        args.concurrency, args.seconds
    );
    println!(
        "{:>6}  {:>7}  {:>10}  {:>9}  {:>15}  {:>14}",
        "batch", "users", "events/s", "calls/s", "events/health", "calls/health"
    );
    let counter = Arc::new(AtomicU64::new(0));
    for &batch in &args.batches {
        for mode in ["new", "repeat"] {
            let sent_users = Arc::new(AtomicU64::new(0));
            let calls = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(args.seconds);
            let mut tasks = Vec::new();
            for worker in 0..args.concurrency {
                let mut client = target.billing(channel.clone());
                let (sent_users, calls, counter) =
                    (sent_users.clone(), calls.clone(), counter.clone());
                let run = run.to_string();
                tasks.push(tokio::spawn(async move {
                    let mut round = 0usize;
                    while Instant::now() < deadline {
                        let events = (0..batch)
                            .map(|i| {
                                let user_id = if mode == "new" {
                                    // Members first, so counters move; then strangers.
                                    let n = counter.fetch_add(1, Ordering::Relaxed) as usize;
                                    if n < pool {
                                        member_id(&run, n)
                                    } else {
                                        format!("bench_{run}_u{n}")
                                    }
                                } else {
                                    // The same users again and again: already active.
                                    member_id(
                                        &run,
                                        (worker * 7919 + round * batch + i) % pool.max(1),
                                    )
                                };
                                pb::ActivityEvent {
                                    user_id,
                                    occur_time: None,
                                }
                            })
                            .collect();
                        round += 1;
                        match client
                            .record_activity(pb::RecordActivityRequest { events })
                            .await
                        {
                            Ok(_) => {
                                sent_users.fetch_add(batch as u64, Ordering::Relaxed);
                                calls.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(status) => eprintln!("record activity: {status}"),
                        }
                    }
                }));
            }
            let started = Instant::now();
            for task in tasks {
                task.await?;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let events_rate = sent_users.load(Ordering::Relaxed) as f64 / elapsed;
            let calls_rate = calls.load(Ordering::Relaxed) as f64 / elapsed;
            println!(
                "{batch:>6}  {mode:>7}  {events_rate:>10.0}  {calls_rate:>9.1}  {:>15.2}  {:>14.3}",
                events_rate / health_rate,
                calls_rate / health_rate
            );
        }
    }
    Ok(())
}

fn member_id(run: &str, n: usize) -> String {
    format!("bench_{run}_m{n}")
}
