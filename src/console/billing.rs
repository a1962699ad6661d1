//! The billing page: this period's summary, the billable organizations over
//! the period as a chart, and the cost drivers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use tonic::{Code, Status};

use super::Console;
use super::chart;
use super::errors::{http_status, refusal};
use super::organization::get_organization;
use super::page::{Area, encode, layout, money, organization_href, respond, time_element};
use super::rpc::{call, paths};
use super::session::Session;
use crate::proto::v1::{self as pb, billing_service_server::BillingService};

/// Billable organizations read for the chart: at most this many pages of the
/// largest size.
const CHART_PAGES: usize = 20;
const CHART_PAGE_SIZE: i32 = 500;
/// Billable organizations listed by name on the page.
const LISTED: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct BillingQuery {
    #[serde(default)]
    period: String,
    #[serde(default)]
    min_organizations: Option<i32>,
}

/// Every billable organization of the period, up to the chart's bound, and
/// whether there were more.
async fn billable(
    console: &Console,
    session: &Session,
    period: &str,
) -> Result<(Vec<pb::OrganizationUsage>, bool), Status> {
    let api = &console.services.billing;
    let mut usages = Vec::new();
    let mut page_token = String::new();
    for _ in 0..CHART_PAGES {
        let page = call(
            console,
            session,
            paths::LIST_BILLABLE_ORGANIZATIONS,
            pb::ListBillableOrganizationsRequest {
                period: period.to_string(),
                page_size: CHART_PAGE_SIZE,
                page_token,
            },
            |request| api.list_billable_organizations(request),
        )
        .await?;
        usages.extend(page.usages);
        if page.next_page_token.is_empty() {
            return Ok((usages, false));
        }
        page_token = page.next_page_token;
    }
    Ok((usages, true))
}

fn day_of(timestamp: Option<&prost_types::Timestamp>) -> Option<NaiveDate> {
    timestamp
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, 0))
        .map(|t| t.date_naive())
}

pub async fn show(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(query): Query<BillingQuery>,
) -> Response {
    let api = &console.services.billing;
    let period = query.period.trim().to_string();
    let summary = call(
        &console,
        &session,
        paths::GET_BILLING_SUMMARY,
        pb::GetBillingSummaryRequest {
            period: period.clone(),
        },
        |request| api.get_billing_summary(request),
    )
    .await
    .and_then(|answer| {
        answer
            .summary
            .ok_or_else(|| Status::internal("no summary in the answer"))
    });
    let summary = match summary {
        Ok(summary) => summary,
        Err(status) => {
            let main = html! {
                h1 { "Billing" }
                (period_form(&period, query.min_organizations))
                (refusal(&status))
            };
            return respond(
                http_status(&status),
                layout("Billing", Area::Billing, Some(&session), main),
            );
        }
    };
    // The period the service resolved (the current one when none was asked).
    let period = summary.period.clone();
    let billable = billable(&console, &session, &period).await;
    let min_organizations = query.min_organizations.unwrap_or(5);
    let drivers = call(
        &console,
        &session,
        paths::LIST_COST_DRIVERS,
        pb::ListCostDriversRequest {
            period: period.clone(),
            min_organizations,
            page_size: 100,
            page_token: String::new(),
        },
        |request| api.list_cost_drivers(request),
    )
    .await;
    let names = match &billable {
        Ok((usages, _)) => names(&console, &session, usages).await,
        Err(_) => HashMap::new(),
    };
    let today = console.clock.now().date_naive();
    let main = html! {
        h1 { "Billing" }
        (period_form(&period, Some(min_organizations)))
        section aria-labelledby="summary-heading" {
            h2 id="summary-heading" { "Summary of " (period) }
            (summary_list(&summary))
        }
        section aria-labelledby="chart-heading" {
            h2 id="chart-heading" { "Billable organizations over the period" }
            (billable_section(&period, &billable, today))
        }
        section aria-labelledby="drivers-heading" {
            h2 id="drivers-heading" { "Cost drivers" }
            p {
                "Users who are active members of at least " (min_organizations)
                " billable organizations — for example one admin account added to every organization."
            }
            @match &drivers {
                Ok(page) => (drivers_table(page)),
                Err(status) => (refusal(status)),
            }
        }
        @if let Ok((usages, _)) = &billable {
            section aria-labelledby="billable-heading" {
                h2 id="billable-heading" { "Billable organizations, in the order they became billable" }
                (billable_list(usages, &names))
            }
        }
    };
    respond(
        StatusCode::OK,
        layout("Billing", Area::Billing, Some(&session), main),
    )
}

