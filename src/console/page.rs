//! The frame every page shares (language, title, navigation, sign-out, skip
//! link), the style sheet, and how values are written.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::session::Session;
use crate::proto::v1 as pb;

/// The style sheet, served at `/console.css` (the CSP allows no inline style).
pub const STYLE: &str = include_str!("console.css");

/// Which part of the console a page belongs to, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Organizations,
    Billing,
    SignIn,
}

/// A whole page.
pub fn layout(title: &str, area: Area, session: Option<&Session>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · orgs console" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    p.brand { "orgs console" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/organizations" aria-current=[(area == Area::Organizations).then_some("page")] { "Organizations" } }
                                li { a href="/billing" aria-current=[(area == Area::Billing).then_some("page")] { "Billing" } }
                            }
                        }
                        form.sign-out method="post" action="/sign-out" {
                            span { "Signed in as " strong { (session.principal.sub) } }
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" { (main) }
            }
        }
    }
}

/// A page as a response with its HTTP status.
pub fn respond(status: StatusCode, page: Markup) -> Response {
    (status, page).into_response()
}

/// Characters escaped in a path segment or query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// `value` as a path segment or query value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// The console's address of an organization.
pub fn organization_href(id: &str) -> String {
    format!("/organizations/{}", encode(id))
}

/// Money as `USD 12.34`.
pub fn money(value: Option<&pb::Money>) -> String {
    match value {
        Some(money) => {
            let cents = money.nanos.unsigned_abs() / 10_000_000;
            let sign = if money.units < 0 || money.nanos < 0 {
                "-"
            } else {
                ""
            };
            format!(
                "{} {sign}{}.{cents:02}",
                money.currency_code,
                money.units.unsigned_abs()
            )
        }
        None => "—".to_string(),
    }
}

/// A timestamp as `2026-12-01 08:07 UTC`.
pub fn time(value: Option<&prost_types::Timestamp>) -> String {
    value
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".to_string())
}

/// A machine-readable timestamp for `<time datetime>`.
pub fn datetime(value: Option<&prost_types::Timestamp>) -> String {
    value
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// A timestamp as a `<time>` element.
pub fn time_element(value: Option<&prost_types::Timestamp>) -> Markup {
    html! { time datetime=(datetime(value)) { (time(value)) } }
}

/// A paragraph that confirms what was just done.
/// An organization's lifecycle state as a badge: Active, or Deactivated since when.
pub fn organization_state(organization: &pb::Organization) -> Markup {
    state_badge(
        organization.state == pb::OrganizationState::Deactivated as i32,
        organization.deactivate_time.as_ref(),
    )
}

/// A membership's lifecycle state as a badge: Active, or Deactivated since when.
pub fn membership_state(membership: &pb::Membership) -> Markup {
    state_badge(
        membership.state == pb::MembershipState::Deactivated as i32,
        membership.deactivate_time.as_ref(),
    )
}

fn state_badge(deactivated: bool, since: Option<&prost_types::Timestamp>) -> Markup {
    html! {
        @if deactivated {
            span.badge.deactivated { "Deactivated" } " since " (time_element(since))
        } @else {
            span.badge.active { "Active" }
        }
    }
}

pub fn notice(text: &str) -> Markup {
    html! { p.notice role="status" { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_paths_are_written_plainly() {
        let money_of = |units, nanos| pb::Money {
            currency_code: "USD".into(),
            units,
            nanos,
        };
        assert_eq!(money(Some(&money_of(12, 340_000_000))), "USD 12.34");
        assert_eq!(money(Some(&money_of(0, 0))), "USD 0.00");
        assert_eq!(money(None), "—");
        assert_eq!(
            organization_href("org_1/../x"),
            "/organizations/org_1%2F..%2Fx"
        );
    }
}
