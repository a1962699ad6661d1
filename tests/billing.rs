//! BillingService through the generated client against a real server, on
//! SQLite or (with ORGS_TEST_DATABASE_URL) PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use orgs::proto::v1 as pb;
use pb::watch_billable_organizations_response::Event;
use tonic::Code;

const LIVENESS: Duration = Duration::from_secs(5);

fn at(year: i32, month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, 0, 0)
        .single()
        .expect("valid date")
}

fn ts(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    }
}

fn writer(app: &TestApp) -> Billing {
    app.billing(Some(token("svc-activity", "billing:write")))
}

fn reader(app: &TestApp) -> Billing {
    app.billing(Some(token("svc-finance", "billing:read")))
}

/// Spawns a server whose clock stands at `now`.
async fn spawn_at(now: DateTime<Utc>, configure: impl FnOnce(&mut orgs::ServeConfig)) -> TestApp {
    let app = TestApp::spawn_with(configure).await;
    app.clock.set(now);
    app
}

fn events(users: &[&str], time: Option<DateTime<Utc>>) -> Vec<pb::ActivityEvent> {
    users
        .iter()
        .map(|user| pb::ActivityEvent {
            user_id: user.to_string(),
            occur_time: time.map(ts),
        })
        .collect()
}

async fn record(
    app: &TestApp,
    users: &[&str],
    time: Option<DateTime<Utc>>,
) -> pb::RecordActivityResponse {
    writer(app)
        .record_activity(pb::RecordActivityRequest {
            events: events(users, time),
        })
        .await
        .expect("record activity")
        .into_inner()
}

/// The usage with every active member id, read page by page.
async fn usage(app: &TestApp, organization_id: &str, period: &str) -> pb::OrganizationUsage {
    let mut whole: Option<pb::OrganizationUsage> = None;
    let mut page_token = String::new();
    loop {
        let page = reader(app)
            .get_organization_usage(pb::GetOrganizationUsageRequest {
                organization_id: organization_id.into(),
                period: period.into(),
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("get usage")
            .into_inner();
        let usage = page.usage.expect("usage");
        match whole.as_mut() {
            None => whole = Some(usage),
            Some(whole) => whole
                .active_member_user_ids
                .extend(usage.active_member_user_ids),
        }
        if page.next_page_token.is_empty() {
            return whole.expect("a first page");
        }
        page_token = page.next_page_token;
    }
}

async fn summary(app: &TestApp, period: &str) -> pb::BillingSummary {
    reader(app)
        .get_billing_summary(pb::GetBillingSummaryRequest {
            period: period.into(),
        })
        .await
        .expect("get summary")
        .into_inner()
        .summary
        .expect("summary")
}

async fn billable_ids(app: &TestApp, period: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = reader(app)
            .list_billable_organizations(pb::ListBillableOrganizationsRequest {
                period: period.into(),
                page_size: 7,
                page_token: page_token.clone(),
            })
            .await
            .expect("list billable")
            .into_inner();
        ids.extend(page.usages.into_iter().map(|u| u.organization_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// An organization created for `created_by` with `members` added.
async fn org_with(app: &TestApp, name: &str, created_by: &str, members: &[&str]) -> String {
    let organization = create_org(app, name, Some(created_by)).await;
    for member in members {
        add_member(app, &organization.id, member, "org:member").await;
    }
    organization.id
}

fn cents(money: &Option<pb::Money>) -> i64 {
    let money = money.as_ref().expect("money");
    assert_eq!(money.currency_code, "USD");
    money.units * 100 + i64::from(money.nanos) / 10_000_000
}

type Watch = tonic::Streaming<pb::WatchBillableOrganizationsResponse>;

async fn watch(app: &TestApp, start_cursor: &str, send_initial_state: bool) -> Watch {
    reader(app)
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
            start_cursor: start_cursor.into(),
            send_initial_state,
        })
        .await
        .expect("open watch")
        .into_inner()
}

async fn next(stream: &mut Watch) -> pb::WatchBillableOrganizationsResponse {
    tokio::time::timeout(LIVENESS, stream.message())
        .await
        .expect("a message within the liveness bound")
        .expect("stream ok")
        .expect("stream open")
}

/// The next message that is not a checkpoint.
async fn next_event(stream: &mut Watch) -> pb::WatchBillableOrganizationsResponse {
    loop {
        let message = next(stream).await;
        if !matches!(message.event, Some(Event::Checkpoint(_))) {
            return message;
        }
    }
}

/// Every event up to the next checkpoint (which a catching-up stream sends
/// once idle), and the checkpoint's cursor.
async fn until_checkpoint(
    stream: &mut Watch,
) -> (Vec<pb::WatchBillableOrganizationsResponse>, String) {
    let mut received = Vec::new();
    loop {
        let message = next(stream).await;
        if matches!(message.event, Some(Event::Checkpoint(_))) {
            return (received, message.cursor);
        }
        received.push(message);
    }
}

fn became_billable(
    message: &pb::WatchBillableOrganizationsResponse,
) -> Option<&pb::OrganizationUsage> {
    match &message.event {
        Some(Event::OrganizationBecameBillable(usage)) => Some(usage),
        _ => None,
    }
}

/// A watch opened now, positioned at the current end of the log.
async fn watch_from_now(app: &TestApp) -> (Watch, String) {
    let mut stream = watch(app, "", true).await;
    let (initial, cursor) = until_checkpoint(&mut stream).await;
    assert!(initial.iter().all(|m| became_billable(m).is_some()));
    (stream, cursor)
}

fn quick_checkpoints(config: &mut orgs::ServeConfig) {
    config.watch_checkpoint_interval_secs = 1;
}

#[tokio::test]
async fn an_organization_becomes_billable_at_the_threshold() {
    let app = spawn_at(at(2026, 3, 10, 12), |_| {}).await;
    let org = org_with(&app, "Acme", "user_alice", &["user_bob", "user_carol"]).await;

    let first = record(&app, &["user_alice"], None).await;
    assert_eq!(
        (
            first.accepted_count,
            first.rejected_count,
            first.newly_active_count
        ),
        (1, 0, 1)
    );
    let one = usage(&app, &org, "").await;
    assert_eq!(one.period, "2026-03");
    assert_eq!(one.active_member_user_ids, vec!["user_alice"]);
    assert!(!one.billable && one.billable_since.is_none());

    record(&app, &["user_carol"], None).await;
    let two = usage(&app, &org, "2026-03").await;
    assert_eq!(two.active_member_count, 2);
    assert_eq!(
        two.active_member_user_ids,
        vec!["user_alice", "user_carol"],
        "ordered by user id"
    );
    assert!(two.billable);
    assert_eq!(
        two.billable_since.map(|t| t.seconds),
        Some(at(2026, 3, 10, 12).timestamp())
    );

    record(&app, &["user_bob"], None).await;
    let three = usage(&app, &org, "").await;
    assert_eq!(three.active_member_count, 3);
    assert_eq!(
        three.billable_since, two.billable_since,
        "the transition is recorded once"
    );

    let totals = summary(&app, "").await;
    assert_eq!(
        (
            totals.total_organizations,
            totals.monthly_active_users,
            totals.billable_organizations
        ),
        (1, 3, 1)
    );
    assert_eq!(
        (
            totals.free_organizations,
            totals.charged_organizations,
            cents(&totals.amount_due)
        ),
        (1, 0, 0)
    );
    assert_eq!(billable_ids(&app, "").await, vec![org]);
}

#[tokio::test]
async fn the_threshold_and_prices_are_configuration() {
    let app = spawn_at(at(2026, 3, 10, 12), |c| {
        c.billing.active_member_threshold = 1;
        c.billing.free_organizations = 1;
        c.billing.price_per_organization = 250;
    })
    .await;
    let a = org_with(&app, "A", "user_a", &[]).await;
    let b = org_with(&app, "B", "user_b", &[]).await;
    record(&app, &["user_a", "user_b"], None).await;
    assert!(usage(&app, &a, "").await.billable);
    assert!(usage(&app, &b, "").await.billable);
    let totals = summary(&app, "").await;
    assert_eq!(
        (
            totals.billable_organizations,
            totals.free_organizations,
            totals.charged_organizations
        ),
        (2, 1, 1)
    );
    assert_eq!(cents(&totals.amount_due), 250);
}

#[tokio::test]
async fn repeats_are_cheap_and_change_nothing() {
    let app = spawn_at(at(2026, 3, 10, 12), |_| {}).await;
    let org = org_with(&app, "Acme", "user_alice", &["user_bob"]).await;
    let first = record(&app, &["user_alice", "user_alice", "user_bob"], None).await;
    assert_eq!((first.accepted_count, first.newly_active_count), (3, 2));
    let again = record(&app, &["user_alice", "user_bob"], None).await;
    assert_eq!((again.accepted_count, again.newly_active_count), (2, 0));
    let before = summary(&app, "").await;

    // Hold the database's write lock: a repeat must not need it, neither on
    // the replica that knows the users nor on one that has to look them up.
    let replica = TestApp::spawn_on(&app.database_url, |_| {}).await;
    replica.clock.set(at(2026, 3, 10, 12));
    let db = orgs::store::Db::connect(&app.database_url, 1)
        .await
        .expect("connect");
    let lock = db.begin().await.expect("begin");
    if backend_url().is_some() {
        use sea_orm::ConnectionTrait;
        lock.execute_unprepared(
            "LOCK TABLE billing_user_activity, billing_periods, events IN EXCLUSIVE MODE",
        )
        .await
        .expect("lock tables");
    }
    for server in [&app, &replica] {
        let repeat =
            tokio::time::timeout(LIVENESS, record(server, &["user_bob", "user_alice"], None))
                .await
                .expect("a repeat completes while writes are locked out");
        assert_eq!((repeat.accepted_count, repeat.newly_active_count), (2, 0));
    }
    lock.rollback().await.expect("release");

    assert_eq!(summary(&app, "").await, before);
    assert_eq!(usage(&app, &org, "").await.active_member_count, 2);
}

#[tokio::test]
async fn activity_outside_the_window_is_rejected_and_counted() {
    let now = at(2026, 3, 10, 12);
    let app = spawn_at(now, |_| {}).await;
    let response = writer(&app)
        .record_activity(pb::RecordActivityRequest {
            events: vec![
                pb::ActivityEvent {
                    user_id: "user_now".into(),
                    occur_time: None,
                },
                pb::ActivityEvent {
                    user_id: "user_late".into(),
                    occur_time: Some(ts(at(2026, 2, 1, 0))),
                },
                pb::ActivityEvent {
                    user_id: "user_old".into(),
                    occur_time: Some(ts(at(2026, 1, 31, 23))),
                },
                pb::ActivityEvent {
                    user_id: "user_soon".into(),
                    occur_time: Some(ts(now + chrono::Duration::minutes(4))),
                },
                pb::ActivityEvent {
                    user_id: "user_future".into(),
                    occur_time: Some(ts(now + chrono::Duration::minutes(6))),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            response.accepted_count,
            response.rejected_count,
            response.newly_active_count
        ),
        (3, 2, 3)
    );
    let rejected: Vec<i32> = response.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, vec![2, 4]);
    assert!(
        response.rejected[0]
            .message
            .contains("before the previous period")
    );
    assert!(response.rejected[1].message.contains("5 minutes ahead"));

    // Just before midnight at the end of the month, 5 minutes ahead is the next
    // period: rejected too.
    app.clock
        .set(at(2026, 3, 31, 23) + chrono::Duration::minutes(58));
    let next_period = record(&app, &["user_x"], Some(at(2026, 4, 1, 0))).await;
    assert_eq!(
        (next_period.accepted_count, next_period.rejected_count),
        (0, 1)
    );
    assert!(next_period.rejected[0].message.contains("next period"));

    let client = writer(&app);
    assert_invalid(
        client
            .clone()
            .record_activity(pb::RecordActivityRequest { events: vec![] })
            .await,
        "events",
    );
    let too_many = events(
        &std::iter::repeat_n("user_a", 10_001).collect::<Vec<_>>(),
        None,
    );
    assert_invalid(
        client
            .clone()
            .record_activity(pb::RecordActivityRequest { events: too_many })
            .await,
        "events",
    );
    let bad = vec![
        pb::ActivityEvent {
            user_id: "user_ok".into(),
            occur_time: None,
        },
        pb::ActivityEvent {
            user_id: "has space".into(),
            occur_time: None,
        },
        pb::ActivityEvent {
            user_id: "user_ok".into(),
            occur_time: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: -1,
            }),
        },
    ];
    let status = client
        .clone()
        .record_activity(pb::RecordActivityRequest { events: bad })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        bad_fields(&status),
        vec!["events[1].user_id", "events[2].occur_time"]
    );
    let full = events(
        &std::iter::repeat_n("user_a", 10_000).collect::<Vec<_>>(),
        None,
    );
    let accepted = client
        .clone()
        .record_activity(pb::RecordActivityRequest { events: full })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.accepted_count, 10_000);
}

