//! What one caller may take: per-principal rate limits for reads and writes,
//! a cap on open watches, deadlines that cancel a call and roll its work back,
//! and the largest requests the contract allows still fit.

mod common;

use std::time::Duration;

use common::*;
use orgs::proto::v1 as pb;
use prost::Message;
use sea_orm::{ConnectionTrait, DbBackend};
use tonic::{Code, Request, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

/// The `RetryInfo.retry_delay` of a status.
fn retry_delay(status: &Status) -> Option<Duration> {
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
}

/// Asserts `RESOURCE_EXHAUSTED` `reason` with a positive `RetryInfo`.
#[track_caller]
fn assert_exhausted(status: Status, expected_reason: &str) {
    assert_status::<()>(
        Err(status.clone()),
        Code::ResourceExhausted,
        expected_reason,
    );
    let delay = retry_delay(&status).expect("RetryInfo");
    assert!(delay > Duration::ZERO, "{status:?}");
}

fn list_organizations() -> pb::ListOrganizationsRequest {
    pb::ListOrganizationsRequest::default()
}

/// Calls `call` up to `attempts` times and returns the first error, if any.
async fn first_refusal<F, Fut, T>(attempts: usize, mut call: F) -> Option<Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    for _ in 0..attempts {
        if let Err(status) = call().await {
            return Some(status);
        }
    }
    None
}

#[tokio::test]
async fn a_burst_of_one_principal_is_limited_while_another_principals_calls_pass() {
    // One write a second (bursts of 2) and two reads a second (bursts of 4):
    // a loop of 20 calls would have to take 9 seconds to stay under them.
    let app = TestApp::spawn_with(|config| {
        config.limits.writes_per_second = 1;
        config.limits.reads_per_second = 2;
    })
    .await;
    let alice = app.user("user_alice");
    let bob = app.user("user_bob");

    let mut created = 0;
    let refused = first_refusal(20, || {
        created += 1;
        let mut alice = alice.clone();
        async move {
            alice
                .create_organization(pb::CreateOrganizationRequest {
                    name: format!("Alice {created}"),
                    ..Default::default()
                })
                .await
        }
    })
    .await
    .expect("a burst of writes is limited");
    assert_exhausted(refused, "RATE_LIMITED");

    // Writes and reads have separate buckets.
    alice
        .clone()
        .list_organizations(list_organizations())
        .await
        .expect("alice's reads are not limited by her writes");
    // Another principal is unaffected.
    bob.clone()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Bob Inc".into(),
            ..Default::default()
        })
        .await
        .expect("bob's write passes");

    let refused = first_refusal(20, || {
        let mut alice = alice.clone();
        async move { alice.list_organizations(list_organizations()).await }
    })
    .await
    .expect("a burst of reads is limited");
    assert_exhausted(refused, "RATE_LIMITED");
    bob.clone()
        .list_organizations(list_organizations())
        .await
        .expect("bob's read passes");

    // Health and reflection are not limited.
    let mut health = HealthClient::new(app.channel());
    for _ in 0..20 {
        health
            .check(HealthCheckRequest::default())
            .await
            .expect("health is not limited");
    }
}

#[tokio::test]
async fn a_limit_of_zero_switches_it_off() {
    let app = TestApp::spawn_with(|config| {
        config.limits.reads_per_second = 0;
        config.limits.writes_per_second = 1;
    })
    .await;
    let alice = app.user("user_alice");
    for _ in 0..50 {
        alice
            .clone()
            .list_organizations(list_organizations())
            .await
            .expect("reads are not limited");
    }
    // The writes of the same server are.
    let mut created = 0;
    let refused = first_refusal(20, || {
        created += 1;
        let mut alice = alice.clone();
        async move {
            alice
                .create_organization(pb::CreateOrganizationRequest {
                    name: format!("Alice {created}"),
                    ..Default::default()
                })
                .await
        }
    })
    .await
    .expect("a burst of writes is limited");
    assert_exhausted(refused, "RATE_LIMITED");
}

fn watch_request() -> pb::WatchBillableOrganizationsRequest {
    pb::WatchBillableOrganizationsRequest::default()
}

