//! `orgs-bench writes`: `CreateOrganization` on behalf and `CreateMembership`
//! at a fixed number of calls in flight, each call a new user, against
//! Health/Check measured before and after them on the same connection setup;
//! then the raw baselines (see `raw.rs`): the same statements straight
//! against the server's database through a pool like the server's. Every row
//! also says what a call cost (`meter.rs`): the WAL it wrote, on PostgreSQL,
//! and the CPU time of the server (given `--server-pid`), of the local
//! PostgreSQL and of this benchmark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use orgs::proto::v1 as pb;
use orgs::store::Db;
use sea_orm::DbBackend;

use crate::health::health_load;
use crate::load::{self, Caller, Measured};
use crate::meter::Meters;
use crate::raw::{RawCall, RawCaller, RawKind, RawShared, SequenceBlocks};
use crate::report;
use crate::target::{Billing, Orgs, Target};

#[derive(Args)]
pub struct WritesArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Calls in flight at once, on one HTTP/2 connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Organizations created first; each CreateMembership adds its new user
    /// to one of them, chosen at random.
    #[arg(long, default_value_t = 100)]
    organizations: usize,
    /// Also measure RecordActivity with one first-time user per call: the
    /// users CreateMembership just added (so the billing counters move), then
    /// the creators, then users with no membership.
    #[arg(long)]
    record_activity: bool,
    /// The server's database, for the raw baselines; none: no raw baselines.
    #[arg(long, env = "ORGS_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Raw baselines to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "inserts,writes,statements"
    )]
    raw: Vec<RawKind>,
    /// Connections of the raw baselines, each count a measurement of its own;
    /// default: 1 on SQLite (one writer at a time is all it has), 1 and
    /// `--concurrency` on PostgreSQL.
    #[arg(long, value_delimiter = ',')]
    raw_connections: Vec<usize>,
    /// Size of the raw baselines' pool; default: `--concurrency`.
    #[arg(long)]
    raw_pool: Option<u32>,
    /// Further servers on the same database (replicas), comma-separated: the
    /// write calls are spread over `--addr` and these, round robin, one
    /// HTTP/2 connection each. Health/Check is measured on `--addr`.
    #[arg(long, value_delimiter = ',')]
    also_addr: Vec<String>,
    /// Process ids of the servers (`--addr`'s and the replicas'), comma-
    /// separated, to report the CPU time they spend per call (Linux `/proc`).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
}

fn creator_id(run: &str, n: u64) -> String {
    format!("bench_{run}_c{n}")
}

fn member_id(run: &str, n: u64) -> String {
    format!("bench_{run}_m{n}")
}

struct CreateOrganizationCaller {
    client: Orgs,
    run: Arc<str>,
    counter: Arc<AtomicU64>,
}

impl Caller for CreateOrganizationCaller {
    async fn call(&mut self) -> Result<(), String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.client
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("bench {} c{n}", self.run),
                created_by: creator_id(&self.run, n),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    }
}

struct CreateMembershipCaller {
    client: Orgs,
    run: Arc<str>,
    counter: Arc<AtomicU64>,
    organizations: Arc<Vec<String>>,
}

