//! The organization's actions: rename, add a member, change a member's role,
//! remove a member, delete. Each POST first shows a confirmation step with
//! what the change does to this period's bill — for a new member the real
//! `validate_only` preview of `CreateMembership`, for the others this
//! period's usage (billable status accrues within a period, so removing a
//! member or deleting the organization never lowers this period's bill) —
//! and changes nothing until it is confirmed.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tonic::Status;

use super::Console;
use super::errors::{http_status, refusal};
use super::organization::get_organization;
use super::organizations::usage_of;
use super::page::{Area, layout, money, organization_href, respond, time_element};
use super::rpc::{call, paths};
use super::session::{Session, csrf_refused};
use crate::proto::v1::{self as pb, organization_service_server::OrganizationService};

/// The fields of every action form; each action reads those it needs.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub(super) csrf: String,
    /// `yes` on the confirmation step's form.
    #[serde(default)]
    pub(super) confirm: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) etag: String,
    #[serde(default)]
    pub(super) user_id: String,
    #[serde(default)]
    pub(super) role: String,
    #[serde(default)]
    pub(super) request_id: String,
}

impl ActionForm {
    pub(super) fn confirmed(&self) -> bool {
        self.confirm == "yes"
    }
}

/// What one action is called and how it reads.
pub(super) struct Action {
    /// The path below the organization's address.
    pub(super) path: &'static str,
    /// The button of the confirmation step.
    pub(super) verb: &'static str,
}

const RENAME: Action = Action {
    path: "rename",
    verb: "Rename",
};
const ADD_MEMBER: Action = Action {
    path: "members/add",
    verb: "Add the member",
};
const CHANGE_ROLE: Action = Action {
    path: "members/role",
    verb: "Change the role",
};
const REMOVE_MEMBER: Action = Action {
    path: "members/remove",
    verb: "Remove the member",
};
const DELETE: Action = Action {
    path: "delete",
    verb: "Delete the organization",
};

fn field_mask(path: &str) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: vec![path.to_string()],
    })
}

/// A page that shows a refused call.
pub(super) fn refused(session: &Session, id: &str, title: &str, status: &Status) -> Response {
    let main = html! {
        h1 { (title) }
        (refusal(status))
        p { a href=(organization_href(id)) { "Back to the organization" } }
    };
    respond(
        http_status(status),
        layout(title, Area::Organizations, Some(session), main),
    )
}

/// The confirmation step: what changes, what it does to the bill, and the
/// form that confirms it (`None` when the preview already refused it).
pub(super) fn confirmation(
    session: &Session,
    organization: &pb::Organization,
    action: &Action,
    form: &ActionForm,
    change: Markup,
    bill: Markup,
    allowed: bool,
) -> Response {
    let href = organization_href(&organization.id);
    let title = format!("{} — confirm", action.verb);
    let main = html! {
        h1 { (action.verb) " — " (organization.name) }
        section aria-labelledby="change-heading" {
            h2 id="change-heading" { "What changes" }
            (change)
        }
        section aria-labelledby="bill-heading" {
            h2 id="bill-heading" { "This period's bill" }
            (bill)
        }
        @if allowed {
            form.confirm method="post" action={ (href) "/" (action.path) } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="confirm" value="yes";
                input type="hidden" name="name" value=(form.name);
                input type="hidden" name="etag" value=(form.etag);
                input type="hidden" name="user_id" value=(form.user_id);
                input type="hidden" name="role" value=(form.role);
                input type="hidden" name="request_id" value=(form.request_id);
                button.danger[action.path == DELETE.path] type="submit" { (action.verb) }
                " "
                a href=(href) { "Cancel" }
            }
        } @else {
            p { a href=(href) { "Back to the organization" } }
        }
    };
    respond(
        StatusCode::OK,
        layout(&title, Area::Organizations, Some(session), main),
    )
}

/// This period's bill as it stands, and why `what` does not lower it.
pub(super) fn accrued_bill(usage: &Result<pb::OrganizationUsage, Status>, what: &str) -> Markup {
    match usage {
        Ok(usage) if usage.billable => html! {
            p {
                "The organization is billable in " (usage.period) " since "
                (time_element(usage.billable_since.as_ref())) ", with "
                (usage.active_member_count) " active members."
            }
            p {
                (what) " does not lower this period's bill: billable status accrues within a "
                "period, so the organization stays counted until " (usage.period) " ends."
            }
        },
        Ok(usage) => html! {
            p {
                "The organization is not billable in " (usage.period) " so far ("
                (usage.active_member_count) " active members)."
            }
            p {
                (what) " does not lower this period's bill: members already counted active in "
                (usage.period) " stay counted."
            }
        },
        Err(status) => html! {
            p { "The bill cannot be shown: your token may not read this organization's billing." }
            (refusal(status))
        },
    }
}

