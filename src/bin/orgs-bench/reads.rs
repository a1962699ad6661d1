//! `orgs-bench reads`: the hot reads with a realistic working set. Seeds
//! organizations with members (see `seed.rs`), then measures `CheckPermission`
//! and `GetOrganization` by id with keys drawn at random from the whole set,
//! against Health/Check, in interleaved rounds at the same concurrency; and
//! the server's resident memory after seeding and after the rounds.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use orgs::domain::roles::MEMBERSHIPS_READ;
use orgs::proto::v1 as pb;

use crate::health::health_load;
use crate::load::{self, Caller, Measured};
use crate::report;
use crate::seed::{DataSet, SeedArgs, read_ids_file, seed_server, seeded_user};
use crate::target::{Orgs, Target};

#[derive(Args)]
pub struct ReadsArgs {
    /// Organizations to seed.
    #[arg(long, default_value_t = 100_000)]
    organizations: usize,
    /// Members of each seeded organization, its creator included.
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Rounds of Health/Check, CheckPermission and GetOrganization.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Calls in flight at once, on one HTTP/2 connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measure the data set `orgs-bench seed` wrote (its run and ids are in
    /// this file) instead of seeding one: the server, started after the
    /// seeding, warmed its cache from it.
    #[arg(long)]
    ids_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    server: SeedArgs,
}

/// `CheckPermission` of a random member of a random seeded organization for
/// a permission every member's role grants; a denial counts as an error.
struct CheckPermissionCaller {
    client: Orgs,
    run: Arc<str>,
    organizations: Arc<Vec<String>>,
    members: usize,
}

impl Caller for CheckPermissionCaller {
    async fn call(&mut self) -> Result<(), String> {
        let o = rand::random_range(0..self.organizations.len());
        let m = rand::random_range(0..self.members);
        let response = self
            .client
            .check_permission(pb::CheckPermissionRequest {
                organization_id: self.organizations[o].clone(),
                user_id: seeded_user(&self.run, o, m),
                permission: MEMBERSHIPS_READ.to_string(),
            })
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        if response.allowed {
            Ok(())
        } else {
            Err(format!(
                "a seeded member was denied (role {:?})",
                response.role
            ))
        }
    }
}

/// `GetOrganization` of a random seeded organization by id.
struct GetOrganizationCaller {
    client: Orgs,
    organizations: Arc<Vec<String>>,
}

impl Caller for GetOrganizationCaller {
    async fn call(&mut self) -> Result<(), String> {
        let id = &self.organizations[rand::random_range(0..self.organizations.len())];
        let response = self
            .client
            .get_organization(pb::GetOrganizationRequest {
                lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                    id.clone(),
                )),
            })
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        match response.organization {
            Some(organization) if organization.id == *id => Ok(()),
            _ => Err(format!(
                "GetOrganization {id} answered another organization"
            )),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub async fn reads(target: &Target, run: &str, args: ReadsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.organizations > 0 && args.members > 0,
        "--organizations and --members must be at least 1"
    );
    let duration = Duration::from_secs(args.seconds);
    let concurrency = args.concurrency.max(1);
    let (run, members, organizations) = match &args.ids_file {
        Some(path) => {
            let (run, members, ids) = read_ids_file(path)?;
            println!(
                "{} organizations × {members} members seeded before the server started",
                ids.len()
            );
            (run, members, ids)
        }
        None => {
            let set = DataSet {
                organizations: args.organizations,
                members: args.members,
                metadata_bytes: 0,
            };
            let ids = seed_server(&args.server, run, set).await?;
            (run.to_string(), args.members, ids)
        }
    };
    let run: Arc<str> = Arc::from(run);
    let organizations = Arc::new(organizations);
    report::print_memory(args.server.server_pid, "before the rounds");

    let channel = target.channel().await?;
    println!(
        "{concurrency} calls in flight on one connection, {} s per measurement, random keys over the whole set",
        args.seconds
    );
    report::header("rate ÷ Health/Check, p99 ÷ Health/Check p99");
    let mut ratios: Vec<[f64; 4]> = Vec::new();
    for round in 1..=args.rounds {
        let health = health_load(target, concurrency, duration).await?;
        let check = load::run(
            (0..concurrency)
                .map(|_| CheckPermissionCaller {
                    client: target.orgs(channel.clone()),
                    run: run.clone(),
                    organizations: organizations.clone(),
                    members,
                })
                .collect(),
            duration,
        )
        .await?;
        let get = load::run(
            (0..concurrency)
                .map(|_| GetOrganizationCaller {
                    client: target.orgs(channel.clone()),
                    organizations: organizations.clone(),
                })
                .collect(),
            duration,
        )
        .await?;
        let health_rate = health.rate().max(f64::MIN_POSITIVE);
        let health_p99 = health.quantile_ms(0.99).max(f64::MIN_POSITIVE);
        let ratio = |m: &Measured| (m.rate() / health_rate, m.quantile_ms(0.99) / health_p99);
        let (check_rate, check_p99) = ratio(&check);
        let (get_rate, get_p99) = ratio(&get);
        report::row(&format!("round {round}: Health/Check"), &health, "");
        report::row(
            &format!("round {round}: CheckPermission"),
            &check,
            &format!("{check_rate:.2}, {check_p99:.2}"),
        );
        report::row(
            &format!("round {round}: GetOrganization by id"),
            &get,
            &format!("{get_rate:.2}, {get_p99:.2}"),
        );
        for (name, measured) in [
            ("Health/Check", &health),
            ("CheckPermission", &check),
            ("GetOrganization", &get),
        ] {
            report::errors(name, measured);
        }
        ratios.push([check_rate, check_p99, get_rate, get_p99]);
    }
    let column = |i: usize| median(ratios.iter().map(|r| r[i]).collect());
    println!(
        "median of {} rounds: CheckPermission {:.2}× Health/Check, p99 {:.2}× its p99; GetOrganization {:.2}×, p99 {:.2}×",
        ratios.len(),
        column(0),
        column(1),
        column(2),
        column(3)
    );
    report::print_memory(args.server.server_pid, "after the rounds");
    Ok(())
}
