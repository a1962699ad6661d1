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

/// A role with the permissions it grants.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Role {
    pub id: super::ids::RoleId,
    pub key: super::ids::RoleKey,
    pub name: String,
    pub description: String,
    /// Sorted by key.
    pub permissions: Vec<super::ids::PermissionKey>,
    pub built_in: bool,
    pub create_time: super::time::Micros,
    pub update_time: super::time::Micros,
    pub revision: i64,
}

impl Role {
    pub fn etag(&self) -> String {
        super::organizations::etag(self.revision)
    }

    pub fn grants(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// A permission.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Permission {
    pub id: super::ids::PermissionId,
    pub key: super::ids::PermissionKey,
    pub name: String,
    pub description: String,
    /// One of the reserved `org:sys_` permissions.
    pub system: bool,
    pub create_time: super::time::Micros,
}

/// What `CreateRole` takes, validated.
#[derive(Debug, Clone)]
pub struct NewRole {
    pub key: super::ids::RoleKey,
    pub name: String,
    pub description: String,
    /// Sorted, without duplicates.
    pub permissions: Vec<super::ids::PermissionKey>,
}

/// The fields of a role an update may change.
#[derive(Debug, Clone, Default)]
pub struct RoleChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<Vec<super::ids::PermissionKey>>,
}

/// What `CreatePermission` takes, validated.
#[derive(Debug, Clone)]
pub struct NewPermission {
    pub key: super::ids::PermissionKey,
    pub name: String,
    pub description: String,
}
