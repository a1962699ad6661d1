//! The lifecycle actions (API §7.6): deactivate and reactivate an
//! organization, deactivate and reactivate one membership. Like the other
//! actions, each POST first shows a confirmation step — here with the
//! `billing_impact` of the real `validate_only` call and what this period's
//! bill keeps — and changes nothing until it is confirmed.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::response::Response;
use maud::{Markup, html};
use tonic::Status;

use super::Console;
use super::actions::{
    Action, ActionForm, confirmation, done, impact, organization_or_refusal, refused,
};
use super::errors::{http_status, refusal};
use super::rpc::{call, paths};
use super::session::{Session, csrf_refused};
use crate::proto::v1::{self as pb, organization_service_server::OrganizationService};

const DEACTIVATE_ORGANIZATION: Action = Action {
    path: "deactivate",
    verb: "Deactivate the organization",
};
const REACTIVATE_ORGANIZATION: Action = Action {
    path: "reactivate",
    verb: "Reactivate the organization",
};
const DEACTIVATE_MEMBERSHIP: Action = Action {
    path: "members/deactivate",
    verb: "Deactivate the membership",
};
const REACTIVATE_MEMBERSHIP: Action = Action {
    path: "members/reactivate",
    verb: "Reactivate the membership",
};

/// How one lifecycle action reads on its confirmation step.
struct Described {
    /// The change in words.
    change: Markup,
    /// The change as the subject of the billing impact's sentence.
    what: &'static str,
    /// What this period's bill keeps, whatever the impact says.
    keeps: Markup,
}

/// The preview-then-confirm shape of every lifecycle action: the CSRF check;
/// without confirmation, the `validate_only` call (`send(true)`) and the
/// confirmation step showing its `billing_impact`, or its refusal in words
/// with nothing to confirm; with confirmation, the real call (`send(false)`)
/// and the redirect with the `marker` done message, or its refusal in words.
async fn preview_then_confirm<F, Fut>(
    console: &Console,
    session: &Session,
    (id, form): (&str, &ActionForm),
    (action, marker): (&Action, &str),
    describe: impl FnOnce(&pb::Organization) -> Described,
    send: F,
) -> Response
where
    F: Fn(bool) -> Fut,
    Fut: Future<Output = Result<Option<pb::BillingImpact>, Status>>,
{
    if !session.csrf_ok(console, &form.csrf) {
        return csrf_refused(Some(session));
    }
    if form.confirmed() {
        return match send(false).await {
            Ok(_) => done(id, marker),
            Err(status) => refused(session, id, action.verb, &status),
        };
    }
    let organization = match organization_or_refusal(console, session, id, action).await {
        Ok(organization) => organization,
        Err(page) => return page,
    };
    let described = describe(&organization);
    let (bill, allowed, status) = match send(true).await {
        Ok(billing_impact) => {
            let bill = html! {
                @match &billing_impact {
                    Some(billing_impact) => (impact(billing_impact, described.what)),
                    None => p { "The service gave no billing impact." },
                }
                (described.keeps)
            };
            (bill, true, None)
        }
        Err(status) => {
            let bill = html! {
                p { "The preview was refused, so nothing can be confirmed:" }
                (refusal(&status))
            };
            (bill, false, Some(status))
        }
    };
    let mut page = confirmation(
        session,
        &organization,
        action,
        form,
        described.change,
        bill,
        allowed,
    );
    if let Some(status) = status {
        *page.status_mut() = http_status(&status);
    }
    page
}

/// What a deactivation leaves on this period's bill.
fn deactivation_keeps(what: &str) -> Markup {
    html! {
        p {
            (what) " does not lower this period's bill: billable status accrues within a "
            "period, so what was counted earlier this period stays counted."
        }
    }
}

