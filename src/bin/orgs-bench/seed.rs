//! A data set for `orgs-bench reads` and `orgs-bench memory`, written straight into the server's
//! database with the store's own insert functions, the rows just as
//! `CreateOrganization` and `CreateMembership` leave them (members_count,
//! the creator as `org:admin`, the others `org:member`, the organization
//! total of billing), a thousand organizations per transaction.
//!
//! Through the API the same data set takes one call per row (600,000 calls for
//! 100,000 × 6, minutes at today's write rates), and each call appends an
//! audit event that every server's cache invalidation then reads back from the
//! log (1,000 per poll), which would keep invalidating caches during the
//! measurement. The seeded rows have no audit events. A running server sees
//! them: it reads through to the database for what it has not cached, and it
//! has cached nothing about organizations that did not exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use orgs::domain::ids::{self, new_id};
use orgs::domain::roles::{ADMIN_ROLE, MEMBER_ROLE};
use orgs::domain::types::Slug;
use orgs::store::Db;
use orgs::store::repo::billing;
use orgs::store::repo::memberships::{self, MembershipRow};
use orgs::store::repo::organizations::{self, OrganizationRow};
use sea_orm::DbBackend;

/// Organizations written per transaction.
const PER_TRANSACTION: usize = 1000;

/// The user id of member `m` of seeded organization `o`; member 0 created it.
pub fn seeded_user(run: &str, o: usize, m: usize) -> String {
    format!("bench_{run}_r{o}_{m}")
}

/// Where a data set is seeded, and the server that reads it.
#[derive(clap::Args)]
pub struct SeedArgs {
    /// The server's database, where the data set is written.
    #[arg(long, env = "ORGS_BENCH_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Concurrent seeding transactions; default: 1 on SQLite (one writer at a
    /// time is all it has), 4 on PostgreSQL.
    #[arg(long)]
    pub seed_connections: Option<usize>,
    /// The server's process id, to report its resident memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Connects to the server's database, seeds `set` there and says how long it
/// took; returns the organizations' ids, by index.
pub async fn seed_server(args: &SeedArgs, run: &str, set: DataSet) -> anyhow::Result<Vec<String>> {
    let db = Db::connect(&args.database_url, 4).await?;
    let connections = args
        .seed_connections
        .unwrap_or(if db.backend() == DbBackend::Postgres {
            4
        } else {
            1
        });
    eprintln!(
        "seeding {} organizations × {} members, {} bytes of metadata each",
        set.organizations, set.members, set.metadata_bytes
    );
    let started = Instant::now();
    let organizations = seed(&db, run, set, connections).await?;
    if db.backend() == DbBackend::Postgres {
        // The planner's statistics, as autovacuum would have them after a
        // while: the server's first queries should not plan for empty tables.
        use sea_orm::ConnectionTrait;
        db.conn().execute_unprepared("ANALYZE").await?;
    }
    db.close().await;
    println!(
        "seeded {} organizations × {} members ({} bytes of public metadata each) in {:.1} s, straight into the database",
        set.organizations,
        set.members,
        set.metadata_bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(organizations)
}

/// `orgs-bench seed`: writes a data set and, for a later `orgs-bench reads
/// --ids-file`, the run and the organizations' ids to a file; so that a
/// server started after the seeding finds the data set there when it starts.
#[derive(clap::Args)]
pub struct SeedCommand {
    /// Organizations to seed.
    #[arg(long, default_value_t = 100_000)]
    organizations: usize,
    /// Members of each seeded organization, its creator included.
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Where to write the run and the organizations' ids, one per line.
    #[arg(long)]
    ids_file: std::path::PathBuf,
    #[command(flatten)]
    server: SeedArgs,
}

pub async fn seed_command(run: &str, args: SeedCommand) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.organizations > 0 && args.members > 0,
        "--organizations and --members must be at least 1"
    );
    let set = DataSet {
        organizations: args.organizations,
        members: args.members,
        metadata_bytes: 0,
    };
    let ids = seed_server(&args.server, run, set).await?;
    let mut text = format!("{run} {}\n", args.members);
    for id in &ids {
        text.push_str(id);
        text.push('\n');
    }
    std::fs::write(&args.ids_file, text)?;
    Ok(())
}