/// The `billing_impact` of a `validate_only` preview of `what` (for example
/// "adding this member"), in words and numbers.
pub(super) fn impact(impact: &pb::BillingImpact, what: &str) -> Markup {
    let sentence = match (impact.billable_before, impact.billable_after) {
        (false, true) => format!(
            "{} makes the organization billable in {}, which adds {} to this period's bill.",
            capitalized(what),
            impact.period,
            money(impact.marginal_amount.as_ref())
        ),
        (true, _) => format!(
            "The organization is already billable in {}: {what} does not change this period's bill.",
            impact.period
        ),
        (false, false) => format!(
            "The organization stays below the billable threshold in {}: this period's bill does not change.",
            impact.period
        ),
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    html! {
        p { (sentence) }
        table.impact {
            caption { "Billing impact in " (impact.period) }
            thead { tr { td {} th scope="col" { "Before" } th scope="col" { "After" } } }
            tbody {
                tr { th scope="row" { "Active members" } td.number { (impact.active_member_count_before) } td.number { (impact.active_member_count_after) } }
                tr { th scope="row" { "Billable" } td { (yes_no(impact.billable_before)) } td { (yes_no(impact.billable_after)) } }
                tr { th scope="row" { "Added to the bill" } td {} td.number { (money(impact.marginal_amount.as_ref())) } }
            }
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The organization named in the path, or the page saying why it cannot be read.
pub(super) async fn organization_or_refusal(
    console: &Console,
    session: &Session,
    id: &str,
    action: &Action,
) -> Result<pb::Organization, Response> {
    get_organization(console, session, id)
        .await
        .map_err(|status| refused(session, id, action.verb, &status))
}

pub(super) fn done(id: &str, marker: &str) -> Response {
    Redirect::to(&format!("{}?done={marker}", organization_href(id))).into_response()
}

pub async fn rename(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !session.csrf_ok(&console, &form.csrf) {
        return csrf_refused(Some(&session));
    }
    if !form.confirmed() {
        let organization = match organization_or_refusal(&console, &session, &id, &RENAME).await {
            Ok(organization) => organization,
            Err(page) => return page,
        };
        let usage = usage_of(&console, &session, &id).await;
        let change = html! { p { "From " strong { (organization.name) } " to " strong { (form.name) } "." } };
        let bill =
            html! { p { "Renaming does not change the bill." } (accrued_bill(&usage, "Renaming")) };
        return confirmation(&session, &organization, &RENAME, &form, change, bill, true);
    }
    let api = &console.services.organization;
    let result = call(
        &console,
        &session,
        paths::UPDATE_ORGANIZATION,
        pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: id.clone(),
                name: form.name.clone(),
                etag: form.etag.clone(),
                ..Default::default()
            }),
            update_mask: field_mask("name"),
        },
        |request| api.update_organization(request),
    )
    .await;
    match result {
        Ok(_) => done(&id, "renamed"),
        Err(status) => refused(&session, &id, RENAME.verb, &status),
    }
}

pub async fn add_member(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(mut form): Form<ActionForm>,
) -> Response {
    if !session.csrf_ok(&console, &form.csrf) {
        return csrf_refused(Some(&session));
    }
    let api = &console.services.organization;
    let request = |validate_only: bool, request_id: String| pb::CreateMembershipRequest {
        organization_id: id.clone(),
        user_id: form.user_id.clone(),
        role: form.role.clone(),
        request_id,
        validate_only,
        ..Default::default()
    };
    if !form.confirmed() {
        let organization = match organization_or_refusal(&console, &session, &id, &ADD_MEMBER).await
        {
            Ok(organization) => organization,
            Err(page) => return page,
        };
        let preview = call(
            &console,
            &session,
            paths::CREATE_MEMBERSHIP,
            request(true, String::new()),
            |request| api.create_membership(request),
        )
        .await;
        // Sent again with the confirmation, so a form sent twice adds once.
        form.request_id = format!("console-{}", ulid::Ulid::new().to_string().to_lowercase());
        let change = html! {
            p { "Add " strong { code { (form.user_id) } } " with the role " strong { (form.role) } "." }
        };
        return match preview {
            Ok(answer) => {
                let bill = match &answer.billing_impact {
                    Some(billing_impact) => impact(billing_impact, "adding this member"),
                    None => html! { p { "The service gave no billing impact." } },
                };
                confirmation(
                    &session,
                    &organization,
                    &ADD_MEMBER,
                    &form,
                    change,
                    bill,
                    true,
                )
            }
            Err(status) => {
                let bill = html! {
                    p { "The preview was refused, so this member cannot be added:" }
                    (refusal(&status))
                };
                let mut page = confirmation(
                    &session,
                    &organization,
                    &ADD_MEMBER,
                    &form,
                    change,
                    bill,
                    false,
                );
                *page.status_mut() = http_status(&status);
                page
            }
        };
    }
    let result = call(
        &console,
        &session,
        paths::CREATE_MEMBERSHIP,
        request(false, form.request_id.clone()),
        |request| api.create_membership(request),
    )
    .await;
    match result {
        Ok(_) => done(&id, "member-added"),
        Err(status) => refused(&session, &id, ADD_MEMBER.verb, &status),
    }
}

pub async fn change_role(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !session.csrf_ok(&console, &form.csrf) {
        return csrf_refused(Some(&session));
    }
    if !form.confirmed() {
        let organization =
            match organization_or_refusal(&console, &session, &id, &CHANGE_ROLE).await {
                Ok(organization) => organization,
                Err(page) => return page,
            };
        let usage = usage_of(&console, &session, &id).await;
        let change = html! {
            p { "Give " strong { code { (form.user_id) } } " the role " strong { (form.role) } "." }
        };
        let bill = html! {
            p { "A role does not change the bill: billing counts active members, whatever their role." }
            (accrued_bill(&usage, "Changing a role"))
        };
        return confirmation(
            &session,
            &organization,
            &CHANGE_ROLE,
            &form,
            change,
            bill,
            true,
        );
    }
    let api = &console.services.organization;
    let result = call(
        &console,
        &session,
        paths::UPDATE_MEMBERSHIP,
        pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                organization_id: id.clone(),
                user_id: form.user_id.clone(),
                role: form.role.clone(),
                etag: form.etag.clone(),
                ..Default::default()
            }),
            update_mask: field_mask("role"),
        },
        |request| api.update_membership(request),
    )
    .await;
    match result {
        Ok(_) => done(&id, "role-changed"),
        Err(status) => refused(&session, &id, CHANGE_ROLE.verb, &status),
    }
}

