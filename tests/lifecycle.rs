//! Deactivating instead of deleting (API.md §7.6) and the budget guardrail
//! (§7.7), through the generated clients against real servers, on SQLite or
//! (with ORGS_TEST_DATABASE_URL) PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use orgs::proto::v1 as pb;
use pb::watch_billable_organizations_response::Event;
use tonic::Code;

const MANAGE: &str = "org:sys_memberships:manage";

fn billing_writer(app: &TestApp) -> Billing {
    app.billing(Some(token("svc-activity", "billing:write")))
}

fn billing_reader(app: &TestApp) -> Billing {
    app.billing(Some(token("svc-finance", "billing:read")))
}

async fn usage(app: &TestApp, organization_id: &str) -> pb::OrganizationUsage {
    billing_reader(app)
        .get_organization_usage(pb::GetOrganizationUsageRequest {
            organization_id: organization_id.into(),
            ..Default::default()
        })
        .await
        .expect("usage")
        .into_inner()
        .usage
        .expect("usage")
}

async fn summary(app: &TestApp) -> pb::BillingSummary {
    billing_reader(app)
        .get_billing_summary(pb::GetBillingSummaryRequest::default())
        .await
        .expect("summary")
        .into_inner()
        .summary
        .expect("summary")
}

async fn allowed(app: &TestApp, organization_id: &str, user_id: &str) -> (bool, String) {
    let answer = app
        .orgs(Some(token("svc-check", "orgs:read")))
        .check_permission(pb::CheckPermissionRequest {
            organization_id: organization_id.into(),
            user_id: user_id.into(),
            permission: MANAGE.into(),
        })
        .await
        .expect("check permission")
        .into_inner();
    (answer.allowed, answer.role)
}

