//! `orgs-bench memory`: what callers' input costs the server in memory. Two
//! phases against a running server, its resident memory printed before and
//! after each:
//! 1. a flood of `CheckPermission` calls for organizations that do not exist
//!    (a new random id each call): nothing of them may stay cached;
//! 2. organizations with large public metadata (seeded straight into the
//!    server's database, see `seed.rs`), each read once with
//!    `GetOrganization`: the organization cache holds what its byte bound
//!    allows and no more.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args;
use orgs::domain::ids::{self, new_id};
use orgs::domain::roles::MEMBERSHIPS_READ;
use orgs::proto::v1 as pb;

use crate::load::{self, Caller};
use crate::report;
use crate::seed::{DataSet, SeedArgs, seed_server};
use crate::target::{Orgs, Target};

#[derive(Args)]
pub struct MemoryArgs {
    /// `CheckPermission` calls for organizations that do not exist.
    #[arg(long, default_value_t = 1_000_000)]
    bogus_checks: usize,
    /// Organizations to seed and read once each.
    #[arg(long, default_value_t = 100_000)]
    organizations: usize,
    /// Bytes of public metadata of each seeded organization.
    #[arg(long, default_value_t = 8 * 1024)]
    metadata_bytes: usize,
    /// Calls in flight at once, on one HTTP/2 connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[command(flatten)]
    server: SeedArgs,
}

/// `CheckPermission` for a new random organization id each call; an answer
/// other than "not allowed, no role" counts as an error.
struct BogusCheck {
    client: Orgs,
}

impl Caller for BogusCheck {
    async fn call(&mut self) -> Result<(), String> {
        let answer = self
            .client
            .check_permission(pb::CheckPermissionRequest {
                organization_id: new_id(ids::ORGANIZATION),
                user_id: new_id("user"),
                permission: MEMBERSHIPS_READ.to_string(),
            })
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        if answer.allowed || !answer.role.is_empty() {
            return Err(format!("an unknown organization answered {answer:?}"));
        }
        Ok(())
    }
}

/// `GetOrganization` of each seeded organization once: the callers share
/// the index of the next one.
struct ReadOnce {
    client: Orgs,
    organizations: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
}

impl Caller for ReadOnce {
    async fn call(&mut self) -> Result<(), String> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let id = self
            .organizations
            .get(index)
            .ok_or("every organization was read")?;
        let organization = self
            .client
            .get_organization(pb::GetOrganizationRequest {
                lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                    id.clone(),
                )),
            })
            .await
            .map_err(|status| status.to_string())?
            .into_inner()
            .organization
            .ok_or("no organization in the answer")?;
        if organization.id != *id {
            return Err(format!(
                "GetOrganization {id} answered another organization"
            ));
        }
        Ok(())
    }
}

pub async fn memory(target: &Target, run: &str, args: MemoryArgs) -> anyhow::Result<()> {
    let concurrency = args.concurrency.max(1);
    let pid = args.server.server_pid;
    let channel = target.channel().await?;
    report::print_memory(pid, "at the start");

    println!(
        "memory: {} CheckPermission calls for organizations that do not exist, {concurrency} in flight",
        args.bogus_checks
    );
    report::header("");
    let flood = load::run_count(
        (0..concurrency)
            .map(|_| BogusCheck {
                client: target.orgs(channel.clone()),
            })
            .collect(),
        args.bogus_checks,
    )
    .await?;
    report::row("CheckPermission, unknown organization", &flood, "");
    report::errors("CheckPermission", &flood);
    report::print_memory(pid, "after the bogus CheckPermission calls");

    let set = DataSet {
        organizations: args.organizations,
        members: 1,
        metadata_bytes: args.metadata_bytes,
    };
    let organizations = Arc::new(seed_server(&args.server, run, set).await?);
    report::print_memory(pid, "after seeding");
    let next = Arc::new(AtomicUsize::new(0));
    let reads = load::run_count(
        (0..concurrency)
            .map(|_| ReadOnce {
                client: target.orgs(channel.clone()),
                organizations: organizations.clone(),
                next: next.clone(),
            })
            .collect(),
        organizations.len(),
    )
    .await?;
    report::header("");
    report::row("GetOrganization, each seeded organization once", &reads, "");
    report::errors("GetOrganization", &reads);
    report::print_memory(pid, "after reading each organization once");
    Ok(())
}
