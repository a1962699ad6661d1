//! One organization: its fields, this period's bill, members with roles,
//! invitations, domains and audit events, and the forms of its actions (each
//! leads to a confirmation step, see [`super::actions`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use tonic::Status;

use super::Console;
use super::errors::{http_status, refusal};
use super::organizations::{done_text, usage_cell, usage_of};
use super::page::{
    Area, encode, layout, membership_state, notice, organization_href, organization_state, respond,
    time_element,
};
use super::rpc::{call, paths};
use super::session::Session;
use crate::proto::v1::{
    self as pb, invitation_service_server::InvitationService,
    organization_service_server::OrganizationService,
};

/// Rows of each list on the page.
const PAGE_SIZE: i32 = 20;

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    members: String,
    #[serde(default)]
    invitations: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    audit: String,
    #[serde(default)]
    done: String,
}

/// Reads an organization as the session.
pub async fn get_organization(
    console: &Console,
    session: &Session,
    id: &str,
) -> Result<pb::Organization, Status> {
    let api = &console.services.organization;
    call(
        console,
        session,
        paths::GET_ORGANIZATION,
        pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                id.to_string(),
            )),
        },
        |request| api.get_organization(request),
    )
    .await
    .and_then(|response| {
        response
            .organization
            .ok_or_else(|| Status::internal("no organization in the answer"))
    })
}

/// The role keys the session may read, for the role pickers.
pub async fn role_keys(console: &Console, session: &Session) -> Vec<String> {
    let api = &console.services.organization;
    call(
        console,
        session,
        paths::LIST_ROLES,
        pb::ListRolesRequest {
            page_size: 500,
            page_token: String::new(),
        },
        |request| api.list_roles(request),
    )
    .await
    .map(|page| page.roles.into_iter().map(|role| role.key).collect())
    .unwrap_or_default()
}

/// A role picker: a list of the known roles, or a text field when they cannot
/// be read.
pub fn role_picker(id: &str, label: Markup, roles: &[String], current: &str) -> Markup {
    html! {
        label for=(id) { (label) }
        @if roles.is_empty() {
            input id=(id) type="text" name="role" value=(current) placeholder="org:member";
        } @else {
            select id=(id) name="role" {
                @for role in roles {
                    option value=(role) selected[role == current] { (role) }
                }
            }
        }
    }
}

pub async fn show(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let organization = match get_organization(&console, &session, &id).await {
        Ok(organization) => organization,
        Err(status) => {
            let main = html! {
                h1 { "Organization" }
                (refusal(&status))
                p { a href="/organizations" { "Back to the organizations" } }
            };
            return respond(
                http_status(&status),
                layout("Organization", Area::Organizations, Some(&session), main),
            );
        }
    };
    let roles = role_keys(&console, &session).await;
    let usage = usage_of(&console, &session, &id).await;
    let orgs = &console.services.organization;
    let invitations = &console.services.invitation;
    let members = call(
        &console,
        &session,
        paths::LIST_MEMBERSHIPS,
        pb::ListMembershipsRequest {
            organization_id: id.clone(),
            page_size: PAGE_SIZE,
            page_token: query.members.clone(),
            ..Default::default()
        },
        |request| orgs.list_memberships(request),
    )
    .await;
    let invited = call(
        &console,
        &session,
        paths::LIST_INVITATIONS,
        pb::ListInvitationsRequest {
            organization_id: id.clone(),
            page_size: PAGE_SIZE,
            page_token: query.invitations.clone(),
            ..Default::default()
        },
        |request| invitations.list_invitations(request),
    )
    .await;
    let domains = call(
        &console,
        &session,
        paths::LIST_DOMAINS,
        pb::ListDomainsRequest {
            organization_id: id.clone(),
            page_size: PAGE_SIZE,
            page_token: query.domains.clone(),
        },
        |request| invitations.list_domains(request),
    )
    .await;
    let audit = call(
        &console,
        &session,
        paths::LIST_AUDIT_EVENTS,
        pb::ListAuditEventsRequest {
            organization_id: id.clone(),
            page_size: PAGE_SIZE,
            page_token: query.audit.clone(),
            ..Default::default()
        },
        |request| orgs.list_audit_events(request),
    )
    .await;
    let href = organization_href(&organization.id);
    let main = html! {
        h1 { (organization.name) }
        @if let Some(text) = done_text(&query.done) { (notice(text)) }
        (details(&organization))
        section aria-labelledby="billing-heading" {
            h2 id="billing-heading" { "This period's bill" }
            p { (usage_cell(&usage)) }
        }
        section aria-labelledby="members-heading" {
            h2 id="members-heading" { "Members" }
            (section_of(&members, |page| members_table(&href, &session, &roles, page, &query.members)))
            (add_member_form(&href, &session, &roles))
        }
        section aria-labelledby="invitations-heading" {
            h2 id="invitations-heading" { "Invitations" }
            (section_of(&invited, |page| invitations_table(&href, page)))
        }
        section aria-labelledby="domains-heading" {
            h2 id="domains-heading" { "Domains" }
            (section_of(&domains, |page| domains_table(&href, page)))
        }
        section aria-labelledby="audit-heading" {
            h2 id="audit-heading" { "Audit events" }
            (section_of(&audit, |page| audit_table(&href, page)))
        }
        section aria-labelledby="actions-heading" {
            h2 id="actions-heading" { "Change the organization" }
            form.inline method="post" action={ (href) "/rename" } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="etag" value=(organization.etag);
                label for="name" { "New name" }
                input id="name" type="text" name="name" value=(organization.name) required maxlength="256";
                button type="submit" { "Rename…" }
            }
            form.inline method="post" action={ (href) "/delete" } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="etag" value=(organization.etag);
                button.danger type="submit" { "Delete this organization…" }
            }
            @let deactivated = organization.state == pb::OrganizationState::Deactivated as i32;
            form.inline method="post" action={ (href) @if deactivated { "/reactivate" } @else { "/deactivate" } } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="etag" value=(organization.etag);
                button type="submit" {
                    @if deactivated { "Reactivate this organization…" } @else { "Deactivate this organization…" }
                }
            }
        }
    };
    respond(
        axum::http::StatusCode::OK,
        layout(
            &organization.name,
            Area::Organizations,
            Some(&session),
            main,
        ),
    )
}

