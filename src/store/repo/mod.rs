//! Rows and repository functions. Every function takes `&impl ConnectionTrait`
//! so it runs inside the caller's transaction.

pub mod billing;
pub mod billing_activity;
pub mod billing_members;
pub mod billing_periods;
pub mod domain_attempts;
pub mod domains;
pub mod idempotency;
pub mod invitations;
pub mod member_writes;
pub mod membership_requests;
pub mod memberships;
pub mod organizations;
pub mod roles;
pub mod server_keys;
