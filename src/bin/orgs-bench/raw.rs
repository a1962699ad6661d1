//! The raw baselines of `orgs-bench writes`: the statements of one
//! `CreateOrganization` or `CreateMembership` run directly against the
//! server's database, without the server, through a pool connected with
//! [`Db::connect`] (the server's pool: on SQLite WAL with `synchronous=FULL`)
//! and in transactions begun with [`Db::begin`] (`BEGIN IMMEDIATE` on SQLite).
//!
//! What one call replays, as the server runs it today (for an `orgs:admin`
//! caller, a new user and a new name, no `request_id`; see
//! `service/organizations.rs`, `service/billing.rs` `member_added`,
//! `store/repo/*.rs`, `events::append` on SQLite and `events::horizon::append`
//! on PostgreSQL):
//!
//! | kind | CreateOrganization on behalf | CreateMembership |
//! |---|---|---|
//! | `inserts` | INSERT organizations (members_count 1), INSERT memberships, INSERT events | INSERT memberships, INSERT events |
//! | `writes` | INSERT organizations, UPDATE organizations (take a membership place), INSERT memberships, UPDATE billing_totals, INSERT events (SQLite: after UPDATE event_sequence … RETURNING; PostgreSQL: at positions from `event_positions`) | UPDATE organizations (take a place), INSERT memberships, INSERT events (as for CreateOrganization) |
//! | `statements` | `writes` and every read in the server's order: the slug check, the role with its permissions (2 queries), the membership check, the user's advisory lock (PostgreSQL), whether the user is active, the organization's usage, the organization read back | `writes` and every read: the organization `FOR UPDATE`, the role (2 queries), the membership check, the advisory lock (PostgreSQL), is-active with usage (one query) |
//!
//! A new user is not active in the period, so neither call moves the
//! per-organization billing counters; `CreateOrganization` moves the one
//! organization total. `writes` and `statements` call the store's own
//! functions, so they follow the server's statements when those change;
//! `inserts` is written out here and stays the fixed floor: the rows the call
//! must leave behind, nothing shared between calls. Its events take sequence
//! numbers from blocks reserved outside the timed transactions (on
//! `event_sequence` on SQLite, from `event_positions` on PostgreSQL), so the
//! log keeps unique positions (with gaps).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::ValueEnum;
use orgs::domain::events::EventKind;
use orgs::domain::ids::{self, new_id};
use orgs::domain::roles::{ADMIN_ROLE, MEMBER_ROLE};
use orgs::domain::time::BillingPeriod;
use orgs::domain::types::Slug;
use orgs::events::{self, NewEvent};
use orgs::store::repo::memberships::{self, MembershipRow};
use orgs::store::repo::organizations::{self, OrganizationRow};
use orgs::store::repo::{billing, billing_members, roles};
use orgs::store::{self, Db};
use orgs::values;
use sea_orm::{DatabaseTransaction, DbErr};

use crate::load::Caller;

/// Which statements a raw baseline replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RawKind {
    /// Only the rows the call leaves behind.
    Inserts,
    /// Every INSERT and UPDATE of the server's transaction.
    Writes,
    /// Every statement of the server's transaction, reads included.
    Statements,
}

impl RawKind {
    pub fn name(self) -> &'static str {
        match self {
            RawKind::Inserts => "inserts",
            RawKind::Writes => "writes",
            RawKind::Statements => "statements",
        }
    }
}

/// The call whose statements are replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCall {
    CreateOrganization,
    CreateMembership,
}

impl RawCall {
    fn action(self) -> &'static str {
        match self {
            RawCall::CreateOrganization => "CreateOrganization",
            RawCall::CreateMembership => "CreateMembership",
        }
    }

    /// The kind of the call's audited event.
    fn kind(self) -> EventKind {
        match self {
            RawCall::CreateOrganization => EventKind::OrganizationCreated,
            RawCall::CreateMembership => EventKind::MembershipCreated,
        }
    }
}