#[tokio::test]
async fn late_events_count_in_their_own_period_for_current_memberships() {
    let app = spawn_at(at(2026, 4, 2, 9), |_| {}).await;
    let org = org_with(&app, "Acme", "user_alice", &["user_bob"]).await;
    let late = record(&app, &["user_alice", "user_bob"], Some(at(2026, 3, 30, 18))).await;
    assert_eq!(late.newly_active_count, 2);
    let march = usage(&app, &org, "2026-03").await;
    assert_eq!(march.active_member_user_ids, vec!["user_alice", "user_bob"]);
    assert!(march.billable);
    assert_eq!(
        usage(&app, &org, "2026-04").await.active_member_count,
        0,
        "not active in April"
    );
    assert_eq!(summary(&app, "2026-03").await.monthly_active_users, 2);
    assert_eq!(summary(&app, "2026-04").await.monthly_active_users, 0);

    // A membership added now does not reach back into March.
    let other = org_with(&app, "Other", "user_carol", &["user_alice"]).await;
    assert_eq!(usage(&app, &other, "2026-03").await.active_member_count, 0);
    // A late event for a user new to March counts for the memberships it has now.
    record(&app, &["user_carol"], Some(at(2026, 3, 31, 23))).await;
    assert_eq!(
        usage(&app, &other, "2026-03").await.active_member_user_ids,
        vec!["user_carol"]
    );
}

