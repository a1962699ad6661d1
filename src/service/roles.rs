//! Custom roles and permissions.

use super::list::Listing;
use super::unit_of_work::{Call, Idempotency, Writer};
use crate::domain::events::EventKind;
use crate::domain::ids::{PermissionId, PermissionKey, RoleId, RoleKey};
use crate::domain::organizations::OrganizationRules;
use crate::domain::paging::{Page, PageTokens};
use crate::domain::roles::{
    MEMBERSHIPS_MANAGE, NewPermission, NewRole, Permission, Role, RoleChanges, is_built_in_role,
};
use crate::domain::{Actor, Error, FieldViolation, Reason, Result};
use crate::store::repo::roles::{self, PermissionRow, RoleRecord};
use crate::store::{Db, is_unique_violation};

fn role_not_found(key: &str) -> Error {
    Error::NotFound(Reason::RoleNotFound, format!("there is no role {key}"))
}

/// Field violations for the permission keys of `requested` that do not exist.
fn unknown_permissions(
    field: &str,
    requested: &[PermissionKey],
    existing: &[String],
) -> Vec<FieldViolation> {
    requested
        .iter()
        .enumerate()
        .filter(|(_, key)| !existing.iter().any(|e| *key == e.as_str()))
        .map(|(i, key)| {
            FieldViolation::new(
                format!("{field}[{i}]"),
                format!("there is no permission {key}"),
            )
        })
        .collect()
}

fn keys(permissions: &[PermissionKey]) -> Vec<String> {
    permissions.iter().map(PermissionKey::to_string).collect()
}

/// The role and permission use cases.
#[derive(Debug, Clone)]
pub struct Roles {
    db: Db,
    writer: Writer,
    rules: OrganizationRules,
    tokens: PageTokens,
}

impl Roles {
    pub fn new(db: Db, writer: Writer, rules: OrganizationRules, tokens: PageTokens) -> Self {
        Roles {
            db,
            writer,
            rules,
            tokens,
        }
    }

    pub async fn create_role(
        &self,
        actor: Actor,
        new: NewRole,
        idempotency: Option<Idempotency>,
    ) -> Result<Role> {
        self.writer
            .write(Call::idempotent(actor, idempotency, false), move |tx| {
                Box::pin(async move {
                    roles::lock_catalogue_for_change(tx.conn()).await?;
                    let requested = keys(&new.permissions);
                    let existing = roles::existing_permissions(tx.conn(), &requested).await?;
                    let violations =
                        unknown_permissions("permissions", &new.permissions, &existing);
                    if !violations.is_empty() {
                        return Err(Error::InvalidArgument(violations));
                    }
                    let record = RoleRecord {
                        id: RoleId::new().into_string(),
                        key: new.key.to_string(),
                        name: new.name,
                        description: new.description,
                        built_in: false,
                        create_time: tx.now,
                        update_time: tx.now,
                        revision: 1,
                        permissions: requested,
                    };
                    roles::insert_role(tx.conn(), &record)
                        .await
                        .map_err(|err| {
                            if is_unique_violation(&err) {
                                Error::AlreadyExists(
                                    Reason::RoleExists,
                                    format!("the role {} exists", new.key),
                                )
                            } else {
                                err.into()
                            }
                        })?;
                    let role = Role::from(record);
                    tx.emit(EventKind::RoleCreated, None, role.id.as_str(), &role)?;
                    Ok(role)
                })
            })
            .await
    }

    pub async fn get_role(&self, key: &RoleKey) -> Result<Role> {
        roles::get_role(self.db.conn(), key.as_str())
            .await?
            .map(Role::from)
            .ok_or_else(|| role_not_found(key.as_str()))
    }

    pub async fn list_roles(&self, page_size: u64, page_token: &str) -> Result<Page<Role>> {
        let listing = Listing::start(&self.tokens, "roles", &[], 1, page_size, page_token)?;
        let conn = self.db.conn();
        let after = listing.after_text(0);
        let rows = roles::list_roles(conn, after.as_deref(), listing.limit()).await?;
        let total_size = roles::count_roles(conn).await?;
        Ok(listing
            .finish(rows, total_size, |last| vec![last.key.clone()])
            .map(Role::from))
    }