/// What every raw caller of a run shares.
#[derive(Clone)]
pub struct RawShared {
    pub db: Db,
    /// Makes names and user ids unique within the run.
    pub run: Arc<str>,
    pub counter: Arc<AtomicU64>,
    /// The organizations memberships are added to, one chosen at random per call.
    pub organizations: Arc<Vec<String>>,
    pub sequence: Arc<SequenceBlocks>,
}

/// Event sequence numbers for the `inserts` kind: reserved a block at a
/// time, handed out in memory.
#[derive(Default)]
pub struct SequenceBlocks {
    next: tokio::sync::Mutex<std::collections::VecDeque<i64>>,
}

const SEQUENCE_BLOCK: i64 = 10_000;

#[derive(sea_orm::FromQueryResult)]
struct Reserved {
    position: i64,
}

impl SequenceBlocks {
    async fn take(&self, db: &Db) -> Result<i64, DbErr> {
        let mut next = self.next.lock().await;
        if let Some(position) = next.pop_front() {
            return Ok(position);
        }
        if db.backend() == sea_orm::DbBackend::Postgres {
            // Values of the sequence the server's events take theirs from,
            // interleaved perhaps with a server's: these are the bench's.
            let reserved: Vec<Reserved> = store::fetch_all(
                db.conn(),
                "SELECT nextval('event_positions') AS position FROM generate_series(1, $1)",
                values![SEQUENCE_BLOCK],
            )
            .await?;
            next.extend(reserved.into_iter().map(|row| row.position));
        } else {
            let last = store::fetch_i64(
                db.conn(),
                "UPDATE event_sequence SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
                values![SEQUENCE_BLOCK],
            )
            .await?;
            next.extend(last - SEQUENCE_BLOCK + 1..=last);
        }
        next.pop_front()
            .ok_or_else(|| DbErr::Custom("no event positions reserved".into()))
    }
}

/// One caller replaying one call's statements per transaction.
pub struct RawCaller {
    pub shared: RawShared,
    pub kind: RawKind,
    pub call: RawCall,
}

impl Caller for RawCaller {
    async fn call(&mut self) -> Result<(), String> {
        let n = self.shared.counter.fetch_add(1, Ordering::Relaxed);
        // Reserved outside the transaction: one statement per block, not per call.
        let seq = if self.kind == RawKind::Inserts {
            Some(
                self.shared
                    .sequence
                    .take(&self.shared.db)
                    .await
                    .map_err(|err| err.to_string())?,
            )
        } else {
            None
        };
        let result = async {
            let txn = self.shared.db.begin().await?;
            match self.call {
                RawCall::CreateOrganization => {
                    self.create_organization(&txn, n, seq).await?;
                }
                RawCall::CreateMembership => {
                    let organizations = &self.shared.organizations;
                    let organization =
                        &organizations[rand::random_range(0..organizations.len().max(1))];
                    self.create_membership(&txn, organization, n, seq).await?;
                }
            }
            txn.commit().await
        }
        .await;
        result.map_err(|err| err.to_string())
    }
}

impl RawCaller {
    async fn create_organization(
        &self,
        txn: &DatabaseTransaction,
        n: u64,
        seq: Option<i64>,
    ) -> Result<(), DbErr> {
        let now = now_micros();
        let name = format!("raw {} {} {n}", self.shared.run, self.kind.name());
        let user = format!("raw_{}_c{n}", self.shared.run);
        let statements = self.kind == RawKind::Statements;
        let mut organization = OrganizationRow {
            id: new_id(ids::ORGANIZATION),
            slug: Slug::derive_from(&name).as_str().to_string(),
            name,
            created_by: Some(user.clone()),
            max_allowed_memberships: 0,
            members_count: 0,
            pending_invitations_count: 0,
            public_metadata: "{}".into(),
            private_metadata: "{}".into(),
            create_time: now,
            update_time: now,
            revision: 1,
            external_id: None,
            deactivate_time: None,
        };
        if statements {
            organizations::slug_taken(txn, &organization.slug).await?;
        }
        if self.kind == RawKind::Inserts {
            organization.members_count = 1;
        }
        organizations::insert(txn, &organization).await?;
        self.add_member(txn, &organization.id, &user, ADMIN_ROLE, now)
            .await?;
        if self.kind != RawKind::Inserts {
            billing::add_to_total_organizations(txn, 1).await?;
        }
        if statements {
            organizations::get(txn, &organization.id).await?;
        }
        self.append(txn, &organization.id, &organization.id, now, seq)
            .await
    }

