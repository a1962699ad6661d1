//! The load generator: connects to a running server and measures, in one run,
//! a `grpc.health.v1.Health/Check` baseline and the billing paths, so results
//! read as ratios to the baseline on whatever machine runs them.
//!
//! ```text
//! orgs-bench --token "$(orgs token --sub bench --scope 'billing:write billing:read orgs:admin')" activity
//! orgs-bench --token … watch --watchers 1000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use orgs::clients::{BillingServiceClient, OrganizationServiceClient};
use orgs::proto::v1 as pb;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser)]
#[command(
    name = "orgs-bench",
    about = "Load generator for a running orgs server"
)]
struct Cli {
    /// The server.
    #[arg(
        long,
        env = "ORGS_BENCH_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// A bearer token with `billing:write billing:read orgs:admin`
    /// (`orgs token --sub bench --scope 'billing:write billing:read orgs:admin'`).
    #[arg(long, env = "ORGS_BENCH_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// RecordActivity events/s for several batch sizes, new users and repeats.
    Activity(ActivityArgs),
    /// Delivery latency of billable transitions to many open watches.
    Watch(WatchArgs),
}

#[derive(Args)]
struct ActivityArgs {
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

#[derive(Args)]
struct WatchArgs {
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

#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Billing = BillingServiceClient<InterceptedService<Channel, Bearer>>;
type Orgs = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;

struct Target {
    addr: String,
    bearer: Bearer,
}

impl Target {
    async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(self.addr.clone())?.connect().await?)
    }

    fn billing(&self, channel: Channel) -> Billing {
        BillingServiceClient::with_interceptor(channel, self.bearer.clone())
    }

    fn orgs(&self, channel: Channel) -> Orgs {
        OrganizationServiceClient::with_interceptor(channel, self.bearer.clone())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bearer = Bearer(format!("Bearer {}", cli.token).parse()?);
    let target = Target {
        addr: cli.addr,
        bearer,
    };
    let run = ulid::Ulid::new().to_string().to_lowercase();
    match cli.command {
        Command::Activity(args) => activity(&target, &run, args).await,
        Command::Watch(args) => watch(&target, &run, args).await,
    }
}

/// Health/Check calls per second with `concurrency` in flight for `seconds`,
/// and the median round trip of one call at a time.
async fn health_baseline(
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

async fn activity(target: &Target, run: &str, args: ActivityArgs) -> anyhow::Result<()> {
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

async fn watch(target: &Target, run: &str, args: WatchArgs) -> anyhow::Result<()> {
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

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