pub async fn remove_member(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !session.csrf_ok(&console, &form.csrf) {
        return csrf_refused(Some(&session));
    }
    if !form.confirmed() {
        let organization =
            match organization_or_refusal(&console, &session, &id, &REMOVE_MEMBER).await {
                Ok(organization) => organization,
                Err(page) => return page,
            };
        let usage = usage_of(&console, &session, &id).await;
        let change = html! {
            p { "Remove " strong { code { (form.user_id) } } " from " (organization.name) "." }
        };
        let bill = accrued_bill(&usage, "Removing a member");
        return confirmation(
            &session,
            &organization,
            &REMOVE_MEMBER,
            &form,
            change,
            bill,
            true,
        );
    }
    let api = &console.services.organization;
    let result = call(
        &console,
        &session,
        paths::DELETE_MEMBERSHIP,
        pb::DeleteMembershipRequest {
            organization_id: id.clone(),
            user_id: form.user_id.clone(),
            etag: form.etag.clone(),
        },
        |request| api.delete_membership(request),
    )
    .await;
    match result {
        Ok(_) => done(&id, "member-removed"),
        Err(status) => refused(&session, &id, REMOVE_MEMBER.verb, &status),
    }
}

pub async fn delete(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !session.csrf_ok(&console, &form.csrf) {
        return csrf_refused(Some(&session));
    }
    if !form.confirmed() {
        let organization = match organization_or_refusal(&console, &session, &id, &DELETE).await {
            Ok(organization) => organization,
            Err(page) => return page,
        };
        let usage = usage_of(&console, &session, &id).await;
        let change = html! {
            p {
                "Delete " strong { (organization.name) } " with its " (organization.members_count)
                " memberships, its invitations, domains and membership requests. "
                "Its billing history stays. This cannot be undone."
            }
        };
        let bill = accrued_bill(&usage, "Deleting the organization");
        return confirmation(&session, &organization, &DELETE, &form, change, bill, true);
    }
    let api = &console.services.organization;
    let result = call(
        &console,
        &session,
        paths::DELETE_ORGANIZATION,
        pb::DeleteOrganizationRequest {
            organization_id: id.clone(),
            etag: form.etag.clone(),
        },
        |request| api.delete_organization(request),
    )
    .await;
    match result {
        Ok(_) => Redirect::to("/organizations?done=deleted").into_response(),
        Err(status) => refused(&session, &id, DELETE.verb, &status),
    }
}