    async fn create_membership(
        &self,
        txn: &DatabaseTransaction,
        organization_id: &str,
        n: u64,
        seq: Option<i64>,
    ) -> Result<(), DbErr> {
        let now = now_micros();
        let user = format!("raw_{}_m{n}", self.shared.run);
        if self.kind == RawKind::Statements {
            organizations::get_for_update(txn, organization_id).await?;
        }
        let membership = self
            .add_member(txn, organization_id, &user, MEMBER_ROLE, now)
            .await?;
        self.append(txn, organization_id, &membership, now, seq)
            .await
    }

    /// What the server's `add_member` runs for a user new to the
    /// organization and inactive in the period; returns the membership id.
    async fn add_member(
        &self,
        txn: &DatabaseTransaction,
        organization_id: &str,
        user: &str,
        role: &str,
        now: i64,
    ) -> Result<String, DbErr> {
        let statements = self.kind == RawKind::Statements;
        if statements {
            roles::get_role(txn, role).await?;
            memberships::get(txn, organization_id, user).await?;
        }
        if self.kind != RawKind::Inserts {
            organizations::take_membership_place(txn, organization_id).await?;
        }
        let row = MembershipRow {
            id: new_id(ids::MEMBERSHIP),
            organization_id: organization_id.to_string(),
            user_id: user.to_string(),
            role: role.to_string(),
            public_metadata: "{}".into(),
            private_metadata: "{}".into(),
            create_time: now,
            update_time: now,
            revision: 1,
            deactivate_time: None,
        };
        memberships::insert(txn, &row).await?;
        if statements {
            let period = BillingPeriod::containing_micros(now).to_string();
            billing::lock_users(txn, &[user.to_string()]).await?;
            billing_members::joining_usage(txn, &period, organization_id, user).await?;
        }
        Ok(row.id)
    }

    /// The call's audit event: through the log's own append (`writes`,
    /// `statements`), or one INSERT at a reserved position (`inserts`).
    async fn append(
        &self,
        txn: &DatabaseTransaction,
        organization_id: &str,
        resource_id: &str,
        now: i64,
        seq: Option<i64>,
    ) -> Result<(), DbErr> {
        let event = NewEvent {
            kind: Some(self.call.kind()),
            action: self.call.action().to_string(),
            actor: "bench".to_string(),
            on_behalf_of: String::new(),
            organization_id: organization_id.to_string(),
            resource_id: resource_id.to_string(),
            request_id: String::new(),
            audit: true,
            payload: serde_json::Value::Object(Default::default()),
            create_time: now,
        };
        let Some(seq) = seq else {
            if sea_orm::ConnectionTrait::get_database_backend(txn) == sea_orm::DbBackend::Postgres {
                events::horizon::append(txn, &[event]).await?;
            } else {
                events::append(txn, &[event]).await?;
            }
            return Ok(());
        };
        store::execute(
            txn,
            "INSERT INTO events (seq, id, kind, action, actor, on_behalf_of, organization_id, resource_id, request_id, audit, payload, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            values![
                seq,
                new_id(ids::EVENT),
                self.call.kind().as_str(),
                event.action,
                event.actor,
                event.on_behalf_of,
                event.organization_id,
                event.resource_id,
                event.request_id,
                event.audit,
                event.payload.to_string(),
                event.create_time,
            ],
        )
        .await?;
        Ok(())
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