/// A section's content, or the words of its refusal.
fn section_of<T>(result: &Result<T, Status>, render: impl FnOnce(&T) -> Markup) -> Markup {
    match result {
        Ok(page) => render(page),
        Err(status) => refusal(status),
    }
}

/// The organization's fields, its lifecycle state (API §7.6) first.
fn details(organization: &pb::Organization) -> Markup {
    let limit = if organization.max_allowed_memberships == 0 {
        "unlimited".to_string()
    } else {
        organization.max_allowed_memberships.to_string()
    };
    html! {
        dl.fields {
            dt { "State" } dd { (organization_state(organization)) }
            dt { "Id" } dd { code { (organization.id) } }
            dt { "Slug" } dd { code { (organization.slug) } }
            dt { "Created by" } dd { @if organization.created_by.is_empty() { "—" } @else { code { (organization.created_by) } } }
            dt { "Members" } dd { (organization.members_count) " (limit: " (limit) ")" }
            dt { "Pending invitations" } dd { (organization.pending_invitations_count) }
            dt { "Created" } dd { (time_element(organization.create_time.as_ref())) }
            dt { "Updated" } dd { (time_element(organization.update_time.as_ref())) }
        }
    }
}

/// Links to the first and next page of one list of the page.
fn pager(href: &str, param: &str, current: &str, next: &str) -> Markup {
    html! {
        @if !current.is_empty() || !next.is_empty() {
            nav.pager aria-label={ "Pages of " (param) } {
                @if !current.is_empty() { a href=(href) { "First page" } }
                @if !next.is_empty() {
                    a href={ (href) "?" (param) "=" (encode(next)) } rel="next" { "Next page" }
                }
            }
        }
    }
}

fn members_table(
    href: &str,
    session: &Session,
    roles: &[String],
    page: &pb::ListMembershipsResponse,
    current: &str,
) -> Markup {
    html! {
        p { (page.total_size) " member" @if page.total_size != 1 { "s" } "." }
        @if !page.memberships.is_empty() {
            table {
                thead {
                    tr {
                        th scope="col" { "User" }
                        th scope="col" { "Role" }
                        th scope="col" { "State" }
                        th scope="col" { "Member since" }
                        th scope="col" { "Change role" }
                        th scope="col" { "Deactivate or reactivate" }
                        th scope="col" { "Remove" }
                    }
                }
                tbody {
                    @for (index, member) in page.memberships.iter().enumerate() {
                        tr {
                            th scope="row" { code { (member.user_id) } }
                            td { (member.role) }
                            td { (membership_state(member)) }
                            td { (time_element(member.create_time.as_ref())) }
                            td {
                                form.inline method="post" action={ (href) "/members/role" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="user_id" value=(member.user_id);
                                    input type="hidden" name="etag" value=(member.etag);
                                    (role_picker(&format!("role-{index}"), html! { span.visually-hidden { "New role of " (member.user_id) } }, roles, &member.role))
                                    button type="submit" { "Change role…" }
                                }
                            }
                            td {
                                @let deactivated = member.state == pb::MembershipState::Deactivated as i32;
                                form.inline method="post" action={ (href) @if deactivated { "/members/reactivate" } @else { "/members/deactivate" } } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="user_id" value=(member.user_id);
                                    input type="hidden" name="etag" value=(member.etag);
                                    button type="submit" {
                                        @if deactivated { "Reactivate" } @else { "Deactivate" }
                                        span.visually-hidden { " " (member.user_id) } "…"
                                    }
                                }
                            }
                            td {
                                form.inline method="post" action={ (href) "/members/remove" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="user_id" value=(member.user_id);
                                    input type="hidden" name="etag" value=(member.etag);
                                    button type="submit" { "Remove" span.visually-hidden { " " (member.user_id) } "…" }
                                }
                            }
                        }
                    }
                }
            }
        }
        (pager(href, "members", current, &page.next_page_token))
    }
}

