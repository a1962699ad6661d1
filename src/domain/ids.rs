//! Opaque, time-sortable resource ids: a type prefix and a lower-case ULID.

pub const ORGANIZATION: &str = "org";
pub const MEMBERSHIP: &str = "mem";
pub const INVITATION: &str = "inv";
pub const DOMAIN: &str = "dom";
pub const MEMBERSHIP_REQUEST: &str = "mrq";
pub const ROLE: &str = "role";
pub const PERMISSION: &str = "perm";
pub const EVENT: &str = "evt";

/// A new id with the given prefix, for example `org_01jd…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}
