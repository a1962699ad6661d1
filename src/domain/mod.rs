//! The domain: identifiers, input types, views of the resources, rules, errors
//! and time. Knows neither proto nor SQL.

pub mod billing;
pub mod enrollment;
pub mod error;
pub mod events;
pub mod ids;
pub mod invitations;
pub mod keys;
pub mod organizations;
pub mod paging;
pub mod quote;
pub mod roles;
pub mod time;
pub mod types;
pub mod verification;

pub use error::{Error, FieldViolation, Reason, Result};
pub use quote::quote;

/// Who makes a change, for the rules that depend on it and for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The `sub` of the caller.
    pub sub: String,
    /// The service acting on behalf of `sub`, if any.
    pub on_behalf_of: Option<String>,
    /// Platform principals are never members and see private metadata.
    pub platform: bool,
    /// The RPC name, recorded as the audit action.
    pub action: &'static str,
    /// How the caller was allowed to make the call.
    pub access: Access,
    /// The caller's email address, when its identity provider vouches for it
    /// (the token's `email` with `email_verified`).
    pub verified_email: Option<types::Email>,
}

/// How a caller was allowed to make a call: the rules that depend on who acts
/// (role ceilings, who may vouch for an email address) read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A scope of the RPC's rule: acts on any organization, never as a member.
    Scope,
    /// The user the call is about.
    Itself,
    /// A member whose role grants these permissions.
    Member(Vec<ids::PermissionKey>),
    /// An RPC open to every authenticated caller.
    Anyone,
}

impl Actor {
    /// Whether the caller acts through a scope of the RPC's rule.
    pub fn by_scope(&self) -> bool {
        self.access == Access::Scope
    }
}
