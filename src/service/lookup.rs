//! The membership lookup the authorizer decides with: one indexed query, read
//! fresh for every decision, so a write is never allowed on a role another
//! replica has just taken away.

use crate::auth::MembershipLookup;
use crate::domain::Result;
use crate::domain::ids::{OrganizationId, PermissionKey};
use crate::store::{Db, repo::memberships};

/// Reads who holds which permissions from the database.
#[derive(Debug, Clone)]
pub struct DatabaseMembershipLookup {
    db: Db,
}

impl DatabaseMembershipLookup {
    pub fn new(db: Db) -> Self {
        DatabaseMembershipLookup { db }
    }
}

#[async_trait::async_trait]
impl MembershipLookup for DatabaseMembershipLookup {
    async fn permissions(
        &self,
        organization_id: &OrganizationId,
        user_id: &str,
    ) -> Result<Option<Vec<PermissionKey>>> {
        Ok(
            memberships::role_and_permissions(self.db.conn(), organization_id.as_str(), user_id)
                .await?
                .map(|(_, permissions)| {
                    permissions
                        .into_iter()
                        .map(PermissionKey::from_stored)
                        .collect()
                }),
        )
    }
}