async fn deactivate_member(
    app: &TestApp,
    organization_id: &str,
    user_id: &str,
) -> Result<pb::DeactivateMembershipResponse, tonic::Status> {
    app.admin()
        .deactivate_membership(pb::DeactivateMembershipRequest {
            organization_id: organization_id.into(),
            user_id: user_id.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn reactivate_member(
    app: &TestApp,
    organization_id: &str,
    user_id: &str,
) -> Result<pb::ReactivateMembershipResponse, tonic::Status> {
    app.admin()
        .reactivate_membership(pb::ReactivateMembershipRequest {
            organization_id: organization_id.into(),
            user_id: user_id.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn member_users(
    app: &TestApp,
    organization_id: &str,
    state: pb::MembershipState,
) -> Vec<String> {
    app.admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: organization_id.into(),
            state: state as i32,
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

async fn event_types(app: &TestApp, organization_id: &str) -> Vec<String> {
    app.events(Some(token("svc-mirror", "orgs:read")))
        .list_events(pb::ListEventsRequest {
            organization_id: organization_id.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("list events")
        .into_inner()
        .events
        .into_iter()
        .map(|e| e.r#type)
        .collect()
}

#[tokio::test]
async fn a_deactivated_member_holds_nothing_and_counts_for_nothing() {
    let app = TestApp::spawn().await;
    let org = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Offboarding".into(),
            created_by: "user_owner".into(),
            max_allowed_memberships: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap()
        .id;
    add_member(&app, &org, "user_leaver", "org:admin").await;
    assert_eq!(
        allowed(&app, &org, "user_leaver").await,
        (true, "org:admin".into())
    );

    // validate_only previews and changes nothing.
    let preview = app
        .admin()
        .deactivate_membership(pb::DeactivateMembershipRequest {
            organization_id: org.clone(),
            user_id: "user_leaver".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        preview.membership.unwrap().state,
        pb::MembershipState::Deactivated as i32
    );
    assert!(preview.billing_impact.is_some());
    assert_eq!(
        allowed(&app, &org, "user_leaver").await,
        (true, "org:admin".into())
    );

    let deactivated = deactivate_member(&app, &org, "user_leaver")
        .await
        .unwrap()
        .membership
        .unwrap();
    assert_eq!(deactivated.state, pb::MembershipState::Deactivated as i32);
    assert!(deactivated.deactivate_time.is_some());
    assert_eq!(deactivated.role, "org:admin", "keeps its role");
    // No permissions: it is treated as a non-member.
    assert_eq!(
        allowed(&app, &org, "user_leaver").await,
        (false, String::new())
    );
    let as_leaver = app
        .user("user_leaver")
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                org.clone(),
            )),
        })
        .await;
    assert_status(as_leaver, Code::NotFound, "ORGANIZATION_NOT_FOUND");
    // Deactivating again changes nothing.
    let again = deactivate_member(&app, &org, "user_leaver").await.unwrap();
    assert_eq!(again.membership.unwrap().etag, deactivated.etag);

    // Removing a deactivated member does not give its place back twice.
    add_member(&app, &org, "user_temp", "org:member").await;
    deactivate_member(&app, &org, "user_temp").await.unwrap();
    app.admin()
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: org.clone(),
            user_id: "user_temp".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let counted = app
        .admin()
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                org.clone(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(counted.members_count, 1, "the active members");

    // Not counted toward the cap: a place is free again.
    add_member(&app, &org, "user_new", "org:member").await;
    let full = reactivate_member(&app, &org, "user_leaver").await;
    assert_status(full, Code::FailedPrecondition, "MEMBERSHIP_LIMIT_REACHED");

    // The state filter.
    assert_eq!(
        member_users(&app, &org, pb::MembershipState::Active).await,
        vec!["user_owner".to_string(), "user_new".to_string()]
    );
    assert_eq!(
        member_users(&app, &org, pb::MembershipState::Deactivated).await,
        vec!["user_leaver".to_string()]
    );
    assert_eq!(
        member_users(&app, &org, pb::MembershipState::Unspecified)
            .await
            .len(),
        3
    );
    let bad = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: org.clone(),
            state: 9,
            ..Default::default()
        })
        .await;
    assert_invalid(bad, "state");

    // The last-admin rule counts active members only: the owner is now the
    // last active admin while another active member remains.
    let last = deactivate_member(&app, &org, "user_owner").await;
    assert_status(last, Code::FailedPrecondition, "LAST_ADMIN");

    // Reactivated (once a place is free), it has its role back.
    app.admin()
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: org.clone(),
            user_id: "user_new".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let back = reactivate_member(&app, &org, "user_leaver")
        .await
        .unwrap()
        .membership
        .unwrap();
    assert_eq!(back.state, pb::MembershipState::Active as i32);
    assert!(back.deactivate_time.is_none());
    assert_eq!(
        allowed(&app, &org, "user_leaver").await,
        (true, "org:admin".into())
    );

    // Each transition is an event and an audit entry; a repeated one is not.
    let types = event_types(&app, &org).await;
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "membership.deactivated")
            .count(),
        2,
        "user_leaver and user_temp"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "membership.reactivated")
            .count(),
        1
    );
    let audit = app
        .admin()
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"DeactivateMembership"), "{actions:?}");
    assert!(actions.contains(&"ReactivateMembership"), "{actions:?}");
}

#[tokio::test]
async fn a_deactivated_member_is_not_billed_until_reactivated() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Parked seat", Some("user_a")).await.id;
    add_member(&app, &org, "user_b", "org:member").await;
    deactivate_member(&app, &org, "user_b").await.unwrap();
    record(&app, &["user_a", "user_b"]).await;
    let before = usage(&app, &org).await;
    assert_eq!(before.active_member_user_ids, vec!["user_a".to_string()]);
    assert!(!before.billable, "its activity does not count");
    // Reactivated while active in the period, it counts, as when joining;
    // the preview says so first.
    let preview = app
        .admin()
        .reactivate_membership(pb::ReactivateMembershipRequest {
            organization_id: org.clone(),
            user_id: "user_b".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billing_impact
        .unwrap();
    assert_eq!(
        (
            preview.active_member_count_before,
            preview.active_member_count_after
        ),
        (1, 2)
    );
    assert!(!preview.billable_before && preview.billable_after);
    assert!(
        !usage(&app, &org).await.billable,
        "a preview writes nothing"
    );
    let impact = reactivate_member(&app, &org, "user_b")
        .await
        .unwrap()
        .billing_impact
        .unwrap();
    assert_eq!(impact, preview);
    assert!(usage(&app, &org).await.billable);
}

#[tokio::test]
async fn a_deactivated_organization_refuses_changes_and_is_never_billed() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Dormant", Some("user_owner")).await.id;
    add_member(&app, &org, "user_member", "org:member").await;
    let other = create_org(&app, "Busy", Some("user_busy")).await.id;
    let domain = app
        .invitations(Some(token("svc-admin", "orgs:admin")))
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.clone(),
            name: "dormant.example".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap()
        .id;

    let deactivated = app
        .admin()
        .deactivate_organization(pb::DeactivateOrganizationRequest {
            organization_id: org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(deactivated.state, pb::OrganizationState::Deactivated as i32);
    assert!(deactivated.deactivate_time.is_some());

    // Changes are refused; reads work.
    let update = app
        .admin()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: org.clone(),
                name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await;
    assert_status(update, Code::FailedPrecondition, "ORGANIZATION_DEACTIVATED");
    let join = app
        .admin()
        .create_membership(pb::CreateMembershipRequest {
            organization_id: org.clone(),
            user_id: "user_late".into(),
            ..Default::default()
        })
        .await;
    assert_status(join, Code::FailedPrecondition, "ORGANIZATION_DEACTIVATED");
    let invite = app
        .invitations(Some(token("svc-admin", "orgs:admin")))
        .create_invitation(pb::CreateInvitationRequest {
            organization_id: org.clone(),
            email_address: "late@example.com".into(),
            ..Default::default()
        })
        .await;
    assert_status(invite, Code::FailedPrecondition, "ORGANIZATION_DEACTIVATED");
    let domain_change = app
        .invitations(Some(token("svc-admin", "orgs:admin")))
        .delete_domain(pb::DeleteDomainRequest { domain_id: domain })
        .await;
    assert_status(
        domain_change,
        Code::FailedPrecondition,
        "ORGANIZATION_DEACTIVATED",
    );
    let member_change = deactivate_member(&app, &org, "user_member").await;
    assert_status(
        member_change,
        Code::FailedPrecondition,
        "ORGANIZATION_DEACTIVATED",
    );
    let removal = app
        .admin()
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: org.clone(),
            user_id: "user_member".into(),
            ..Default::default()
        })
        .await;
    assert_status(
        removal,
        Code::FailedPrecondition,
        "ORGANIZATION_DEACTIVATED",
    );
    let read = app
        .admin()
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                org.clone(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(read.state, pb::OrganizationState::Deactivated as i32);
    // Its members hold no permission.
    assert_eq!(
        allowed(&app, &org, "user_owner").await,
        (false, String::new())
    );
    // Listable, with the state filter.
    let listed = |state: pb::OrganizationState| {
        let mut client = app.admin();
        async move {
            client
                .list_organizations(pb::ListOrganizationsRequest {
                    state: state as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .organizations
                .into_iter()
                .map(|o| o.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(pb::OrganizationState::Deactivated).await,
        vec![org.clone()]
    );
    assert_eq!(
        listed(pb::OrganizationState::Active).await,
        vec![other.clone()]
    );
    assert_eq!(listed(pb::OrganizationState::Unspecified).await.len(), 2);

    // Activity while deactivated does not count in it (and is not refused).
    record(&app, &["user_owner", "user_member", "user_busy"]).await;
    let dormant = usage(&app, &org).await;
    assert_eq!((dormant.active_member_count, dormant.billable), (0, false));
    assert_eq!(summary(&app).await.billable_organizations, 0);

    // Reactivation counts its members active in the period, as joining
    // would; the preview shows it and writes nothing.
    let preview = app
        .admin()
        .reactivate_organization(pb::ReactivateOrganizationRequest {
            organization_id: org.clone(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let impact = preview.billing_impact.unwrap();
    assert_eq!(
        (
            impact.active_member_count_before,
            impact.active_member_count_after
        ),
        (0, 2)
    );
    assert!(impact.billable_after);
    assert_eq!(usage(&app, &org).await.active_member_count, 0);
    let reactivated = app
        .admin()
        .reactivate_organization(pb::ReactivateOrganizationRequest {
            organization_id: org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reactivated.organization.unwrap().state,
        pb::OrganizationState::Active as i32
    );
    assert!(usage(&app, &org).await.billable);
    assert_eq!(
        allowed(&app, &org, "user_owner").await,
        (true, "org:admin".into())
    );
    let types = event_types(&app, &org).await;
    for kind in ["organization.deactivated", "organization.reactivated"] {
        assert_eq!(types.iter().filter(|t| *t == kind).count(), 1, "{kind}");
    }
    // Deleting a deactivated organization is allowed.
    app.admin()
        .deactivate_organization(pb::DeactivateOrganizationRequest {
            organization_id: other.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.admin()
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: other,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn budgeted(budget: u64, enforce: bool) -> impl FnOnce(&mut orgs::ServeConfig) + Clone {
    move |config: &mut orgs::ServeConfig| {
        config.billing.free_organizations = 1;
        config.billing.price_per_organization = 100;
        config.billing.budget = budget;
        config.billing.budget_enforce = enforce;
        config.watch_checkpoint_interval_secs = 1;
    }
}

#[tokio::test]
async fn budget_thresholds_are_crossed_once_when_replicas_race() {
    // Budget 400 cents, one free organization, 100 cents each after it: the
    // 3rd, 4th and 5th billable organizations reach 50%, 80% and 100%.
    let configure = budgeted(400, false);
    let a = TestApp::spawn_with(configure.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, configure).await;
    let mut watch = billing_reader(&b)
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut users = Vec::new();
    for i in 0..8 {
        let creator = format!("user_c{i}");
        let org = create_org(&a, &format!("Racer {i}"), Some(&creator))
            .await
            .id;
        let other = format!("user_o{i}");
        add_member(&b, &org, &other, "org:member").await;
        users.push((creator, other));
    }
    // Every organization becomes billable through activity recorded on both
    // replicas at once.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (creator, other)) in users.into_iter().enumerate() {
        let mut client = if i % 2 == 0 {
            billing_writer(&a)
        } else {
            billing_writer(&b)
        };
        tasks.spawn(async move {
            client
                .record_activity(pb::RecordActivityRequest {
                    events: [creator, other]
                        .into_iter()
                        .map(|user_id| pb::ActivityEvent {
                            user_id,
                            occur_time: None,
                        })
                        .collect(),
                })
                .await
                .expect("activity")
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let totals = summary(&a).await;
    assert_eq!(totals.billable_organizations, 8);
    assert_eq!(totals.amount_due.as_ref().unwrap().units, 7);
    let budget = totals.budget.expect("the budget is shown");
    assert_eq!((budget.currency_code.as_str(), budget.units), ("USD", 4));
    let projected = totals.projected_amount_due.expect("projected");
    assert!(projected.units >= 7, "{projected:?}");

    // The log holds each threshold once, with what was due.
    let crossed = a
        .events(Some(token("svc-mirror", "orgs:read")))
        .list_events(pb::ListEventsRequest {
            types: vec!["billing.budget_threshold_crossed".into()],
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let mut percents: BTreeMap<i32, i64> = BTreeMap::new();
    for event in &crossed {
        let Some(pb::event::Resource::Budget(alert)) = &event.resource else {
            panic!("{event:?} carries the budget");
        };
        assert_eq!(alert.budget.as_ref().unwrap().units, 4);
        let due = alert.amount_due.as_ref().unwrap().units;
        assert!(i64::from(alert.percent) * 4 <= due * 100, "{alert:?}");
        assert!(percents.insert(alert.percent, due).is_none(), "{crossed:?}");
    }
    assert_eq!(
        percents.keys().copied().collect::<Vec<_>>(),
        vec![50, 80, 100]
    );

    // The billing watch streams them too, once each.
    let mut streamed = Vec::new();
    let mut billable = 0;
    while billable < 8 || streamed.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("the watch delivers")
            .expect("stream")
            .expect("message");
        match message.event {
            Some(Event::BudgetThresholdCrossed(alert)) => streamed.push(alert.percent),
            Some(Event::OrganizationBecameBillable(_)) => billable += 1,
            _ => {}
        }
    }
    streamed.sort_unstable();
    assert_eq!(streamed, vec![50, 80, 100]);
}

#[tokio::test]
async fn enforce_mode_refuses_exactly_the_calls_whose_preview_exceeds_the_budget() {
    // Budget 200 cents, one free organization, 100 cents each after it: the
    // 2nd and 3rd billable organizations fit, the 4th would exceed.
    let app = TestApp::spawn_with(budgeted(200, true)).await;
    let users: Vec<String> = (0..12).map(|i| format!("user_{i:02}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    record(&app, &refs).await;
    let mut outcomes = Vec::new();
    for i in 0..5 {
        let org = create_org(&app, &format!("Guarded {i}"), Some(&users[2 * i]))
            .await
            .id;
        let request = |validate_only| pb::CreateMembershipRequest {
            organization_id: org.clone(),
            user_id: users[2 * i + 1].clone(),
            validate_only,
            ..Default::default()
        };
        let preview = app.admin().create_membership(request(true)).await;
        let real = app.admin().create_membership(request(false)).await;
        let says =
            |result: &Result<tonic::Response<pb::CreateMembershipResponse>, tonic::Status>| {
                match result {
                    Ok(answer) => Ok(answer.get_ref().billing_impact.clone()),
                    Err(status) => Err((status.code(), reason(status))),
                }
            };
        assert_eq!(says(&preview), says(&real), "organization {i}");
        outcomes.push(real.is_ok());
        if let Err(status) = &real {
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(reason(status), "BUDGET_EXCEEDED");
            // Nothing was written.
            assert_eq!(usage(&app, &org).await.active_member_count, 1);
        }
    }
    assert_eq!(outcomes, vec![true, true, true, false, false]);
    assert_eq!(summary(&app).await.amount_due.unwrap().units, 2);

    // Activity is never refused, even when it takes the bill past the
    // budget: a member added while inactive, then active.
    let org = create_org(&app, "Over by activity", Some("user_00"))
        .await
        .id;
    add_member(&app, &org, "user_quiet", "org:member").await;
    record(&app, &["user_quiet"]).await;
    assert!(usage(&app, &org).await.billable);
    assert_eq!(summary(&app).await.amount_due.unwrap().units, 3);
}

#[tokio::test]
async fn onboarding_counts_only_active_memberships_of_active_organizations() {
    let app = TestApp::spawn().await;
    let mut platform = app.invitations(Some(token("svc-admin", "orgs:admin")));
    let parked = create_org(&app, "Parked", Some("user_owner")).await.id;
    let suggesting = create_org(&app, "Suggesting", Some("user_owner")).await.id;
    platform
        .create_domain(pb::CreateDomainRequest {
            organization_id: suggesting.clone(),
            name: "pat.example".into(),
            enrollment_mode: pb::EnrollmentMode::AutomaticSuggestion as i32,
            verified: true,
            ..Default::default()
        })
        .await
        .unwrap();
    add_member(&app, &parked, "user_pat", "org:member").await;
    let resolve = || async {
        app.invitations(Some(verified_token("user_pat", "pat@pat.example")))
            .resolve_onboarding(pb::ResolveOnboardingRequest {
                user_id: "user_pat".into(),
                email_address: "pat@pat.example".into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let active = resolve().await;
    assert!(!active.requires_organization);
    assert_eq!(active.suggestions.len(), 1);

    // Its only membership deactivated: it has nowhere to work.
    deactivate_member(&app, &parked, "user_pat").await.unwrap();
    let deactivated_member = resolve().await;
    assert!(deactivated_member.requires_organization);
    assert_eq!(deactivated_member.memberships.len(), 1, "history is kept");
    reactivate_member(&app, &parked, "user_pat").await.unwrap();
    assert!(!resolve().await.requires_organization);

    // The organization deactivated instead: the same, and a deactivated
    // organization is never suggested.
    for organization in [&parked, &suggesting] {
        app.admin()
            .deactivate_organization(pb::DeactivateOrganizationRequest {
                organization_id: organization.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let parked_organization = resolve().await;
    assert!(parked_organization.requires_organization);
    assert!(parked_organization.suggestions.is_empty());
}
