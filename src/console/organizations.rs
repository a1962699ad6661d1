//! The organizations page: search, paging, members and whether each is
//! billable this period.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use tonic::{Code, Status};

use super::Console;
use super::errors::{http_status, refusal};
use super::page::{
    Area, encode, layout, notice, organization_href, organization_state, respond, time_element,
};
use super::rpc::{call, paths};
use super::session::Session;
use crate::proto::v1::{
    self as pb, billing_service_server::BillingService,
    organization_service_server::OrganizationService,
};

/// Organizations per page.
const PAGE_SIZE: i32 = 25;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    query: String,
    #[serde(default)]
    user_id: String,
    /// `active`, `deactivated`, or empty for any state.
    #[serde(default)]
    state: String,
    #[serde(default)]
    page_token: String,
    #[serde(default)]
    done: String,
}

/// What this period's bill says of one organization, as far as the token may
/// read it.
pub fn usage_cell(usage: &Result<pb::OrganizationUsage, Status>) -> Markup {
    match usage {
        Ok(usage) if usage.billable => html! {
            strong { "Billable" } " since " (time_element(usage.billable_since.as_ref()))
            " · " (usage.active_member_count) " active"
        },
        Ok(usage) => html! { "Not billable · " (usage.active_member_count) " active" },
        Err(status) if matches!(status.code(), Code::PermissionDenied | Code::NotFound) => {
            html! { span.muted { "Your token may not read this organization's billing." } }
        }
        Err(status) => html! { span.muted { "Billing not available: " (status.message()) } },
    }
}

/// This period's usage of an organization, read as the session.
pub async fn usage_of(
    console: &Console,
    session: &Session,
    organization_id: &str,
) -> Result<pb::OrganizationUsage, Status> {
    let api = &console.services.billing;
    call(
        console,
        session,
        paths::GET_ORGANIZATION_USAGE,
        pb::GetOrganizationUsageRequest {
            organization_id: organization_id.to_string(),
            ..Default::default()
        },
        |request| api.get_organization_usage(request),
    )
    .await
    .and_then(|response| {
        response
            .usage
            .ok_or_else(|| Status::internal("no usage in the answer"))
    })
}

/// The words of a `done` marker left by an action's redirect.
pub fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "renamed" => "The organization was renamed.",
        "member-added" => "The member was added.",
        "role-changed" => "The member's role was changed.",
        "member-removed" => "The member was removed.",
        "deleted" => "The organization was deleted.",
        "deactivated" => "The organization was deactivated.",
        "reactivated" => "The organization was reactivated.",
        "membership-deactivated" => "The membership was deactivated.",
        "membership-reactivated" => "The membership was reactivated.",
        _ => return None,
    })
}

/// The `state` filter of the list, as ListOrganizations takes it.
fn state_filter(state: &str) -> pb::OrganizationState {
    match state {
        "active" => pb::OrganizationState::Active,
        "deactivated" => pb::OrganizationState::Deactivated,
        _ => pb::OrganizationState::Unspecified,
    }
}

pub async fn list(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Response {
    let api = &console.services.organization;
    let listed = call(
        &console,
        &session,
        paths::LIST_ORGANIZATIONS,
        pb::ListOrganizationsRequest {
            page_size: PAGE_SIZE,
            page_token: query.page_token.clone(),
            query: query.query.clone(),
            user_id: query.user_id.clone(),
            order_by: "name".into(),
            state: state_filter(&query.state) as i32,
        },
        |request| api.list_organizations(request),
    )
    .await;
    let (status, body) = match listed {
        Ok(page) => {
            let mut rows = Vec::with_capacity(page.organizations.len());
            for organization in page.organizations {
                let usage = usage_of(&console, &session, &organization.id).await;
                rows.push((organization, usage));
            }
            (
                StatusCode::OK,
                table(&query, &rows, page.total_size, &page.next_page_token),
            )
        }
        Err(status) => (http_status(&status), refusal(&status)),
    };
    let main = html! {
        h1 { "Organizations" }
        @if let Some(text) = done_text(&query.done) { (notice(text)) }
        form.search method="get" action="/organizations" role="search" {
            label for="query" { "Search by name or slug" }
            input id="query" type="search" name="query" value=(query.query);
            @if !query.user_id.is_empty() {
                label for="user_id" { "Member user id" }
                input id="user_id" type="text" name="user_id" value=(query.user_id);
            }
            label for="state" { "State" }
            select id="state" name="state" {
                @for (value, words) in [("", "Any"), ("active", "Active"), ("deactivated", "Deactivated")] {
                    option value=(value) selected[query.state == value] { (words) }
                }
            }
            button type="submit" { "Search" }
        }
        (body)
    };
    respond(
        status,
        layout("Organizations", Area::Organizations, Some(&session), main),
    )
}

fn table(
    query: &ListQuery,
    rows: &[(pb::Organization, Result<pb::OrganizationUsage, Status>)],
    total: i32,
    next_page_token: &str,
) -> Markup {
    let base = format!(
        "/organizations?query={}&user_id={}&state={}",
        encode(&query.query),
        encode(&query.user_id),
        encode(&query.state)
    );
    html! {
        p { (total) " organization" @if total != 1 { "s" } " found." }
        @if !rows.is_empty() {
            table {
                caption { "Organizations, by name. Billing is this period's." }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Slug" }
                        th scope="col" { "State" }
                        th scope="col" { "Members" }
                        th scope="col" { "Billable this period" }
                        th scope="col" { "Created" }
                    }
                }
                tbody {
                    @for (organization, usage) in rows {
                        tr {
                            th scope="row" { a href=(organization_href(&organization.id)) { (organization.name) } }
                            td { code { (organization.slug) } }
                            td { (organization_state(organization)) }
                            td.number { (organization.members_count) }
                            td { (usage_cell(usage)) }
                            td { (time_element(organization.create_time.as_ref())) }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !query.page_token.is_empty() {
                a href=(base) { "First page" }
            }
            @if !next_page_token.is_empty() {
                a href={ (base) "&page_token=" (encode(next_page_token)) } rel="next" { "Next page" }
            }
        }
    }
}
