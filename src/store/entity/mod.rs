//! One SeaORM entity per table, as the migrations in `../migrations` create
//! them: times are BIGINT microseconds since the epoch (`i64`), JSON metadata
//! is TEXT (`String`), booleans are BOOLEAN (SQLite stores 0 and 1), INTEGER
//! columns are `i32`. Relations follow the foreign keys; a join that follows
//! no foreign key is a function next to the entity it starts from.
//!
//! The migrations stay the source of the schema: these entities describe it
//! for the query builder and are never used to create tables.

pub mod billing_active_members;
pub mod billing_organization_usage;
pub mod billing_period_users;
pub mod billing_periods;
pub mod billing_totals;
pub mod billing_user_activity;
pub mod budget_alerts;
pub mod deleted_organizations;
pub mod domain_verification_attempts;
pub mod domains;
pub mod event_pruning;
pub mod event_sequence;
pub mod events;
pub mod idempotency_keys;
pub mod invitations;
pub mod membership_requests;
pub mod memberships;
pub mod organizations;
pub mod pending_events;
pub mod permissions;
pub mod removed_domain_claims;
pub mod role_permissions;
pub mod roles;
pub mod server_keys;