fn add_member_form(href: &str, session: &Session, roles: &[String]) -> Markup {
    html! {
        h3 { "Add a member" }
        form.inline method="post" action={ (href) "/members/add" } {
            input type="hidden" name="csrf" value=(session.csrf);
            label for="new-user" { "User id" }
            input id="new-user" type="text" name="user_id" required maxlength="128" autocomplete="off";
            (role_picker("new-role", html! { "Role" }, roles, "org:member"))
            button type="submit" { "Preview the bill…" }
        }
    }
}

fn invitation_status(status: i32) -> &'static str {
    match pb::InvitationStatus::try_from(status) {
        Ok(pb::InvitationStatus::Pending) => "pending",
        Ok(pb::InvitationStatus::Accepted) => "accepted",
        Ok(pb::InvitationStatus::Revoked) => "revoked",
        Ok(pb::InvitationStatus::Expired) => "expired",
        _ => "unknown",
    }
}

fn invitations_table(href: &str, page: &pb::ListInvitationsResponse) -> Markup {
    html! {
        p { (page.total_size) " invitation" @if page.total_size != 1 { "s" } "." }
        @if !page.invitations.is_empty() {
            table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Status" } th scope="col" { "Expires" } } }
                tbody {
                    @for invitation in &page.invitations {
                        tr {
                            th scope="row" { (invitation.email_address) }
                            td { (invitation.role) }
                            td { (invitation_status(invitation.status)) }
                            td { (time_element(invitation.expire_time.as_ref())) }
                        }
                    }
                }
            }
        }
        (pager(href, "invitations", "", &page.next_page_token))
    }
}

fn enrollment_mode(mode: i32) -> &'static str {
    match pb::EnrollmentMode::try_from(mode) {
        Ok(pb::EnrollmentMode::ManualInvitation) => "manual invitation",
        Ok(pb::EnrollmentMode::AutomaticInvitation) => "automatic invitation",
        Ok(pb::EnrollmentMode::AutomaticSuggestion) => "automatic suggestion",
        _ => "unknown",
    }
}

fn domains_table(href: &str, page: &pb::ListDomainsResponse) -> Markup {
    html! {
        p { (page.total_size) " domain" @if page.total_size != 1 { "s" } "." }
        @if !page.domains.is_empty() {
            table {
                thead { tr { th scope="col" { "Domain" } th scope="col" { "Verified" } th scope="col" { "Enrollment" } } }
                tbody {
                    @for domain in &page.domains {
                        tr {
                            th scope="row" { (domain.name) }
                            td { @if domain.verified { "yes, " (time_element(domain.verify_time.as_ref())) } @else { "no" } }
                            td { (enrollment_mode(domain.enrollment_mode)) }
                        }
                    }
                }
            }
        }
        (pager(href, "domains", "", &page.next_page_token))
    }
}

fn audit_table(href: &str, page: &pb::ListAuditEventsResponse) -> Markup {
    html! {
        p { (page.total_size) " event" @if page.total_size != 1 { "s" } ", newest first." }
        @if !page.audit_events.is_empty() {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Actor" } th scope="col" { "Resource" } } }
                tbody {
                    @for event in &page.audit_events {
                        tr {
                            td { (time_element(event.create_time.as_ref())) }
                            th scope="row" { (event.action) }
                            td {
                                code { (event.actor) }
                                @if !event.on_behalf_of.is_empty() { " via " code { (event.on_behalf_of) } }
                            }
                            td { code { (event.resource_id) } }
                        }
                    }
                }
            }
        }
        (pager(href, "audit", "", &page.next_page_token))
    }
}