    pub async fn update_role(
        &self,
        actor: Actor,
        key: RoleKey,
        etag: Option<String>,
        changes: RoleChanges,
    ) -> Result<Role> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    roles::lock_catalogue_for_change(tx.conn()).await?;
                    let current = roles::get_role(tx.conn(), key.as_str())
                        .await?
                        .ok_or_else(|| role_not_found(key.as_str()))?;
                    if current.built_in {
                        return Err(Error::FailedPrecondition(
                            Reason::SystemRole,
                            format!("the built-in role {key} cannot be changed"),
                        ));
                    }
                    if let Some(etag) = &etag
                        && *etag != current.etag()
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
                        let requested = keys(&permissions);
                        let existing = roles::existing_permissions(tx.conn(), &requested).await?;
                        let violations =
                            unknown_permissions("role.permissions", &permissions, &existing);
                        if !violations.is_empty() {
                            return Err(Error::InvalidArgument(violations));
                        }
                        let loses_manage = current.permissions.iter().any(|p| p == MEMBERSHIPS_MANAGE)
                            && !requested.iter().any(|p| p == MEMBERSHIPS_MANAGE);
                        if loses_manage && roles::sole_managers_hold(tx.conn(), key.as_str()).await? {
                            return Err(Error::FailedPrecondition(
                                Reason::LastAdmin,
                                format!(
                                    "{key} is the only role holding {MEMBERSHIPS_MANAGE} in an organization"
                                ),
                            ));
                        }
                        updated.permissions = requested;
                    }
                    updated.update_time = tx.now;
                    if !roles::update_role(tx.conn(), &updated, current.revision).await? {
                        return Err(Error::EtagMismatch);
                    }
                    updated.revision += 1;
                    let role = Role::from(updated);
                    tx.emit(EventKind::RoleUpdated, None, role.id.as_str(), &role)?;
                    Ok(role)
                })
            })
            .await
    }

    pub async fn delete_role(&self, actor: Actor, key: RoleKey) -> Result<()> {
        let rules = self.rules.clone();
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    roles::lock_catalogue_for_change(tx.conn()).await?;
                    let current = roles::get_role(tx.conn(), key.as_str())
                        .await?
                        .ok_or_else(|| role_not_found(key.as_str()))?;
                    if current.built_in || is_built_in_role(key.as_str()) {
                        return Err(Error::FailedPrecondition(
                            Reason::SystemRole,
                            format!("the built-in role {key} cannot be deleted"),
                        ));
                    }
                    if key == rules.creator_role || key == rules.default_role {
                        return Err(Error::FailedPrecondition(
                            Reason::RoleInUse,
                            format!("{key} is the configured creator or default role"),
                        ));
                    }
                    if roles::role_in_use(tx.conn(), key.as_str()).await? {
                        return Err(Error::FailedPrecondition(
                            Reason::RoleInUse,
                            format!("{key} is held by memberships or pending invitations"),
                        ));
                    }
                    roles::delete_role(tx.conn(), key.as_str()).await?;
                    let last = Role::from(current);
                    tx.emit(EventKind::RoleDeleted, None, last.id.as_str(), &last)?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn create_permission(
        &self,
        actor: Actor,
        new: NewPermission,
        idempotency: Option<Idempotency>,
    ) -> Result<Permission> {
        self.writer
            .write(Call::idempotent(actor, idempotency, false), move |tx| {
                Box::pin(async move {
                    let row = PermissionRow {
                        id: PermissionId::new().into_string(),
                        key: new.key.to_string(),
                        name: new.name,
                        description: new.description,
                        system: false,
                        create_time: tx.now,
                    };
                    roles::insert_permission(tx.conn(), &row)
                        .await
                        .map_err(|err| {
                            if is_unique_violation(&err) {
                                Error::AlreadyExists(
                                    Reason::PermissionExists,
                                    format!("the permission {} exists", new.key),
                                )
                            } else {
                                err.into()
                            }
                        })?;
                    let permission = Permission::from(row);
                    tx.emit(
                        EventKind::PermissionCreated,
                        None,
                        permission.id.as_str(),
                        &permission,
                    )?;
                    Ok(permission)
                })
            })
            .await
    }

    pub async fn list_permissions(
        &self,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<Permission>> {
        let listing = Listing::start(&self.tokens, "permissions", &[], 1, page_size, page_token)?;
        let conn = self.db.conn();
        let after = listing.after_text(0);
        let rows = roles::list_permissions(conn, after.as_deref(), listing.limit()).await?;
        let total_size = roles::count_permissions(conn).await?;
        Ok(listing
            .finish(rows, total_size, |last| vec![last.key.clone()])
            .map(Permission::from))
    }

    pub async fn delete_permission(&self, actor: Actor, key: PermissionKey) -> Result<()> {
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    roles::lock_catalogue_for_change(tx.conn()).await?;
                    let current = roles::get_permission(tx.conn(), key.as_str())
                        .await?
                        .ok_or_else(|| {
                            Error::NotFound(
                                Reason::PermissionNotFound,
                                format!("there is no permission {key}"),
                            )
                        })?;
                    if current.system || key.is_system() {
                        return Err(Error::FailedPrecondition(
                            Reason::SystemRole,
                            format!("the system permission {key} cannot be deleted"),
                        ));
                    }
                    if roles::permission_in_use(tx.conn(), key.as_str()).await? {
                        return Err(Error::FailedPrecondition(
                            Reason::PermissionInUse,
                            format!("{key} is granted by a role"),
                        ));
                    }
                    roles::delete_permission(tx.conn(), key.as_str()).await?;
                    let last = Permission::from(current);
                    tx.emit(EventKind::PermissionDeleted, None, last.id.as_str(), &last)?;
                    Ok(())
                })
            })
            .await
    }
}
