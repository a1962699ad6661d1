//! The role and permission RPCs.

use tonic::{Request, Response};

use super::{Answer, OrganizationApi};
use crate::all_valid;
use crate::auth::Target;
use crate::domain::ids::{PermissionKey, RoleKey};
use crate::domain::roles::{NewPermission, NewRole};
use crate::domain::types::page_size;
use crate::grpc::convert::clamp;
use crate::grpc::convert::organizations::role_update;
use crate::grpc::{caller, idempotency, with_key};
use crate::proto::v1 as pb;

pub async fn create_role(
    api: &OrganizationApi,
    request: Request<pb::CreateRoleRequest>,
) -> Answer<pb::CreateRoleResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let (new, key) = with_key(NewRole::try_from(&req), idempotency(&req, &req.request_id))?;
    let actor = api.authorizer.authorize(&caller, Target::Service).await?;
    let role = api.roles.create_role(actor, new, key).await?;
    Ok(Response::new(pb::CreateRoleResponse {
        role: Some(role.into()),
    }))
}

pub async fn get_role(
    api: &OrganizationApi,
    request: Request<pb::GetRoleRequest>,
) -> Answer<pb::GetRoleResponse> {
    let caller = caller(&request)?;
    let key = RoleKey::parse("key", &request.get_ref().key);
    let key = all_valid!(key);
    api.authorizer.authorize(&caller, Target::Service).await?;
    let role = api.roles.get_role(&key).await?;
    Ok(Response::new(pb::GetRoleResponse {
        role: Some(role.into()),
    }))
}

pub async fn list_roles(
    api: &OrganizationApi,
    request: Request<pb::ListRolesRequest>,
) -> Answer<pb::ListRolesResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let size = page_size("page_size", req.page_size);
    let size = all_valid!(size);
    api.authorizer.authorize(&caller, Target::Service).await?;
    let page = api.roles.list_roles(size, &req.page_token).await?;
    Ok(Response::new(pb::ListRolesResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        roles: page.items.into_iter().map(Into::into).collect(),
    }))
}

pub async fn update_role(
    api: &OrganizationApi,
    request: Request<pb::UpdateRoleRequest>,
) -> Answer<pb::UpdateRoleResponse> {
    let caller = caller(&request)?;
    let (key, etag, changes) = role_update(request.get_ref())?;
    let actor = api.authorizer.authorize(&caller, Target::Service).await?;
    let updated = api.roles.update_role(actor, key, etag, changes).await?;
    Ok(Response::new(pb::UpdateRoleResponse {
        role: Some(updated.into()),
    }))
}

pub async fn delete_role(
    api: &OrganizationApi,
    request: Request<pb::DeleteRoleRequest>,
) -> Answer<pb::DeleteRoleResponse> {
    let caller = caller(&request)?;
    let key = RoleKey::parse("key", &request.get_ref().key);
    let key = all_valid!(key);
    let actor = api.authorizer.authorize(&caller, Target::Service).await?;
    api.roles.delete_role(actor, key).await?;
    Ok(Response::new(pb::DeleteRoleResponse {}))
}

pub async fn create_permission(
    api: &OrganizationApi,
    request: Request<pb::CreatePermissionRequest>,
) -> Answer<pb::CreatePermissionResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let (new, key) = with_key(
        NewPermission::try_from(&req),
        idempotency(&req, &req.request_id),
    )?;
    let actor = api.authorizer.authorize(&caller, Target::Service).await?;
    let permission = api.roles.create_permission(actor, new, key).await?;
    Ok(Response::new(pb::CreatePermissionResponse {
        permission: Some(permission.into()),
    }))
}

pub async fn list_permissions(
    api: &OrganizationApi,
    request: Request<pb::ListPermissionsRequest>,
) -> Answer<pb::ListPermissionsResponse> {
    let caller = caller(&request)?;
    let req = request.into_inner();
    let size = page_size("page_size", req.page_size);
    let size = all_valid!(size);
    api.authorizer.authorize(&caller, Target::Service).await?;
    let page = api.roles.list_permissions(size, &req.page_token).await?;
    Ok(Response::new(pb::ListPermissionsResponse {
        next_page_token: page.next_page_token,
        total_size: clamp(page.total_size),
        permissions: page.items.into_iter().map(Into::into).collect(),
    }))
}

pub async fn delete_permission(
    api: &OrganizationApi,
    request: Request<pb::DeletePermissionRequest>,
) -> Answer<pb::DeletePermissionResponse> {
    let caller = caller(&request)?;
    let key = PermissionKey::parse("key", &request.get_ref().key);
    let key = all_valid!(key);
    let actor = api.authorizer.authorize(&caller, Target::Service).await?;
    api.roles.delete_permission(actor, key).await?;
    Ok(Response::new(pb::DeletePermissionResponse {}))
}