impl Caller for CreateMembershipCaller {
    async fn call(&mut self) -> Result<(), String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let organization =
            &self.organizations[rand::random_range(0..self.organizations.len().max(1))];
        self.client
            .create_membership(pb::CreateMembershipRequest {
                organization_id: organization.clone(),
                user_id: member_id(&self.run, n),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    }
}

/// Who is active for the first time, one per call: the members added by the
/// CreateMembership measurement, then the creators of the CreateOrganization
/// measurement, then users that belong nowhere.
struct FirstActivityCaller {
    client: Billing,
    run: Arc<str>,
    counter: Arc<AtomicU64>,
    members: u64,
    creators: u64,
    newly_active: Arc<AtomicU64>,
}

impl Caller for FirstActivityCaller {
    async fn call(&mut self) -> Result<(), String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let user_id = if n < self.members {
            member_id(&self.run, n)
        } else if n - self.members < self.creators {
            creator_id(&self.run, n - self.members)
        } else {
            format!("bench_{}_s{n}", self.run)
        };
        let response = self
            .client
            .record_activity(pb::RecordActivityRequest {
                events: vec![pb::ActivityEvent {
                    user_id,
                    occur_time: None,
                }],
            })
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        self.newly_active.fetch_add(
            u64::try_from(response.newly_active_count).unwrap_or(0),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

pub async fn writes(target: &Target, run: &str, args: WritesArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let concurrency = args.concurrency.max(1);
    let run: Arc<str> = Arc::from(run);
    let channel = target.channel().await?;
    let mut orgs = target.orgs(channel.clone());
    // Caller i writes through server i modulo their number.
    let mut channels = vec![channel.clone()];
    for addr in &args.also_addr {
        let replica = Target {
            addr: addr.clone(),
            bearer: target.bearer.clone(),
        };
        channels.push(replica.channel().await?);
    }
    let channel_of = |caller: usize| channels[caller % channels.len()].clone();

    eprintln!("creating {} organizations", args.organizations);
    let mut organizations = Vec::with_capacity(args.organizations);
    for o in 0..args.organizations {
        let created = orgs
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("bench {run} o{o}"),
                created_by: format!("bench_{run}_o{o}"),
                ..Default::default()
            })
            .await?
            .into_inner();
        organizations.push(created.organization.map(|o| o.id).unwrap_or_default());
    }
    let organizations = Arc::new(organizations);
    let meters = Meters::connect(args.database_url.as_deref(), args.server_pid.clone()).await?;

    eprintln!("measuring Health/Check");
    let (mut health, health_cost) = meters
        .around(health_load(target, concurrency, duration))
        .await?;

    eprintln!("measuring CreateOrganization");
    let creators = Arc::new(AtomicU64::new(0));
    let callers = (0..concurrency)
        .map(|caller| CreateOrganizationCaller {
            client: target.orgs(channel_of(caller)),
            run: run.clone(),
            counter: creators.clone(),
        })
        .collect();
    let (create_organization, create_organization_cost) =
        meters.around(load::run(callers, duration)).await?;

    eprintln!("measuring CreateMembership");
    let members = Arc::new(AtomicU64::new(0));
    let callers = (0..concurrency)
        .map(|caller| CreateMembershipCaller {
            client: target.orgs(channel_of(caller)),
            run: run.clone(),
            counter: members.clone(),
            organizations: organizations.clone(),
        })
        .collect();
    let (create_membership, create_membership_cost) =
        meters.around(load::run(callers, duration)).await?;

    let activity = if args.record_activity {
        eprintln!("measuring RecordActivity");
        let used = Arc::new(AtomicU64::new(0));
        let newly_active = Arc::new(AtomicU64::new(0));
        let (members, creators) = (
            members.load(Ordering::Relaxed),
            creators.load(Ordering::Relaxed),
        );
        let callers = (0..concurrency)
            .map(|caller| FirstActivityCaller {
                client: target.billing(channel_of(caller)),
                run: run.clone(),
                counter: used.clone(),
                members,
                creators,
                newly_active: newly_active.clone(),
            })
            .collect();
        let (measured, cost) = meters.around(load::run(callers, duration)).await?;
        let used = used.load(Ordering::Relaxed);
        let note = format!(
            "{:.2}× CreateMembership; users: {} members, {} creators, {} in no organization; {} newly active{cost}",
            measured.rate() / create_membership.rate().max(f64::MIN_POSITIVE),
            used.min(members),
            used.saturating_sub(members).min(creators),
            used.saturating_sub(members + creators),
            newly_active.load(Ordering::Relaxed),
        );
        Some((measured, note))
    } else {
        None
    };

    eprintln!("measuring Health/Check again");
    health.merge(&health_load(target, concurrency, duration).await?);