pub async fn deactivate_organization(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let api = &console.services.organization;
    let send = |validate_only| {
        let request = pb::DeactivateOrganizationRequest {
            organization_id: id.clone(),
            etag: form.etag.clone(),
            validate_only,
        };
        let (console, session) = (&console, &session);
        async move {
            call(
                console,
                session,
                paths::DEACTIVATE_ORGANIZATION,
                request,
                |request| api.deactivate_organization(request),
            )
            .await
            .map(|answer| answer.billing_impact)
        }
    };
    let describe = |organization: &pb::Organization| Described {
        change: html! {
            p {
                "Deactivate " strong { (organization.name) } ": it keeps its "
                (organization.members_count) " memberships, roles and metadata and stays "
                "readable, but refuses changes until it is reactivated, grants its members "
                "no permission, and is not made billable while deactivated."
            }
        },
        what: "deactivating the organization",
        keeps: deactivation_keeps("Deactivating the organization"),
    };
    preview_then_confirm(
        &console,
        &session,
        (&id, &form),
        (&DEACTIVATE_ORGANIZATION, "deactivated"),
        describe,
        send,
    )
    .await
}

pub async fn reactivate_organization(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let api = &console.services.organization;
    let send = |validate_only| {
        let request = pb::ReactivateOrganizationRequest {
            organization_id: id.clone(),
            etag: form.etag.clone(),
            validate_only,
        };
        let (console, session) = (&console, &session);
        async move {
            call(
                console,
                session,
                paths::REACTIVATE_ORGANIZATION,
                request,
                |request| api.reactivate_organization(request),
            )
            .await
            .map(|answer| answer.billing_impact)
        }
    };
    let describe = |organization: &pb::Organization| Described {
        change: html! {
            p {
                "Reactivate " strong { (organization.name) } ": its members have their roles "
                "back, and those already active this period count toward its bill again."
            }
        },
        what: "reactivating the organization",
        keeps: html! {},
    };
    preview_then_confirm(
        &console,
        &session,
        (&id, &form),
        (&REACTIVATE_ORGANIZATION, "reactivated"),
        describe,
        send,
    )
    .await
}

pub async fn deactivate_membership(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let api = &console.services.organization;
    let send = |validate_only| {
        let request = pb::DeactivateMembershipRequest {
            organization_id: id.clone(),
            user_id: form.user_id.clone(),
            etag: form.etag.clone(),
            validate_only,
        };
        let (console, session) = (&console, &session);
        async move {
            call(
                console,
                session,
                paths::DEACTIVATE_MEMBERSHIP,
                request,
                |request| api.deactivate_membership(request),
            )
            .await
            .map(|answer| answer.billing_impact)
        }
    };
    let describe = |organization: &pb::Organization| Described {
        change: html! {
            p {
                "Deactivate the membership of " strong { code { (form.user_id) } } " in "
                (organization.name) ": it keeps its role but grants no permission and "
                "takes no place among the members until it is reactivated."
            }
        },
        what: "deactivating this membership",
        keeps: deactivation_keeps("Deactivating a membership"),
    };
    preview_then_confirm(
        &console,
        &session,
        (&id, &form),
        (&DEACTIVATE_MEMBERSHIP, "membership-deactivated"),
        describe,
        send,
    )
    .await
}

pub async fn reactivate_membership(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let api = &console.services.organization;
    let send = |validate_only| {
        let request = pb::ReactivateMembershipRequest {
            organization_id: id.clone(),
            user_id: form.user_id.clone(),
            etag: form.etag.clone(),
            validate_only,
        };
        let (console, session) = (&console, &session);
        async move {
            call(
                console,
                session,
                paths::REACTIVATE_MEMBERSHIP,
                request,
                |request| api.reactivate_membership(request),
            )
            .await
            .map(|answer| answer.billing_impact)
        }
    };
    let describe = |organization: &pb::Organization| Described {
        change: html! {
            p {
                "Reactivate the membership of " strong { code { (form.user_id) } } " in "
                (organization.name) ": it has its role back and takes a place among the "
                "members again; if the user is active this period it counts toward the bill."
            }
        },
        what: "reactivating this membership",
        keeps: html! {},
    };
    preview_then_confirm(
        &console,
        &session,
        (&id, &form),
        (&REACTIVATE_MEMBERSHIP, "membership-reactivated"),
        describe,
        send,
    )
    .await
}