/// A data set written by `orgs-bench seed`: its run, members per
/// organization and organization ids.
pub fn read_ids_file(path: &std::path::Path) -> anyhow::Result<(String, usize, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let (run, members) = first
        .split_once(' ')
        .ok_or_else(|| anyhow::anyhow!("{}: no run on the first line", path.display()))?;
    let ids: Vec<String> = lines.map(str::to_string).collect();
    anyhow::ensure!(!ids.is_empty(), "{}: no organizations", path.display());
    Ok((run.to_string(), members.parse()?, ids))
}

/// What `seed` writes: how many organizations, members each, and how large
/// each organization's public metadata is (a JSON object of about that many
/// bytes; 0 for `{}`).
#[derive(Debug, Clone, Copy)]
pub struct DataSet {
    pub organizations: usize,
    pub members: usize,
    pub metadata_bytes: usize,
}

/// A JSON object of `bytes` bytes (at least `{}`).
fn metadata_of(bytes: usize) -> String {
    const FRAME: usize = r#"{"notes":""}"#.len();
    if bytes <= FRAME {
        return "{}".into();
    }
    format!(r#"{{"notes":"{}"}}"#, "x".repeat(bytes - FRAME))
}

/// Writes the data set over `connections` concurrent transactions; returns
/// the organizations' ids, by index.
pub async fn seed(
    db: &Db,
    run: &str,
    set: DataSet,
    connections: usize,
) -> anyhow::Result<Vec<String>> {
    let (count, members) = (set.organizations, set.members);
    let metadata: Arc<str> = Arc::from(metadata_of(set.metadata_bytes));
    let ids: Arc<Vec<String>> = Arc::new((0..count).map(|_| new_id(ids::ORGANIZATION)).collect());
    let next_chunk = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (db, ids, next_chunk, run, metadata) = (
            db.clone(),
            ids.clone(),
            next_chunk.clone(),
            run.to_string(),
            metadata.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next_chunk.fetch_add(1, Ordering::Relaxed) * PER_TRANSACTION;
                if start >= ids.len() {
                    return anyhow::Ok(());
                }
                let end = (start + PER_TRANSACTION).min(ids.len());
                write_chunk(&db, &run, &ids, start..end, members, &metadata).await?;
                if end % (PER_TRANSACTION * 10) == 0 {
                    eprintln!("  {end} organizations");
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(Arc::unwrap_or_clone(ids))
}

async fn write_chunk(
    db: &Db,
    run: &str,
    ids: &[String],
    range: std::ops::Range<usize>,
    members: usize,
    metadata: &str,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_micros();
    let txn = db.begin().await?;
    let written = range.len();
    for o in range {
        let name = format!("bench {run} r{o}");
        let organization = OrganizationRow {
            id: ids[o].clone(),
            slug: Slug::derive_from(&name).as_str().to_string(),
            name,
            created_by: Some(seeded_user(run, o, 0)),
            max_allowed_memberships: 0,
            members_count: i32::try_from(members)?,
            pending_invitations_count: 0,
            public_metadata: metadata.to_string(),
            private_metadata: "{}".into(),
            create_time: now,
            update_time: now,
            revision: 1,
            external_id: None,
            deactivate_time: None,
        };
        organizations::insert(&txn, &organization).await?;
        for m in 0..members {
            memberships::insert(
                &txn,
                &MembershipRow {
                    id: new_id(ids::MEMBERSHIP),
                    organization_id: organization.id.clone(),
                    user_id: seeded_user(run, o, m),
                    role: if m == 0 { ADMIN_ROLE } else { MEMBER_ROLE }.to_string(),
                    public_metadata: "{}".into(),
                    private_metadata: "{}".into(),
                    create_time: now,
                    update_time: now,
                    revision: 1,
                    deactivate_time: None,
                },
            )
            .await?;
        }
    }
    billing::add_to_total_organizations(&txn, i64::try_from(written)?).await?;
    txn.commit().await?;
    Ok(())
}