#[tokio::test]
async fn a_member_added_after_its_activity_counts_and_previews_the_cost() {
    let app = spawn_at(at(2026, 3, 10, 12), |c| c.billing.free_organizations = 1).await;
    record(
        &app,
        &["user_alice", "user_bob", "user_carol", "user_dan"],
        None,
    )
    .await;
    let first = org_with(&app, "First", "user_alice", &[]).await;
    let second = org_with(&app, "Second", "user_carol", &[]).await;

    let add = |organization: &str, user: &str, validate_only: bool| {
        let request = pb::CreateMembershipRequest {
            organization_id: organization.into(),
            user_id: user.into(),
            validate_only,
            ..Default::default()
        };
        let client = app.admin();
        async move {
            client
                .clone()
                .create_membership(request)
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Within the free allowance: billable, no charge.
    let response = add(&first, "user_bob", false).await;
    let impact = response.billing_impact.expect("impact");
    assert_eq!(
        (
            impact.active_member_count_before,
            impact.active_member_count_after
        ),
        (1, 2)
    );
    assert_eq!(
        (impact.billable_before, impact.billable_after),
        (false, true)
    );
    assert_eq!(cents(&impact.marginal_amount), 0);
    assert_eq!(impact.period, "2026-03");

    // Past the allowance: the preview shows the price and writes nothing.
    let preview = add(&second, "user_dan", true).await;
    let impact = preview.billing_impact.expect("impact");
    assert_eq!(
        (impact.billable_before, impact.billable_after),
        (false, true)
    );
    assert_eq!(cents(&impact.marginal_amount), 100);
    assert_eq!(usage(&app, &second, "").await.active_member_count, 1);
    assert_eq!(summary(&app, "").await.billable_organizations, 1);
    let members = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: second.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.total_size, 1, "validate_only writes nothing");

    let real = add(&second, "user_dan", false).await;
    assert_eq!(
        cents(&real.billing_impact.expect("impact").marginal_amount),
        100
    );
    assert_eq!(cents(&summary(&app, "").await.amount_due), 100);

    // A member who is not active changes nothing.
    let idle = add(&second, "user_idle", false)
        .await
        .billing_impact
        .expect("impact");
    assert_eq!(
        (
            idle.active_member_count_before,
            idle.active_member_count_after
        ),
        (2, 2)
    );
    assert!(idle.billable_before && idle.billable_after);
    assert_eq!(cents(&idle.marginal_amount), 0);
}

/// A user's first activity recorded while the user joins an organization
/// (a new member, or the creator of a new organization) counts the user for
/// it exactly once, whichever of the two commits first.
#[tokio::test]
async fn activity_racing_a_member_joining_counts_the_member_once() {
    const ROUNDS: usize = 12;
    let app = spawn_at(at(2026, 3, 10, 12), |_| {}).await;
    let joined = create_org(&app, "Joined", None).await.id;
    let mut created = Vec::new();
    for round in 0..ROUNDS {
        let user = format!("user_racer{round}");
        let activity = {
            let (mut client, user) = (writer(&app), user.clone());
            tokio::spawn(async move {
                client
                    .record_activity(pb::RecordActivityRequest {
                        events: events(&[&user], None),
                    })
                    .await
                    .expect("record activity")
                    .into_inner()
            })
        };
        let mut admin = app.admin();
        let joining = if round % 2 == 0 {
            let request = pb::CreateMembershipRequest {
                organization_id: joined.clone(),
                user_id: user.clone(),
                ..Default::default()
            };
            tokio::spawn(async move {
                let added = admin.create_membership(request).await;
                added.expect("create membership").into_inner();
                None
            })
        } else {
            let request = pb::CreateOrganizationRequest {
                name: format!("Created {round}"),
                created_by: user.clone(),
                ..Default::default()
            };
            tokio::spawn(async move {
                let response = admin.create_organization(request).await;
                let response = response.expect("create organization").into_inner();
                Some(response.organization.expect("organization").id)
            })
        };
        let recorded = activity.await.expect("activity task");
        assert_eq!(recorded.newly_active_count, 1, "round {round}");
        if let Some(id) = joining.await.expect("joining task") {
            created.push((id, user));
        }
    }
    let usage_of_joined = usage(&app, &joined, "2026-03").await;
    assert_eq!(usage_of_joined.active_member_count, (ROUNDS / 2) as i32);
    assert_eq!(usage_of_joined.active_member_user_ids.len(), ROUNDS / 2);
    for (id, user) in created {
        let usage = usage(&app, &id, "2026-03").await;
        assert_eq!(usage.active_member_count, 1, "{user}");
        assert_eq!(usage.active_member_user_ids, vec![user]);
    }
}

#[tokio::test]
async fn accepting_an_invitation_previews_and_moves_the_bill() {
    let app = spawn_at(at(2026, 3, 10, 12), |c| c.billing.free_organizations = 0).await;
    let org = org_with(&app, "Acme", "user_alice", &[]).await;
    record(&app, &["user_alice", "user_bob"], None).await;
    let invitation = app
        .invitations(Some(token("svc-onboarding", "orgs:admin")))
        .create_invitation(pb::CreateInvitationRequest {
            organization_id: org.clone(),
            email_address: "bob@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let accept = |validate_only| pb::AcceptInvitationRequest {
        token: invitation.token.clone(),
        user_id: "user_bob".into(),
        email_address: "bob@example.com".into(),
        validate_only,
        ..Default::default()
    };
    let invitations = app.invitations(Some(token("svc-onboarding", "orgs:admin")));
    let preview = invitations
        .clone()
        .accept_invitation(accept(true))
        .await
        .unwrap()
        .into_inner();
    let impact = preview.billing_impact.expect("impact");
    assert_eq!(
        (
            impact.active_member_count_before,
            impact.active_member_count_after
        ),
        (1, 2)
    );
    assert_eq!(
        (impact.billable_before, impact.billable_after),
        (false, true)
    );
    assert_eq!(cents(&impact.marginal_amount), 100);
    assert_eq!(
        summary(&app, "").await.billable_organizations,
        0,
        "validate_only writes nothing"
    );

    let accepted = invitations
        .clone()
        .accept_invitation(accept(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.billing_impact, Some(impact));
    let current = usage(&app, &org, "").await;
    assert_eq!((current.active_member_count, current.billable), (2, true));
}

#[tokio::test]
async fn create_organization_previews_its_billing_impact() {
    let app = spawn_at(at(2026, 3, 10, 12), |c| {
        c.billing.active_member_threshold = 1;
        c.billing.free_organizations = 0;
    })
    .await;
    record(&app, &["user_alice"], None).await;
    let request = |validate_only| pb::CreateOrganizationRequest {
        name: "Acme".into(),
        created_by: "user_alice".into(),
        validate_only,
        ..Default::default()
    };
    let preview = app
        .admin()
        .create_organization(request(true))
        .await
        .unwrap()
        .into_inner();
    let impact = preview.billing_impact.expect("impact");
    assert_eq!(
        (impact.active_member_count_after, impact.billable_after),
        (1, true)
    );
    assert_eq!(cents(&impact.marginal_amount), 100);
    let totals = summary(&app, "").await;
    assert_eq!(
        (totals.total_organizations, totals.billable_organizations),
        (0, 0),
        "nothing written"
    );

    let created = app
        .admin()
        .create_organization(request(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cents(&created.billing_impact.expect("impact").marginal_amount),
        100
    );
    let totals = summary(&app, "").await;
    assert_eq!(
        (
            totals.total_organizations,
            totals.billable_organizations,
            cents(&totals.amount_due)
        ),
        (1, 1, 100)
    );

    // Without created_by nobody is added: no impact.
    let empty = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Empty".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billing_impact
        .expect("impact");
    assert_eq!(
        (empty.active_member_count_after, empty.billable_after),
        (0, false)
    );
}

#[tokio::test]
async fn platform_principals_never_count() {
    let app = spawn_at(at(2026, 3, 10, 12), |c| {
        c.billing.active_member_threshold = 1
    })
    .await;
    // The admin creates an organization for nobody and acts on it: never a member.
    let org = create_org(&app, "Managed", None).await;
    record(&app, &["svc-onboarding"], None).await;
    let current = usage(&app, &org.id, "").await;
    assert_eq!((current.active_member_count, current.billable), (0, false));
    assert_eq!(summary(&app, "").await.billable_organizations, 0);
}

#[tokio::test]
async fn deleted_organizations_keep_their_history_and_leave_the_count() {
    let app = spawn_at(at(2026, 3, 10, 12), |_| {}).await;
    let kept = org_with(&app, "Kept", "user_a", &[]).await;
    let gone = org_with(&app, "Gone", "user_b", &["user_c"]).await;
    record(&app, &["user_b", "user_c"], None).await;
    assert_eq!(summary(&app, "").await.total_organizations, 2);
    app.admin()
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: gone.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let totals = summary(&app, "").await;
    assert_eq!(
        (totals.total_organizations, totals.billable_organizations),
        (1, 1)
    );
    let history = usage(&app, &gone, "").await;
    assert_eq!((history.active_member_count, history.billable), (2, true));
    assert_eq!(usage(&app, &kept, "").await.active_member_count, 0);
    let unknown = reader(&app)
        .get_organization_usage(pb::GetOrganizationUsageRequest {
            organization_id: "org_01JZZZZZZZZZZZZZZZZZZZZZZZ".into(),
            period: String::new(),
            ..Default::default()
        })
        .await;
    assert_status(unknown, Code::NotFound, "ORGANIZATION_NOT_FOUND");
    // An organization deleted before anyone in it was active answers too:
    // every organization that ever existed has a usage.
    let idle = org_with(&app, "Idle", "user_idle", &[]).await;
    app.admin()
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: idle.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let never = usage(&app, &idle, "").await;
    assert_eq!((never.active_member_count, never.billable), (0, false));
}

#[tokio::test]
async fn a_new_period_starts_from_zero() {
    let app = spawn_at(at(2026, 3, 28, 12), |_| {}).await;
    let org = org_with(&app, "Acme", "user_alice", &["user_bob"]).await;
    record(&app, &["user_alice", "user_bob"], None).await;
    assert!(usage(&app, &org, "").await.billable);

    app.clock.set(at(2026, 4, 1, 0));
    let april = usage(&app, &org, "").await;
    assert_eq!(
        (
            april.period.as_str(),
            april.active_member_count,
            april.billable
        ),
        ("2026-04", 0, false)
    );
    let totals = summary(&app, "").await;
    assert_eq!(
        (
            totals.period.as_str(),
            totals.monthly_active_users,
            totals.billable_organizations
        ),
        ("2026-04", 0, 0)
    );
    assert_eq!(totals.total_organizations, 1);
    record(&app, &["user_alice"], None).await;
    assert_eq!(usage(&app, &org, "").await.active_member_count, 1);
    let march = usage(&app, &org, "2026-03").await;
    assert_eq!(
        (march.active_member_count, march.billable),
        (2, true),
        "history is kept"
    );

    assert_invalid(
        reader(&app)
            .get_billing_summary(pb::GetBillingSummaryRequest {
                period: "2026-13".into(),
            })
            .await,
        "period",
    );
}

#[tokio::test]
async fn billable_organizations_are_listed_in_the_order_they_became_billable() {
    let app = spawn_at(at(2026, 3, 10, 12), |_| {}).await;
    let mut expected = Vec::new();
    for i in 0..5 {
        let owner = format!("user_owner{i}");
        let member = format!("user_member{i}");
        let org = org_with(&app, &format!("Org {i}"), &owner, &[&member]).await;
        record(&app, &[&owner], None).await;
        expected.push((org, member));
    }
    // They become billable in reverse order of creation.
    for (_, member) in expected.iter().rev() {
        record(&app, &[member], None).await;
    }
    let order: Vec<String> = expected.iter().rev().map(|(org, _)| org.clone()).collect();
    let page = reader(&app)
        .list_billable_organizations(pb::ListBillableOrganizationsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.total_size, 5);
    assert_eq!(page.usages.len(), 2);
    assert_eq!(page.usages[0].active_member_count, 2);
    assert!(
        page.usages
            .iter()
            .all(|u| u.billable && u.active_member_user_ids.len() == 2)
    );
    assert_eq!(billable_ids(&app, "").await, order);

    let mut tampered = page.next_page_token.clone();
    tampered.insert(2, 'A');
    let bad = reader(&app)
        .list_billable_organizations(pb::ListBillableOrganizationsRequest {
            page_token: tampered,
            ..Default::default()
        })
        .await;
    assert_status(bad, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    let foreign = reader(&app)
        .list_billable_organizations(pb::ListBillableOrganizationsRequest {
            period: "2026-02".into(),
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await;
    assert_status(foreign, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
}

#[tokio::test]
async fn cost_drivers_find_the_admin_in_every_organization() {
    // 6 organizations billable; 2 free, 4 charged at $1.00.
    let app = spawn_at(at(2026, 3, 10, 12), |c| c.billing.free_organizations = 2).await;
    let mut organizations = Vec::new();
    for i in 0..6 {
        let customer = format!("user_customer{i}");
        let members: Vec<&str> = if i == 0 {
            vec!["user_admin", "user_extra"]
        } else {
            vec!["user_admin"]
        };
        organizations.push(org_with(&app, &format!("Org {i}"), &customer, &members).await);
    }
    let mut everyone: Vec<String> = (0..6).map(|i| format!("user_customer{i}")).collect();
    everyone.push("user_admin".into());
    everyone.push("user_extra".into());
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    record(&app, &everyone, None).await;
    assert_eq!(summary(&app, "").await.billable_organizations, 6);

    let drivers = reader(&app)
        .list_cost_drivers(pb::ListCostDriversRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drivers.total_size, 1);
    let admin = &drivers.cost_drivers[0];
    assert_eq!(admin.user_id, "user_admin");
    assert_eq!(admin.billable_organization_count, 6);
    // Org 0 has 3 active members: billable without the admin too.
    assert_eq!(admin.sole_cause_count, 5);
    // 5 organizations would drop out, but only 4 are charged.
    assert_eq!(cents(&admin.avoidable_amount), 400);

    let everyone_with_one = reader(&app)
        .list_cost_drivers(pb::ListCostDriversRequest {
            min_organizations: 1,
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(everyone_with_one.total_size, 8);
    assert_eq!(everyone_with_one.cost_drivers[0].user_id, "user_admin");
    let mut seen: Vec<String> = everyone_with_one
        .cost_drivers
        .iter()
        .map(|d| d.user_id.clone())
        .collect();
    let mut token = everyone_with_one.next_page_token;
    while !token.is_empty() {
        let page = reader(&app)
            .list_cost_drivers(pb::ListCostDriversRequest {
                min_organizations: 1,
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.cost_drivers.iter().map(|d| d.user_id.clone()));
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        8,
        "no user twice across pages"
    );
    let customer = reader(&app)
        .list_cost_drivers(pb::ListCostDriversRequest {
            min_organizations: 1,
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cost_drivers
        .into_iter()
        .find(|d| d.user_id == "user_customer1")
        .expect("customer");
    assert_eq!(
        (
            customer.billable_organization_count,
            customer.sole_cause_count,
            cents(&customer.avoidable_amount)
        ),
        (1, 1, 100)
    );
    assert_invalid(
        reader(&app)
            .list_cost_drivers(pb::ListCostDriversRequest {
                min_organizations: -1,
                ..Default::default()
            })
            .await,
        "min_organizations",
    );
}

#[tokio::test]
async fn who_may_call_billing() {
    let app = spawn_at(at(2026, 3, 10, 12), |_| {}).await;
    let org = org_with(&app, "Acme", "user_alice", &["user_bob"]).await;
    let denied = app
        .billing(Some(token("user_alice", "")))
        .record_activity(pb::RecordActivityRequest {
            events: events(&["user_alice"], None),
        })
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let reader_cannot_write = reader(&app)
        .record_activity(pb::RecordActivityRequest {
            events: events(&["user_alice"], None),
        })
        .await;
    assert_eq!(
        reader_cannot_write.unwrap_err().code(),
        Code::PermissionDenied
    );
    let summary_denied = writer(&app)
        .get_billing_summary(pb::GetBillingSummaryRequest::default())
        .await;
    assert_eq!(summary_denied.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        app.billing(None)
            .get_billing_summary(pb::GetBillingSummaryRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // An organization admin reads its own usage; a plain member may not; an
    // outsider learns nothing.
    let request = || pb::GetOrganizationUsageRequest {
        organization_id: org.clone(),
        period: String::new(),
        ..Default::default()
    };
    app.billing(Some(token("user_alice", "")))
        .get_organization_usage(request())
        .await
        .expect("admin reads usage");
    let member = app
        .billing(Some(token("user_bob", "")))
        .get_organization_usage(request())
        .await;
    assert_eq!(member.unwrap_err().code(), Code::PermissionDenied);
    let outsider = app
        .billing(Some(token("user_mallory", "")))
        .get_organization_usage(request())
        .await;
    assert_eq!(outsider.unwrap_err().code(), Code::NotFound);
    let admin = app.billing(Some(token("svc-onboarding", "orgs:admin")));
    admin
        .clone()
        .get_billing_summary(pb::GetBillingSummaryRequest::default())
        .await
        .expect("orgs:admin reads");
    admin
        .clone()
        .record_activity(pb::RecordActivityRequest {
            events: events(&["user_alice"], None),
        })
        .await
        .expect("orgs:admin writes");
}

#[tokio::test]
async fn the_watch_delivers_transitions_in_order_and_resumes_from_a_cursor() {
    let app = spawn_at(at(2026, 3, 10, 12), quick_checkpoints).await;
    let a = org_with(&app, "A", "user_a1", &["user_a2"]).await;
    let b = org_with(&app, "B", "user_b1", &["user_b2"]).await;
    let c = org_with(&app, "C", "user_c1", &["user_c2"]).await;
    let (mut stream, start) = watch_from_now(&app).await;

    record(&app, &["user_a1", "user_a2"], None).await;
    let first = next_event(&mut stream).await;
    // The first activity of the period starts it.
    assert_eq!(first.event, Some(Event::PeriodStarted("2026-03".into())));
    let billable_a = next_event(&mut stream).await;
    let usage_a = became_billable(&billable_a).expect("billable");
    assert_eq!(
        (
            usage_a.organization_id.as_str(),
            usage_a.active_member_count
        ),
        (a.as_str(), 2)
    );
    assert_eq!(usage_a.active_member_user_ids, vec!["user_a1", "user_a2"]);
    let totals = billable_a.summary.as_ref().expect("summary");
    assert_eq!(
        (
            totals.billable_organizations,
            totals.monthly_active_users,
            totals.total_organizations
        ),
        (1, 2, 3)
    );

    record(&app, &["user_b1", "user_b2"], None).await;
    let billable_b = next_event(&mut stream).await;
    assert_eq!(
        became_billable(&billable_b)
            .expect("billable")
            .organization_id,
        b
    );
    drop(stream);

    // While nobody watches, C becomes billable.
    record(&app, &["user_c1", "user_c2"], None).await;

    // Resuming after A delivers B and C, once each, in order.
    let mut resumed = watch(&app, &billable_a.cursor, false).await;
    let (replayed, _) = until_checkpoint(&mut resumed).await;
    let ids: Vec<&str> = replayed
        .iter()
        .filter_map(became_billable)
        .map(|u| u.organization_id.as_str())
        .collect();
    assert_eq!(ids, vec![b.as_str(), c.as_str()]);
    assert_eq!(replayed.len(), 2);

    // From the start position: everything, once.
    let mut from_start = watch(&app, &start, false).await;
    let (all, _) = until_checkpoint(&mut from_start).await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].event, Some(Event::PeriodStarted("2026-03".into())));

    // A cursor from a later message resumes after it: nothing is repeated.
    let mut tail = watch(&app, &all[3].cursor, false).await;
    let (nothing, _) = until_checkpoint(&mut tail).await;
    assert!(nothing.is_empty());

    let bad = reader(&app)
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
            start_cursor: "not-a-cursor".into(),
            send_initial_state: false,
        })
        .await;
    assert_invalid(bad, "start_cursor");
}

#[tokio::test]
async fn the_initial_state_is_followed_by_live_events_without_gap_or_duplicate() {
    let app = spawn_at(at(2026, 3, 10, 12), quick_checkpoints).await;
    let mut organizations = Vec::new();
    for i in 0..20 {
        organizations.push(
            org_with(
                &app,
                &format!("Org {i}"),
                &format!("user_{i}_a"),
                &[&format!("user_{i}_b")],
            )
            .await,
        );
    }
    // The first 10 are billable before the watch opens.
    for i in 0..10 {
        record(
            &app,
            &[&format!("user_{i}_a"), &format!("user_{i}_b")],
            None,
        )
        .await;
    }
    // The other 10 become billable while watches open, concurrently.
    let writer_app = &app;
    let writes = async {
        for i in 10..20 {
            record(
                writer_app,
                &[&format!("user_{i}_a"), &format!("user_{i}_b")],
                None,
            )
            .await;
        }
    };
    let opens = async {
        let mut streams = Vec::new();
        for _ in 0..5 {
            streams.push(watch(writer_app, "", true).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        streams
    };
    let ((), streams) = tokio::join!(writes, opens);
    for mut stream in streams {
        let mut seen: Vec<String> = Vec::new();
        let mut checkpoints = 0;
        while seen.len() < 20 || checkpoints == 0 {
            let message = next(&mut stream).await;
            match &message.event {
                Some(Event::OrganizationBecameBillable(usage)) => {
                    seen.push(usage.organization_id.clone())
                }
                Some(Event::Checkpoint(_)) => checkpoints += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(checkpoints >= 1, "the initial state ends with a checkpoint");
        let distinct: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), 20, "every organization exactly once");
        // Nothing more arrives but checkpoints.
        let after = next(&mut stream).await;
        assert!(
            matches!(after.event, Some(Event::Checkpoint(_))),
            "unexpected {after:?}"
        );
    }
}

#[tokio::test]
async fn a_watch_on_one_replica_sees_transitions_made_through_another() {
    let app = spawn_at(at(2026, 3, 10, 12), quick_checkpoints).await;
    let other = TestApp::spawn_on(&app.database_url, quick_checkpoints).await;
    other.clock.set(at(2026, 3, 10, 12));
    let org = org_with(&app, "Acme", "user_alice", &["user_bob"]).await;
    let (mut stream, _) = watch_from_now(&other).await;
    record(&app, &["user_alice", "user_bob"], None).await;
    assert_eq!(
        next_event(&mut stream).await.event,
        Some(Event::PeriodStarted("2026-03".into()))
    );
    let delivered = next_event(&mut stream).await;
    assert_eq!(
        became_billable(&delivered)
            .expect("billable")
            .organization_id,
        org
    );

    // A cursor from one replica resumes on the other.
    let org2 = org_with(&other, "Beta", "user_carol", &["user_dan"]).await;
    record(&other, &["user_carol", "user_dan"], None).await;
    let mut resumed = watch(&app, &delivered.cursor, false).await;
    let (replayed, _) = until_checkpoint(&mut resumed).await;
    let ids: Vec<&str> = replayed
        .iter()
        .filter_map(became_billable)
        .map(|u| u.organization_id.as_str())
        .collect();
    assert_eq!(ids, vec![org2.as_str()]);
}

#[tokio::test]
async fn replicas_racing_record_each_transition_and_period_start_once() {
    let app = spawn_at(at(2026, 3, 10, 12), quick_checkpoints).await;
    let other = TestApp::spawn_on(&app.database_url, quick_checkpoints).await;
    other.clock.set(at(2026, 3, 10, 12));
    let mut organizations = Vec::new();
    for i in 0..8 {
        let members: Vec<String> = (0..6).map(|m| format!("user_{i}_{m}")).collect();
        let member_refs: Vec<&str> = members[1..].iter().map(String::as_str).collect();
        organizations.push(org_with(&app, &format!("Org {i}"), &members[0], &member_refs).await);
    }
    let (_, start) = watch_from_now(&app).await;
    // Every member of every organization, reported in parallel through both
    // replicas, twice.
    let mut calls = Vec::new();
    for _round in 0..2 {
        for m in 0..6 {
            for server in [&app, &other] {
                let users: Vec<String> = (0..8).map(|i| format!("user_{i}_{m}")).collect();
                let client = writer(server);
                calls.push(tokio::spawn(async move {
                    let events = users
                        .iter()
                        .map(|u| pb::ActivityEvent {
                            user_id: u.clone(),
                            occur_time: None,
                        })
                        .collect::<Vec<_>>();
                    let mut client = client;
                    client
                        .record_activity(pb::RecordActivityRequest { events })
                        .await
                        .map(|r| r.into_inner())
                }));
            }
        }
    }
    let mut newly_active = 0;
    for call in calls {
        newly_active += call
            .await
            .expect("join")
            .expect("record")
            .newly_active_count;
    }
    assert_eq!(newly_active, 48, "each user is new exactly once");
    let totals = summary(&other, "").await;
    assert_eq!(
        (totals.monthly_active_users, totals.billable_organizations),
        (48, 8)
    );
    for org in &organizations {
        assert_eq!(usage(&app, org, "").await.active_member_count, 6);
    }
    let mut replay = watch(&other, &start, false).await;
    let (events, _) = until_checkpoint(&mut replay).await;
    let started = events
        .iter()
        .filter(|m| matches!(m.event, Some(Event::PeriodStarted(_))))
        .count();
    assert_eq!(started, 1, "period_started once");
    let mut per_org: BTreeMap<String, usize> = BTreeMap::new();
    for usage in events.iter().filter_map(became_billable) {
        *per_org.entry(usage.organization_id.clone()).or_default() += 1;
    }
    assert_eq!(per_org.len(), 8);
    assert!(
        per_org.values().all(|&n| n == 1),
        "each transition once: {per_org:?}"
    );
}

#[tokio::test]
async fn a_new_period_is_announced_once() {
    let app = spawn_at(at(2026, 3, 31, 23), quick_checkpoints).await;
    record(&app, &["user_a"], None).await;
    let (mut stream, _) = watch_from_now(&app).await;
    app.clock.set(at(2026, 4, 1, 0));
    record(&app, &["user_a"], None).await;
    record(&app, &["user_b"], None).await;
    // A late event for March does not announce anything.
    record(&app, &["user_c"], Some(at(2026, 3, 31, 12))).await;
    let message = next_event(&mut stream).await;
    assert_eq!(message.event, Some(Event::PeriodStarted("2026-04".into())));
    assert_eq!(
        message.summary.as_ref().map(|s| s.period.as_str()),
        Some("2026-04")
    );
    let quiet = next(&mut stream).await;
    assert!(
        matches!(quiet.event, Some(Event::Checkpoint(_))),
        "unexpected {quiet:?}"
    );
}

#[tokio::test]
async fn idle_watches_get_checkpoints_and_old_cursors_expire() {
    let app = spawn_at(at(2026, 3, 10, 12), |c| {
        c.watch_checkpoint_interval_secs = 1;
        c.watch_retention_days = 30;
    })
    .await;
    let (mut stream, cursor) = watch_from_now(&app).await;
    let checkpoint = next(&mut stream).await;
    assert!(matches!(checkpoint.event, Some(Event::Checkpoint(_))));
    assert!(checkpoint.summary.is_some());
    // A cursor's age is that of the oldest event it has not seen: a change
    // now, and the cursor misses it.
    create_org(&app, "Changed after the cursor", None).await;

    app.clock.advance(chrono::Duration::days(29));
    watch(&app, &cursor, false).await;
    app.clock.advance(chrono::Duration::days(2));
    let expired = reader(&app)
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
            start_cursor: cursor,
            send_initial_state: false,
        })
        .await;
    assert_status(expired, Code::OutOfRange, "CURSOR_EXPIRED");
    // The cursor of a checkpoint sent since is fresh.
    let advanced = orgs::domain::time::Clock::now(&app.clock).timestamp();
    let fresh = loop {
        let message = next(&mut stream).await;
        if let Some(Event::Checkpoint(pb::Checkpoint { time: Some(time) })) = &message.event
            && time.seconds >= advanced
        {
            break message;
        }
    };
    watch(&app, &fresh.cursor, false).await;
}

#[tokio::test]
async fn shutdown_ends_watches_with_unavailable() {
    let app = spawn_at(at(2026, 3, 10, 12), quick_checkpoints).await;
    let (mut stream, _) = watch_from_now(&app).await;
    let shutdown = tokio::spawn(app.shutdown());
    let status = loop {
        match tokio::time::timeout(LIVENESS, stream.message())
            .await
            .expect("ends within the bound")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "SHUTTING_DOWN");
    tokio::time::timeout(LIVENESS, shutdown)
        .await
        .expect("shutdown completes")
        .expect("join");
}

#[tokio::test]
async fn a_slow_watcher_holds_back_nobody() {
    let app = spawn_at(at(2026, 3, 10, 12), quick_checkpoints).await;
    // Opened and never read.
    let _stalled = watch(&app, "", false).await;
    let (mut live, _) = watch_from_now(&app).await;
    let mut organizations = Vec::new();
    for i in 0..150 {
        organizations.push(create_org(&app, &format!("Org {i}"), None).await.id);
    }
    // 150 transitions: more than a stream buffers.
    let mut users = Vec::new();
    for (i, org) in organizations.iter().enumerate() {
        for m in 0..2 {
            let user = format!("user_{i}_{m}");
            add_member(&app, org, &user, "org:member").await;
            users.push(user);
        }
    }
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    tokio::time::timeout(LIVENESS * 4, record(&app, &refs, None))
        .await
        .expect("writers are not blocked");
    let mut seen = 0;
    while seen < 150 {
        if became_billable(&next(&mut live).await).is_some() {
            seen += 1;
        }
    }
}

/// The service's answers against the test's own account of what it did: a
/// seeded random workload over two periods, with late events, deletions and
/// a phase of concurrent writers on two replicas.
#[tokio::test]
async fn reconciliation_with_a_seeded_random_workload() {
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    const THRESHOLD: usize = 2;
    const FREE: i64 = 3;
    const PRICE: i64 = 100;
    let seed: u64 = std::env::var("ORGS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261128);
    let mut rng = StdRng::seed_from_u64(seed);
    let configure = |c: &mut orgs::ServeConfig| {
        c.billing.free_organizations = FREE as u32;
        // The log is replayed from the start of the workload, seven weeks
        // of test clock earlier.
        c.watch_retention_days = 90;
        quick_checkpoints(c);
    };
    let app = spawn_at(at(2026, 3, 5, 8), configure).await;
    let (_, start) = watch_from_now(&app).await;

    #[derive(Default)]
    struct Model {
        existing: BTreeSet<String>,
        all: BTreeSet<String>,
        members: BTreeMap<String, BTreeSet<String>>,
        active: BTreeMap<String, BTreeSet<String>>,
        counted: BTreeMap<(String, String), BTreeSet<String>>,
        /// Deactivated memberships `(organization, user)`: kept, not counted.
        deactivated_members: BTreeSet<(String, String)>,
        /// Deactivated organizations: kept, never counted.
        deactivated: BTreeSet<String>,
    }
    impl Model {
        fn counts(&self, org: &str, user: &str) -> bool {
            !self.deactivated.contains(org)
                && !self
                    .deactivated_members
                    .contains(&(org.to_string(), user.to_string()))
        }
        fn activity(&mut self, period: &str, user: &str) {
            if self
                .active
                .entry(period.to_string())
                .or_default()
                .insert(user.to_string())
            {
                for (org, members) in &self.members {
                    if members.contains(user) && self.counts(org, user) {
                        self.counted
                            .entry((org.clone(), period.to_string()))
                            .or_default()
                            .insert(user.to_string());
                    }
                }
            }
        }
        /// A membership added or reactivated, or a member of an organization
        /// reactivated: it counts if the user is active in the period.
        fn member_added(&mut self, current: &str, org: &str, user: &str) {
            self.members
                .entry(org.to_string())
                .or_default()
                .insert(user.to_string());
            if self.counts(org, user) && self.active.get(current).is_some_and(|a| a.contains(user))
            {
                self.counted
                    .entry((org.to_string(), current.to_string()))
                    .or_default()
                    .insert(user.to_string());
            }
        }
    }
    let mut model = Model::default();
    let users: Vec<String> = (0..40).map(|i| format!("user_{i:02}")).collect();
    let pick = |rng: &mut StdRng| users[rng.random_range(0..users.len())].clone();

    for (period, day0, steps) in [
        ("2026-03", at(2026, 3, 5, 8), 120),
        ("2026-04", at(2026, 4, 3, 8), 120),
    ] {
        app.clock.set(day0);
        for step in 0..steps {
            app.clock.set(day0 + chrono::Duration::minutes(step));
            let roll = rng.random_range(0..100);
            let existing: Vec<String> = model.existing.iter().cloned().collect();
            if roll < 12 || existing.is_empty() {
                let creator = if rng.random_bool(0.8) {
                    Some(pick(&mut rng))
                } else {
                    None
                };
                let org = create_org(&app, &format!("Org {period} {step}"), creator.as_deref())
                    .await
                    .id;
                model.existing.insert(org.clone());
                model.all.insert(org.clone());
                model.members.insert(org.clone(), BTreeSet::new());
                if let Some(creator) = creator {
                    model.member_added(period, &org, &creator);
                }
            } else if roll < 40 {
                let org = existing[rng.random_range(0..existing.len())].clone();
                let user = pick(&mut rng);
                if model.deactivated.contains(&org) {
                    let refused = app
                        .admin()
                        .create_membership(pb::CreateMembershipRequest {
                            organization_id: org.clone(),
                            user_id: user.clone(),
                            ..Default::default()
                        })
                        .await;
                    assert_status(
                        refused,
                        Code::FailedPrecondition,
                        "ORGANIZATION_DEACTIVATED",
                    );
                } else if !model.members[&org].contains(&user) {
                    add_member(&app, &org, &user, "org:member").await;
                    model.member_added(period, &org, &user);
                }
            } else if roll < 50 {
                let org = existing[rng.random_range(0..existing.len())].clone();
                let members: Vec<String> = model.members[&org].iter().cloned().collect();
                if !members.is_empty() {
                    let user = members[rng.random_range(0..members.len())].clone();
                    let removed = app
                        .admin()
                        .delete_membership(pb::DeleteMembershipRequest {
                            organization_id: org.clone(),
                            user_id: user.clone(),
                            ..Default::default()
                        })
                        .await;
                    match removed {
                        Ok(_) => {
                            assert!(!model.deactivated.contains(&org), "removed from {org}");
                            if let Some(members) = model.members.get_mut(&org) {
                                members.remove(&user);
                            }
                            model
                                .deactivated_members
                                .remove(&(org.clone(), user.clone()));
                        }
                        Err(status) if model.deactivated.contains(&org) => {
                            assert_eq!(reason(&status), "ORGANIZATION_DEACTIVATED")
                        }
                        Err(status) => assert_eq!(reason(&status), "LAST_ADMIN"),
                    }
                }
            } else if roll < 53 {
                let org = existing[rng.random_range(0..existing.len())].clone();
                app.admin()
                    .delete_organization(pb::DeleteOrganizationRequest {
                        organization_id: org.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("delete organization");
                model.existing.remove(&org);
                model.members.remove(&org);
                model.deactivated.remove(&org);
                model.deactivated_members.retain(|(o, _)| o != &org);
            } else if roll < 60 {
                // A member deactivated, or a deactivated one reactivated.
                let org = existing[rng.random_range(0..existing.len())].clone();
                let members: Vec<String> = model.members[&org].iter().cloned().collect();
                if !members.is_empty() {
                    let user = members[rng.random_range(0..members.len())].clone();
                    let key = (org.clone(), user.clone());
                    let reactivate = model.deactivated_members.contains(&key);
                    let mut client = app.admin();
                    let changed = if reactivate {
                        client
                            .reactivate_membership(pb::ReactivateMembershipRequest {
                                organization_id: org.clone(),
                                user_id: user.clone(),
                                ..Default::default()
                            })
                            .await
                            .map(|_| ())
                    } else {
                        client
                            .deactivate_membership(pb::DeactivateMembershipRequest {
                                organization_id: org.clone(),
                                user_id: user.clone(),
                                ..Default::default()
                            })
                            .await
                            .map(|_| ())
                    };
                    match changed {
                        Ok(()) if reactivate => {
                            model.deactivated_members.remove(&key);
                            model.member_added(period, &org, &user);
                        }
                        Ok(()) => {
                            model.deactivated_members.insert(key);
                        }
                        Err(status) if model.deactivated.contains(&org) => {
                            assert_eq!(reason(&status), "ORGANIZATION_DEACTIVATED")
                        }
                        Err(status) => assert_eq!(reason(&status), "LAST_ADMIN"),
                    }
                }
            } else if roll < 64 {
                // An organization deactivated, or a deactivated one reactivated.
                let org = existing[rng.random_range(0..existing.len())].clone();
                if model.deactivated.remove(&org) {
                    app.admin()
                        .reactivate_organization(pb::ReactivateOrganizationRequest {
                            organization_id: org.clone(),
                            ..Default::default()
                        })
                        .await
                        .expect("reactivate organization");
                    let members: Vec<String> = model.members[&org].iter().cloned().collect();
                    for user in members {
                        model.member_added(period, &org, &user);
                    }
                } else {
                    app.admin()
                        .deactivate_organization(pb::DeactivateOrganizationRequest {
                            organization_id: org.clone(),
                            ..Default::default()
                        })
                        .await
                        .expect("deactivate organization");
                    model.deactivated.insert(org);
                }
            } else if roll < 88 || period == "2026-03" {
                let batch: Vec<String> = (0..rng.random_range(1..6))
                    .map(|_| pick(&mut rng))
                    .collect();
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                record(&app, &refs, None).await;
                for user in &batch {
                    model.activity(period, user);
                }
            } else {
                // Late: in March, recorded in April.
                let user = pick(&mut rng);
                record(&app, &[&user], Some(at(2026, 3, 31, 20))).await;
                model.activity("2026-03", &user);
            }
        }
    }

    // Concurrent writers through two replicas: current-period activity,
    // new memberships and new organizations, whose effects do not depend on
    // the order they commit in.
    let replica = TestApp::spawn_on(&app.database_url, configure).await;
    let now = at(2026, 4, 20, 8);
    app.clock.set(now);
    replica.clock.set(now);
    // Deactivated organizations refuse new members: only active ones get them.
    let existing: Vec<String> = model
        .existing
        .difference(&model.deactivated)
        .cloned()
        .collect();
    let mut planned_adds: Vec<(String, String)> = Vec::new();
    for org in &existing {
        for _ in 0..2 {
            let user = pick(&mut rng);
            if !model.members[org].contains(&user)
                && !planned_adds.contains(&(org.clone(), user.clone()))
            {
                planned_adds.push((org.clone(), user));
            }
        }
    }
    let batches: Vec<Vec<String>> = (0..12)
        .map(|_| (0..8).map(|_| pick(&mut rng)).collect())
        .collect();
    let creators: Vec<String> = (0..4).map(|_| pick(&mut rng)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (org, user)) in planned_adds.iter().cloned().enumerate() {
        let client = if i % 2 == 0 {
            app.admin()
        } else {
            replica.admin()
        };
        tasks.spawn(async move {
            let mut client = client;
            client
                .create_membership(pb::CreateMembershipRequest {
                    organization_id: org,
                    user_id: user,
                    role: "org:member".into(),
                    ..Default::default()
                })
                .await
                .expect("concurrent add");
            None
        });
    }
    for (i, batch) in batches.iter().cloned().enumerate() {
        let client = if i % 2 == 0 {
            writer(&app)
        } else {
            writer(&replica)
        };
        tasks.spawn(async move {
            let mut client = client;
            let events = batch
                .into_iter()
                .map(|user_id| pb::ActivityEvent {
                    user_id,
                    occur_time: None,
                })
                .collect();
            client
                .record_activity(pb::RecordActivityRequest { events })
                .await
                .expect("concurrent activity");
            None
        });
    }
    for (i, creator) in creators.iter().cloned().enumerate() {
        let client = if i % 2 == 0 {
            app.admin()
        } else {
            replica.admin()
        };
        tasks.spawn(async move {
            let mut client = client;
            let created = client
                .create_organization(pb::CreateOrganizationRequest {
                    name: format!("Concurrent {i}"),
                    created_by: creator.clone(),
                    ..Default::default()
                })
                .await
                .expect("concurrent create")
                .into_inner();
            Some((created.organization.expect("organization").id, creator))
        });
    }
    let mut created = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Some(org) = result.expect("task") {
            created.push(org);
        }
    }
    for (org, user) in &planned_adds {
        model.member_added("2026-04", org, user);
    }
    for (org, creator) in created {
        model.existing.insert(org.clone());
        model.all.insert(org.clone());
        model.members.insert(org.clone(), BTreeSet::new());
        model.member_added("2026-04", &org, &creator);
    }
    for batch in &batches {
        for user in batch {
            model.activity("2026-04", user);
        }
    }

    // Compare every organization, every period, the summaries, the billable
    // lists, the cost drivers and the transitions in the log.
    let mut expected_events: BTreeMap<(String, String), usize> = BTreeMap::new();
    for period in ["2026-03", "2026-04"] {
        let mut billable: BTreeSet<String> = BTreeSet::new();
        for org in &model.all {
            let counted: Vec<String> = model
                .counted
                .get(&(org.clone(), period.to_string()))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            // Every organization that ever existed answers, deleted or not,
            // with or without history.
            let answer = usage(&replica, org, period).await;
            assert_eq!(
                answer.active_member_user_ids, counted,
                "active members of {org} in {period} (seed {seed})"
            );
            assert_eq!(answer.active_member_count as usize, counted.len());
            assert_eq!(
                answer.billable,
                counted.len() >= THRESHOLD,
                "billable {org} in {period} (seed {seed})"
            );
            if answer.billable {
                billable.insert(org.clone());
                expected_events.insert((org.clone(), period.to_string()), 1);
            }
        }
        let totals = summary(&app, period).await;
        let mau = model.active.get(period).map_or(0, |a| a.len());
        let charged = (billable.len() as i64 - FREE).max(0);
        assert_eq!(
            totals.total_organizations as usize,
            model.existing.len(),
            "seed {seed}"
        );
        assert_eq!(totals.monthly_active_users as usize, mau, "seed {seed}");
        assert_eq!(
            totals.billable_organizations as usize,
            billable.len(),
            "seed {seed}"
        );
        assert_eq!(totals.charged_organizations as i64, charged);
        assert_eq!(
            totals.free_organizations as i64,
            billable.len() as i64 - charged
        );
        assert_eq!(cents(&totals.amount_due), charged * PRICE);
        let listed: BTreeSet<String> = billable_ids(&app, period).await.into_iter().collect();
        assert_eq!(listed, billable, "billable list of {period} (seed {seed})");

        let drivers = reader(&app)
            .list_cost_drivers(pb::ListCostDriversRequest {
                period: period.into(),
                min_organizations: 1,
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut expected_drivers: BTreeMap<String, (i32, i32)> = BTreeMap::new();
        for org in &billable {
            let counted = &model.counted[&(org.clone(), period.to_string())];
            for user in counted {
                let entry = expected_drivers.entry(user.clone()).or_default();
                entry.0 += 1;
                if counted.len() == THRESHOLD {
                    entry.1 += 1;
                }
            }
        }
        let actual_drivers: BTreeMap<String, (i32, i32)> = drivers
            .cost_drivers
            .iter()
            .map(|d| {
                (
                    d.user_id.clone(),
                    (d.billable_organization_count, d.sole_cause_count),
                )
            })
            .collect();
        assert_eq!(
            actual_drivers, expected_drivers,
            "cost drivers of {period} (seed {seed})"
        );
        for driver in &drivers.cost_drivers {
            assert_eq!(
                cents(&driver.avoidable_amount),
                i64::from(driver.sole_cause_count).min(charged) * PRICE
            );
        }
    }
    let mut log = watch(&replica, &start, false).await;
    let (events, _) = until_checkpoint(&mut log).await;
    let mut delivered: BTreeMap<(String, String), usize> = BTreeMap::new();
    for usage in events.iter().filter_map(became_billable) {
        *delivered
            .entry((usage.organization_id.clone(), usage.period.clone()))
            .or_default() += 1;
    }
    assert_eq!(
        delivered, expected_events,
        "each transition exactly once in the log (seed {seed})"
    );
    let started: Vec<&Event> = events
        .iter()
        .filter_map(|m| m.event.as_ref())
        .filter(|e| matches!(e, Event::PeriodStarted(_)))
        .collect();
    assert_eq!(
        started,
        vec![
            &Event::PeriodStarted("2026-03".into()),
            &Event::PeriodStarted("2026-04".into())
        ]
    );
}

fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn metrics_show_billable_organizations_and_open_watches() {
    // Half of November gone: the one billable organization projects to two.
    let app = spawn_at(at(2026, 11, 16, 0), |config| {
        config.billing.free_organizations = 0;
        config.billing.budget = 500;
    })
    .await;
    let organization = org_with(&app, "Gauged", "user_g1", &["user_g2"]).await;
    record(&app, &["user_g1", "user_g2"], None).await;
    assert!(usage(&app, &organization, "").await.billable);
    let stream = watch(&app, "", false).await;
    let text = scrape(app.metrics_addr).await.1;
    assert_eq!(
        metric_value(&text, "orgs_billing_billable_organizations"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "orgs_billing_charged_organizations"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "orgs_watch_streams_open"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "orgs_billing_budget_minor_units"),
        Some(500.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "orgs_billing_projected_amount_due_minor_units"),
        Some(200.0),
        "{text}"
    );
    let totals = summary(&app, "").await;
    assert_eq!(cents(&totals.budget), 500);
    assert_eq!(cents(&totals.amount_due), 100);
    assert_eq!(cents(&totals.projected_amount_due), 200);
    drop(stream);
    let mut closed = false;
    for _ in 0..50 {
        if metric_value(&scrape(app.metrics_addr).await.1, "orgs_watch_streams_open") == Some(0.0) {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(closed, "a dropped watch is no longer counted");
}
