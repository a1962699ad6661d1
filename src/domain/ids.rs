//! Typed identifiers. Resource ids are opaque and time-sortable: a type
//! prefix and a lower-case ULID (`org_01jd…`). User ids are whatever the
//! identity provider issues; role and permission keys are `org:…` names.
//! Each type is parsed once at the border and then passed around as itself,
//! so an organization id can never be handed where a user id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::FieldViolation;
use super::types;

type Parsed<T> = std::result::Result<T, FieldViolation>;

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

/// A string newtype: read-only access, `Display`, serde as a plain string.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A value read back from storage, where it was valid when written.
            pub fn from_stored(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// A resource id type with its prefix: `new()` makes one, `parse` checks one.
macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $prefix:expr) => {
        string_id!($(#[$doc])* $name);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                $name(new_id($prefix))
            }

            /// Parses a request field: the prefix, `_` and a ULID.
            pub fn parse(field: &str, value: &str) -> Parsed<Self> {
                types::resource_id(field, value, $prefix).map($name)
            }

            /// Like [`Self::parse`], but empty means absent.
            pub fn parse_optional(field: &str, value: &str) -> Parsed<Option<Self>> {
                if value.trim().is_empty() {
                    Ok(None)
                } else {
                    Self::parse(field, value).map(Some)
                }
            }
        }
    };
}

resource_id!(
    /// `org_…`
    OrganizationId,
    ORGANIZATION
);
resource_id!(
    /// `mem_…`
    MembershipId,
    MEMBERSHIP
);
resource_id!(
    /// `inv_…`
    InvitationId,
    INVITATION
);
resource_id!(
    /// `dom_…`
    DomainId,
    DOMAIN
);
resource_id!(
    /// `mrq_…`
    MembershipRequestId,
    MEMBERSHIP_REQUEST
);
resource_id!(
    /// `role_…`
    RoleId,
    ROLE
);
resource_id!(
    /// `perm_…`
    PermissionId,
    PERMISSION
);

string_id!(
    /// A user id (or a service name) as the identity provider issues it.
    UserId
);

impl UserId {
    /// 1–128 characters, no whitespace or control characters.
    pub fn parse(field: &str, value: &str) -> Parsed<Self> {
        types::user_id(field, value).map(UserId)
    }

    /// Like [`Self::parse`], but empty means absent.
    pub fn parse_optional(field: &str, value: &str) -> Parsed<Option<Self>> {
        types::optional_user_id(field, value).map(|id| id.map(UserId))
    }
}

string_id!(
    /// A role key: `org:<name>`.
    RoleKey
);

impl RoleKey {
    pub fn parse(field: &str, value: &str) -> Parsed<Self> {
        types::role_key(field, value).map(RoleKey)
    }

    /// Like [`Self::parse`], but empty means absent.
    pub fn parse_optional(field: &str, value: &str) -> Parsed<Option<Self>> {
        if value.trim().is_empty() {
            Ok(None)
        } else {
            Self::parse(field, value).map(Some)
        }
    }

    /// A configured role (the creator or default role), checked at start-up.
    pub fn configured(value: &str) -> Self {
        RoleKey(value.to_string())
    }
}

string_id!(
    /// A permission key: `org:<feature>:<action>`.
    PermissionKey
);

impl PermissionKey {
    pub fn parse(field: &str, value: &str) -> Parsed<Self> {
        types::permission_key(field, value).map(PermissionKey)
    }

    /// Whether it is one of the reserved `org:sys_` permissions.
    pub fn is_system(&self) -> bool {
        self.0.starts_with(types::SYSTEM_PERMISSION_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_ids_parse_their_own_prefix_only() {
        let id = OrganizationId::new();
        assert!(id.as_str().starts_with("org_"));
        assert_eq!(OrganizationId::parse("f", id.as_str()).unwrap(), id);
        assert!(MembershipId::parse("f", id.as_str()).is_err());
        assert_eq!(OrganizationId::parse_optional("f", " ").unwrap(), None);
        assert!(UserId::parse("f", "user a").is_err());
        assert_eq!(
            serde_json::to_string(&UserId::from_stored("user_a")).unwrap(),
            "\"user_a\""
        );
        assert!(
            PermissionKey::parse("f", "org:sys_profile:manage")
                .unwrap()
                .is_system()
        );
    }
}