#[tokio::test]
async fn the_seventeenth_watch_is_refused_and_a_slot_frees_when_a_watch_ends() {
    let app = TestApp::spawn().await;
    let billing = app.billing(Some(token("svc-billing-reader", "billing:read")));
    let mut open = Vec::new();
    for i in 0..16 {
        let stream = billing
            .clone()
            .watch_billable_organizations(watch_request())
            .await
            .unwrap_or_else(|status| panic!("watch {i} opens: {status:?}"))
            .into_inner();
        open.push(stream);
    }
    let refused = billing
        .clone()
        .watch_billable_organizations(watch_request())
        .await
        .expect_err("the 17th watch is refused");
    assert_exhausted(refused, "TOO_MANY_WATCHES");

    // Another principal has its own slots.
    let other = app.billing(Some(token("svc-other-reader", "billing:read")));
    let _others = other
        .clone()
        .watch_billable_organizations(watch_request())
        .await
        .expect("another principal's watch opens");

    // The client cancels one: its slot frees once the server sees the reset.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..100 {
        match billing
            .clone()
            .watch_billable_organizations(watch_request())
            .await
        {
            Ok(stream) => {
                reopened = Some(stream.into_inner());
                break;
            }
            Err(status) => {
                assert_exhausted(status, "TOO_MANY_WATCHES");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    open.push(reopened.expect("a slot frees after a watch is cancelled"));

    // A watch the server ends at once (a bad cursor) holds no slot: with one
    // closed, the bad one fails on its own and the slot is still there.
    drop(open.pop());
    let mut bad_cursor_answered = false;
    for _ in 0..100 {
        let bad = billing
            .clone()
            .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
                start_cursor: "not-a-cursor".into(),
                ..Default::default()
            })
            .await;
        match bad {
            Err(status) if reason(&status) == "TOO_MANY_WATCHES" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                bad_cursor_answered = true;
                break;
            }
            Ok(_) => panic!("a bad cursor is refused"),
        }
    }
    assert!(bad_cursor_answered, "the freed slot was never seen");
    let _sixteenth = billing
        .clone()
        .watch_billable_organizations(watch_request())
        .await
        .expect("the call the server ended freed its slot");
    let refused = billing
        .clone()
        .watch_billable_organizations(watch_request())
        .await
        .expect_err("16 are open again");
    assert_exhausted(refused, "TOO_MANY_WATCHES");
}

/// Holds the write lock of the organization `organization_id` from a second
/// connection: on PostgreSQL the row `FOR UPDATE`, on SQLite the database
/// (`BEGIN IMMEDIATE`).
async fn hold_lock(
    database_url: &str,
    organization_id: &str,
) -> (orgs::store::Db, sea_orm::DatabaseTransaction) {
    let db = orgs::store::Db::connect(database_url, 1)
        .await
        .expect("second connection");
    let txn = db.begin().await.expect("begin");
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM organizations WHERE id = $1 FOR UPDATE",
            [organization_id.into()],
        ))
        .await
        .expect("lock the organization row");
    }
    (db, txn)
}

fn add_bob(organization_id: &str) -> pb::CreateMembershipRequest {
    pb::CreateMembershipRequest {
        organization_id: organization_id.into(),
        user_id: "user_bob".into(),
        ..Default::default()
    }
}

async fn members(app: &TestApp, organization_id: &str) -> Vec<String> {
    app.admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: organization_id.into(),
            ..Default::default()
        })
        .await
        .expect("list memberships")
        .into_inner()
        .memberships
        .into_iter()
        .map(|m| m.user_id)
        .collect()
}

