//! The domain: input types, rules, errors and time. Knows neither proto nor SQL.

pub mod billing;
pub mod error;
pub mod ids;
pub mod invitations;
pub mod paging;
pub mod quote;
pub mod roles;
pub mod time;
pub mod types;

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
}