fn period_form(period: &str, min_organizations: Option<i32>) -> Markup {
    html! {
        form.inline method="get" action="/billing" {
            label for="period" { "Period (YYYY-MM)" }
            input id="period" type="text" name="period" value=(period) pattern="[0-9]{4}-[0-9]{2}" size="8";
            label for="min_organizations" { "Cost drivers from (organizations)" }
            input id="min_organizations" type="number" name="min_organizations" min="1" value=[min_organizations];
            button type="submit" { "Show" }
        }
    }
}

/// The summary. The budget and the projected amount (API §7.7) go after the
/// amount due when the service reports them.
fn summary_list(summary: &pb::BillingSummary) -> Markup {
    html! {
        dl.fields.summary {
            dt { "Organizations" } dd { (summary.total_organizations) }
            dt { "Monthly active users" } dd { (summary.monthly_active_users) }
            dt { "Billable organizations" } dd { (summary.billable_organizations) }
            dt { "Free of charge" } dd { (summary.free_organizations) }
            dt { "Charged" } dd { (summary.charged_organizations) }
            dt { "Amount due" } dd.amount { (money(summary.amount_due.as_ref())) }
            @if let Some(budget) = summary.budget.as_ref() {
                dt { "Budget" } dd.amount { (money(Some(budget))) }
            }
            dt { "Projected amount due" } dd.amount { (money(summary.projected_amount_due.as_ref())) }
        }
    }
}

fn billable_section(
    period: &str,
    billable: &Result<(Vec<pb::OrganizationUsage>, bool), Status>,
    today: NaiveDate,
) -> Markup {
    let (usages, more) = match billable {
        Ok(found) => found,
        Err(status) => return refusal(status),
    };
    let Some(days) = chart::days_of(period) else {
        return html! { p { "The period " (period) " has no days to draw." } };
    };
    // The current period is drawn up to today, on an axis of all its days.
    let period_days = days.len();
    let days: Vec<NaiveDate> = days.into_iter().filter(|day| *day <= today).collect();
    let since: Vec<NaiveDate> = usages
        .iter()
        .filter_map(|usage| day_of(usage.billable_since.as_ref()))
        .collect();
    let rows = chart::by_day(&days, &since);
    html! {
        @if *more {
            p.notice { "More organizations are billable than the chart reads; it shows the first " (usages.len()) "." }
        }
        figure {
            (chart::cumulative(period, &rows, period_days))
            figcaption { "Cumulative billable organizations by day. The table below has the same numbers." }
        }
        (chart::table(period, &rows))
    }
}

/// The names of the organizations listed, as far as the session may read
/// them (a token that may read billing need not read organizations).
async fn names(
    console: &Console,
    session: &Session,
    usages: &[pb::OrganizationUsage],
) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for usage in usages.iter().take(LISTED) {
        match get_organization(console, session, &usage.organization_id).await {
            Ok(organization) => {
                names.insert(organization.id, organization.name);
            }
            Err(status) if status.code() == Code::PermissionDenied => break,
            Err(_) => {}
        }
    }
    names
}

fn billable_list(usages: &[pb::OrganizationUsage], names: &HashMap<String, String>) -> Markup {
    html! {
        @if usages.is_empty() {
            p { "None yet." }
        } @else {
            ol.billable {
                @for usage in usages.iter().take(LISTED) {
                    li {
                        a href=(organization_href(&usage.organization_id)) {
                            @match names.get(&usage.organization_id) {
                                Some(name) => { (name) },
                                None => { code { (usage.organization_id) } },
                            }
                        }
                        " — billable since " (time_element(usage.billable_since.as_ref()))
                        ", " (usage.active_member_count) " active members"
                    }
                }
            }
            @if usages.len() > LISTED { p { "And " (usages.len() - LISTED) " more." } }
        }
    }
}

fn drivers_table(page: &pb::ListCostDriversResponse) -> Markup {
    html! {
        @if page.cost_drivers.is_empty() {
            p { "No user is an active member of that many billable organizations." }
        } @else {
            table {
                caption { (page.total_size) " cost driver" @if page.total_size != 1 { "s" } }
                thead {
                    tr {
                        th scope="col" { "User" }
                        th scope="col" { "Billable organizations" }
                        th scope="col" { "Sole cause in" }
                        th scope="col" { "Avoidable amount" }
                        th scope="col" { "Organizations" }
                    }
                }
                tbody {
                    @for driver in &page.cost_drivers {
                        tr {
                            th scope="row" { code { (driver.user_id) } }
                            td.number { (driver.billable_organization_count) }
                            td.number { (driver.sole_cause_count) }
                            td.number { (money(driver.avoidable_amount.as_ref())) }
                            td { a href={ "/organizations?user_id=" (encode(&driver.user_id)) } { "Organizations of " (driver.user_id) } }
                        }
                    }
                }
            }
        }
    }
}
