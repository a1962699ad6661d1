//! Clerk's role model: system permissions and the built-in roles.

pub const PROFILE_MANAGE: &str = "org:sys_profile:manage";
pub const PROFILE_DELETE: &str = "org:sys_profile:delete";
pub const MEMBERSHIPS_READ: &str = "org:sys_memberships:read";
pub const MEMBERSHIPS_MANAGE: &str = "org:sys_memberships:manage";
pub const DOMAINS_READ: &str = "org:sys_domains:read";
pub const DOMAINS_MANAGE: &str = "org:sys_domains:manage";
pub const BILLING_READ: &str = "org:sys_billing:read";

/// Every system permission with its display name.
pub const SYSTEM_PERMISSIONS: &[(&str, &str)] = &[
    (BILLING_READ, "Read billing"),
    (DOMAINS_MANAGE, "Manage domains"),
    (DOMAINS_READ, "Read domains"),
    (MEMBERSHIPS_MANAGE, "Manage members"),
    (MEMBERSHIPS_READ, "Read members"),
    (PROFILE_DELETE, "Delete organization"),
    (PROFILE_MANAGE, "Manage organization"),
];

pub const ADMIN_ROLE: &str = "org:admin";
pub const MEMBER_ROLE: &str = "org:member";

/// The built-in roles: key, name, description, permissions.
pub const BUILT_IN_ROLES: &[(&str, &str, &str, &[&str])] = &[
    (
        ADMIN_ROLE,
        "Admin",
        "Every system permission",
        &[
            BILLING_READ,
            DOMAINS_MANAGE,
            DOMAINS_READ,
            MEMBERSHIPS_MANAGE,
            MEMBERSHIPS_READ,
            PROFILE_DELETE,
            PROFILE_MANAGE,
        ],
    ),
    (
        MEMBER_ROLE,
        "Member",
        "Reads the members of the organization",
        &[MEMBERSHIPS_READ],
    ),
];

pub fn is_built_in_role(key: &str) -> bool {
    BUILT_IN_ROLES.iter().any(|(built_in, ..)| *built_in == key)
}

pub fn is_system_permission(key: &str) -> bool {
    key.starts_with(super::types::SYSTEM_PERMISSION_PREFIX)
}