async fn audit_actions(app: &TestApp, organization_id: &str) -> Vec<String> {
    app.admin()
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: organization_id.into(),
            ..Default::default()
        })
        .await
        .expect("list audit events")
        .into_inner()
        .audit_events
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn a_call_whose_deadline_passes_on_a_held_lock_is_cancelled_and_leaves_nothing_written() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Locked Inc", Some("user_alice")).await;
    let audit_before = audit_actions(&app, &organization.id).await;

    let (db, txn) = hold_lock(&app.database_url, &organization.id).await;
    // The server gives up a twentieth of the timeout (50 ms here) before the
    // client's own timer; on a loaded machine the client's timer can still
    // fire first (tonic then reports CANCELLED locally). Try a few times: the
    // server's answer must be the documented one whenever it arrives first.
    let mut result = None;
    for _ in 0..5 {
        let mut request = Request::new(add_bob(&organization.id));
        request.set_timeout(Duration::from_secs(1));
        match app.admin().create_membership(request).await {
            Err(status) if status.code() == Code::Cancelled => continue,
            other => {
                result = Some(other);
                break;
            }
        }
    }
    let result = result.expect("the server answered before the client gave up at least once");
    assert_status(result, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
    txn.rollback().await.expect("release the lock");
    db.close().await;

    // The cancelled call wrote nothing, and left no lock behind: the same
    // change goes through afterwards (within a deadline, so a leftover lock
    // would fail the test instead of hanging it).
    assert_eq!(members(&app, &organization.id).await, ["user_alice"]);
    assert_eq!(audit_actions(&app, &organization.id).await, audit_before);
    let mut request = Request::new(add_bob(&organization.id));
    request.set_timeout(Duration::from_secs(20));
    app.admin()
        .create_membership(request)
        .await
        .expect("the same call succeeds once the lock is gone");
    let mut after = members(&app, &organization.id).await;
    after.sort();
    assert_eq!(after, ["user_alice", "user_bob"]);
    let organization = app
        .admin()
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                organization.id.clone(),
            )),
        })
        .await
        .expect("get organization")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(organization.members_count, 2);
}

#[tokio::test]
async fn a_unary_call_without_a_client_deadline_gets_the_servers() {
    let app = TestApp::spawn_with(|config| config.limits.request_timeout_secs = 1).await;
    let organization = create_org(&app, "Slow Inc", Some("user_alice")).await;
    let (db, txn) = hold_lock(&app.database_url, &organization.id).await;
    let result = app
        .admin()
        .create_membership(add_bob(&organization.id))
        .await;
    assert_status(result, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
    txn.rollback().await.expect("release the lock");
    db.close().await;
    assert_eq!(members(&app, &organization.id).await, ["user_alice"]);
}

#[tokio::test]
async fn the_largest_requests_of_the_contract_fit_and_larger_ones_are_refused() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Big Inc", Some("user_alice")).await;

    // 10,000 activity events with 128-character user ids.
    let now = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    };
    let events: Vec<pb::ActivityEvent> = (0..10_000)
        .map(|i| pb::ActivityEvent {
            user_id: format!("{i:0>128}"),
            occur_time: Some(now),
        })
        .collect();
    let request = pb::RecordActivityRequest { events };
    let size = request.encoded_len();
    assert!(size > 1_000_000, "{size}");
    let recorded = app
        .billing(Some(token("svc-billing", "billing:write")))
        .record_activity(request)
        .await
        .expect("10,000 events fit")
        .into_inner();
    assert_eq!(recorded.accepted_count, 10_000);

    // 100 invitations, each with public and private metadata close to 8 KiB.
    let metadata = |tag: &str| {
        let mut fields = std::collections::BTreeMap::new();
        for key in 0..7 {
            fields.insert(
                format!("{tag}{key}"),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("v".repeat(1100))),
                },
            );
        }
        Some(prost_types::Struct { fields })
    };
    let requests: Vec<pb::CreateInvitationRequest> = (0..100)
        .map(|i| pb::CreateInvitationRequest {
            organization_id: organization.id.clone(),
            email_address: format!("invitee{i}@example.com"),
            public_metadata: metadata("public"),
            private_metadata: metadata("private"),
            ..Default::default()
        })
        .collect();
    let request = pb::CreateInvitationsRequest { requests };
    let size = request.encoded_len();
    assert!(size > 1_000_000, "{size}");
    let created = app
        .invitations(Some(token("svc-onboarding", "orgs:admin")))
        .create_invitations(request)
        .await
        .expect("100 invitations fit")
        .into_inner();
    assert_eq!(created.results.len(), 100);
    assert!(created.results.iter().all(|r| r.error.is_none()));

    // Above ORGS_MAX_REQUEST_BYTES the message is not even decoded.
    let small = TestApp::spawn_with(|config| config.limits.max_request_bytes = 64 * 1024).await;
    let events: Vec<pb::ActivityEvent> = (0..1_000)
        .map(|i| pb::ActivityEvent {
            user_id: format!("{i:0>128}"),
            occur_time: Some(now),
        })
        .collect();
    let refused = small
        .billing(Some(token("svc-billing", "billing:write")))
        .record_activity(pb::RecordActivityRequest { events })
        .await
        .expect_err("a request above the limit is refused");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
}