    println!(
        "writes: {concurrency} calls in flight on {} (one connection each), {} s per measurement, each call a new user",
        match channels.len() {
            1 => "one server".to_string(),
            n => format!("{n} servers on one database"),
        },
        args.seconds
    );
    report::header("p99 ÷ Health/Check p99");
    let health_p99 = health.quantile_ms(0.99).max(f64::MIN_POSITIVE);
    let p99_ratio = |m: &Measured| format!("{:.1}", m.quantile_ms(0.99) / health_p99);
    report::row(
        "Health/Check (before and after)",
        &health,
        &format!("1.0{health_cost}"),
    );
    report::row(
        "CreateOrganization on behalf",
        &create_organization,
        &format!(
            "{}{create_organization_cost}",
            p99_ratio(&create_organization)
        ),
    );
    report::row(
        "CreateMembership",
        &create_membership,
        &format!("{}{create_membership_cost}", p99_ratio(&create_membership)),
    );
    if let Some((measured, note)) = &activity {
        report::row(
            "RecordActivity, batch 1, first-time user",
            measured,
            &format!("{}; {note}", p99_ratio(measured)),
        );
    }
    report::errors("Health/Check", &health);
    report::errors("CreateOrganization", &create_organization);
    report::errors("CreateMembership", &create_membership);
    if let Some((measured, _)) = &activity {
        report::errors("RecordActivity", measured);
    }

    let Some(url) = &args.database_url else {
        println!("no --database-url: no raw baselines");
        return Ok(());
    };
    let pool = args
        .raw_pool
        .unwrap_or_else(|| u32::try_from(concurrency).unwrap_or(u32::MAX));
    let db = Db::connect(url, pool).await?;
    let backend = db.backend();
    let connections = if !args.raw_connections.is_empty() {
        args.raw_connections.clone()
    } else if backend == DbBackend::Postgres {
        vec![1, concurrency]
    } else {
        vec![1]
    };
    let shared = RawShared {
        db: db.clone(),
        run: run.clone(),
        counter: Arc::default(),
        organizations: organizations.clone(),
        sequence: Arc::new(SequenceBlocks::default()),
    };
    let mut rows = Vec::new();
    for (call, api) in [
        (RawCall::CreateOrganization, &create_organization),
        (RawCall::CreateMembership, &create_membership),
    ] {
        for &kind in &args.raw {
            for &count in &connections {
                let name = format!(
                    "{call:?}, raw {}, {count} connection{}",
                    kind.name(),
                    if count == 1 { "" } else { "s" }
                );
                eprintln!("measuring {name}");
                let callers = (0..count.max(1))
                    .map(|_| RawCaller {
                        shared: shared.clone(),
                        kind,
                        call,
                    })
                    .collect();
                let (measured, cost) = meters.around(load::run(callers, duration)).await?;
                let ratio = api.rate() / measured.rate().max(f64::MIN_POSITIVE);
                // The database's own tail at this many connections, as the
                // API rows give theirs: a bound no server in front of it
                // gets under on the same cores.
                let p99 = p99_ratio(&measured);
                rows.push((name, measured, format!("{ratio:.2}; p99 {p99}×{cost}")));
            }
        }
    }
    db.close().await;
    meters.close().await;
    println!();
    println!(
        "raw baselines: the same statements without the server, {} pool of {pool} (orgs::store::Db::connect), one transaction per call",
        match backend {
            DbBackend::Postgres => "PostgreSQL",
            DbBackend::Sqlite => "SQLite (WAL, synchronous=FULL, BEGIN IMMEDIATE)",
            _ => "database",
        }
    );
    report::header("API rate ÷ this rate; p99 ÷ Health/Check p99");
    for (name, measured, ratio) in &rows {
        report::row(name, measured, ratio);
    }
    for (name, measured, _) in &rows {
        report::errors(name, measured);
    }
    Ok(())
}
