//! Custom roles and permissions.

use super::organizations::{Page, finish_simple, next_token, unknown_permissions};
use super::{Begun, Idempotency, Services};
use crate::domain::ids::{self, new_id};
use crate::domain::roles::{MEMBERSHIPS_MANAGE, is_built_in_role, is_system_permission};
use crate::domain::{Actor, Error, Reason, Result, paging};
use crate::store::is_unique_violation;
use crate::store::repo::roles::{self, PermissionRow, RoleRecord};

/// What `CreateRole` takes, validated.
#[derive(Debug, Clone)]
pub struct NewRole {
    pub key: String,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

/// The fields of a role an update may change.
#[derive(Debug, Clone, Default)]
pub struct RoleChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<Vec<String>>,
}

/// What `CreatePermission` takes, validated.
#[derive(Debug, Clone)]
pub struct NewPermission {
    pub key: String,
    pub name: String,
    pub description: String,
}

fn role_not_found(key: &str) -> Error {
    Error::NotFound(Reason::RoleNotFound, format!("there is no role {key}"))
}

impl Services {
    pub async fn create_role(
        &self,
        actor: &Actor,
        new: NewRole,
        idempotency: Option<&Idempotency>,
    ) -> Result<RoleRecord> {
        let work = match self.begin_idempotent(actor, idempotency, false).await? {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let result: Result<RoleRecord> = async {
            let existing = roles::existing_permissions(&work.txn, &new.permissions).await?;
            let violations = unknown_permissions("permissions", &new.permissions, &existing);
            if !violations.is_empty() {
                return Err(Error::InvalidArgument(violations));
            }
            let role = RoleRecord {
                id: new_id(ids::ROLE),
                key: new.key.clone(),
                name: new.name,
                description: new.description,
                built_in: false,
                create_time: work.now,
                update_time: work.now,
                revision: 1,
                permissions: new.permissions,
            };
            roles::insert_role(&work.txn, &role).await.map_err(|err| {
                if is_unique_violation(&err) {
                    Error::AlreadyExists(Reason::RoleExists, format!("the role {} exists", new.key))
                } else {
                    err.into()
                }
            })?;
            Ok(role)
        }
        .await;
        work.conclude(
            actor,
            idempotency,
            |_: &RoleRecord| String::new(),
            |role| role.id.clone(),
            result,
        )
        .await
    }

    pub async fn get_role(&self, key: &str) -> Result<RoleRecord> {
        roles::get_role(self.db.conn(), key)
            .await?
            .ok_or_else(|| role_not_found(key))
    }

    pub async fn list_roles(&self, page_size: u64, page_token: &str) -> Result<Page<RoleRecord>> {
        let fingerprint = paging::fingerprint("roles", &[]);
        let after = paging::decode(&fingerprint, page_token, 1)?;
        let conn = self.db.conn();
        let mut rows =
            roles::list_roles(conn, after.as_ref().map(|k| k[0].as_str()), page_size + 1).await?;
        let total_size = roles::count_roles(conn).await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(&fingerprint, vec![last.key.clone()])
        });
        Ok(Page {
            items: rows,
            next_page_token,
            total_size,
        })
    }

    pub async fn update_role(
        &self,
        actor: &Actor,
        key: &str,
        etag: Option<&str>,
        changes: RoleChanges,
    ) -> Result<RoleRecord> {
        let work = self.begin(false).await?;
        let result: Result<RoleRecord> = async {
            let current = roles::get_role(&work.txn, key)
                .await?
                .ok_or_else(|| role_not_found(key))?;
            if current.built_in {
                return Err(Error::FailedPrecondition(
                    Reason::SystemRole,
                    format!("the built-in role {key} cannot be changed"),
                ));
            }
            if let Some(etag) = etag
                && etag != current.etag()
            {
                return Err(Error::EtagMismatch);
            }
            let mut updated = current.clone();
            if let Some(name) = changes.name {
                updated.name = name;
            }
            if let Some(description) = changes.description {
                updated.description = description;
            }
            if let Some(permissions) = changes.permissions {
                let existing = roles::existing_permissions(&work.txn, &permissions).await?;
                let violations = unknown_permissions("role.permissions", &permissions, &existing);
                if !violations.is_empty() {
                    return Err(Error::InvalidArgument(violations));
                }
                let loses_manage = current.permissions.iter().any(|p| p == MEMBERSHIPS_MANAGE)
                    && !permissions.iter().any(|p| p == MEMBERSHIPS_MANAGE);
                if loses_manage && roles::sole_managers_hold(&work.txn, key).await? {
                    return Err(Error::FailedPrecondition(
                        Reason::LastAdmin,
                        format!(
                            "{key} is the only role holding {MEMBERSHIPS_MANAGE} in an organization"
                        ),
                    ));
                }
                updated.permissions = permissions;
            }
            updated.update_time = work.now;
            if !roles::update_role(&work.txn, &updated, current.revision).await? {
                return Err(Error::EtagMismatch);
            }
            updated.revision += 1;
            updated.permissions.sort();
            Ok(updated)
        }
        .await;
        let resource = result.as_ref().map(|r| r.id.clone()).unwrap_or_default();
        finish_simple(work, actor, "", &resource, result).await
    }

    pub async fn delete_role(&self, actor: &Actor, key: &str) -> Result<()> {
        let work = self.begin(false).await?;
        let result: Result<String> = async {
            let current = roles::get_role(&work.txn, key)
                .await?
                .ok_or_else(|| role_not_found(key))?;
            if current.built_in || is_built_in_role(key) {
                return Err(Error::FailedPrecondition(
                    Reason::SystemRole,
                    format!("the built-in role {key} cannot be deleted"),
                ));
            }
            let rules = &self.config.rules;
            if key == rules.creator_role || key == rules.default_role {
                return Err(Error::FailedPrecondition(
                    Reason::RoleInUse,
                    format!("{key} is the configured creator or default role"),
                ));
            }
            if roles::role_in_use(&work.txn, key).await? {
                return Err(Error::FailedPrecondition(
                    Reason::RoleInUse,
                    format!("{key} is held by memberships or pending invitations"),
                ));
            }
            roles::delete_role(&work.txn, key).await?;
            Ok(current.id)
        }
        .await;
        let resource = result.as_ref().cloned().unwrap_or_default();
        finish_simple(work, actor, "", &resource, result)
            .await
            .map(|_| ())
    }

    pub async fn create_permission(
        &self,
        actor: &Actor,
        new: NewPermission,
        idempotency: Option<&Idempotency>,
    ) -> Result<PermissionRow> {
        let mut work = match self.begin_idempotent(actor, idempotency, false).await? {
            Begun::Replay(previous) => return Ok(previous),
            Begun::Fresh(work) => work,
        };
        let row = PermissionRow {
            id: new_id(ids::PERMISSION),
            key: new.key.clone(),
            name: new.name,
            description: new.description,
            system: false,
            create_time: work.now,
        };
        match roles::insert_permission(&work.txn, &row).await {
            Ok(()) => {
                work.audit(
                    actor,
                    "",
                    &row.id,
                    idempotency.map(|k| k.request_id.as_str()),
                );
                work.finish(actor, idempotency, &row).await?;
                Ok(row)
            }
            Err(err) => {
                work.rollback().await;
                if is_unique_violation(&err) {
                    Err(Error::AlreadyExists(
                        Reason::PermissionExists,
                        format!("the permission {} exists", new.key),
                    ))
                } else {
                    Err(err.into())
                }
            }
        }
    }

    pub async fn list_permissions(
        &self,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<PermissionRow>> {
        let fingerprint = paging::fingerprint("permissions", &[]);
        let after = paging::decode(&fingerprint, page_token, 1)?;
        let conn = self.db.conn();
        let mut rows =
            roles::list_permissions(conn, after.as_ref().map(|k| k[0].as_str()), page_size + 1)
                .await?;
        let total_size = roles::count_permissions(conn).await?;
        let next_page_token = next_token(&mut rows, page_size, |last| {
            paging::encode(&fingerprint, vec![last.key.clone()])
        });
        Ok(Page {
            items: rows,
            next_page_token,
            total_size,
        })
    }

    pub async fn delete_permission(&self, actor: &Actor, key: &str) -> Result<()> {
        let work = self.begin(false).await?;
        let result: Result<String> = async {
            let current = roles::get_permission(&work.txn, key)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(
                        Reason::PermissionNotFound,
                        format!("there is no permission {key}"),
                    )
                })?;
            if current.system || is_system_permission(key) {
                return Err(Error::FailedPrecondition(
                    Reason::SystemRole,
                    format!("the system permission {key} cannot be deleted"),
                ));
            }
            if roles::permission_in_use(&work.txn, key).await? {
                return Err(Error::FailedPrecondition(
                    Reason::PermissionInUse,
                    format!("{key} is granted by a role"),
                ));
            }
            roles::delete_permission(&work.txn, key).await?;
            Ok(current.id)
        }
        .await;
        let resource = result.as_ref().cloned().unwrap_or_default();
        finish_simple(work, actor, "", &resource, result)
            .await
            .map(|_| ())
    }
}
