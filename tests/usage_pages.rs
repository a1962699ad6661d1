//! Memory bounded whatever callers send, for billing reads: the active member
//! ids of an organization are paged, every other message carries at most the
//! first 100 of them, and a watch's initial state is streamed a page at a
//! time, exactly once with the live stream that follows. Through the
//! generated clients against a real server, on SQLite or (with
//! ORGS_TEST_DATABASE_URL) PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use orgs::proto::v1 as pb;
use orgs::proto::v1::billing_service_client::BillingServiceClient;
use pb::watch_billable_organizations_response::Event;
use tonic::Code;
use tonic::transport::Channel;

/// What a message other than GetOrganizationUsage carries at most.
const IDS_MAX: usize = 100;
const LIVENESS: Duration = Duration::from_secs(10);
/// Organizations billable before the watch of the initial-state test opens.
const EARLY: usize = 250;

fn reader(app: &TestApp) -> Billing {
    app.billing(Some(token("svc-finance", "billing:read")))
}

async fn usage_page(
    app: &TestApp,
    organization_id: &str,
    period: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::GetOrganizationUsageResponse, tonic::Status> {
    reader(app)
        .get_organization_usage(pb::GetOrganizationUsageRequest {
            organization_id: organization_id.into(),
            period: period.into(),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// An organization of `owner` with `members` added, none of them active yet.
async fn org_with(app: &TestApp, name: &str, owner: &str, members: &[String]) -> String {
    let organization = create_org(app, name, Some(owner)).await;
    for member in members {
        add_member(app, &organization.id, member, "org:member").await;
    }
    organization.id
}

async fn next_watch_message(
    stream: &mut tonic::Streaming<pb::WatchBillableOrganizationsResponse>,
) -> pb::WatchBillableOrganizationsResponse {
    tokio::time::timeout(LIVENESS, stream.message())
        .await
        .expect("a watch message in time")
        .expect("the watch goes on")
        .expect("the watch is open")
}

#[tokio::test]
async fn active_member_ids_are_paged_and_bounded_everywhere_else() {
    let app = TestApp::spawn().await;
    let owner = "user_owner".to_string();
    let members: Vec<String> = (0..259).map(|i| format!("user_m{i:03}")).collect();
    let org = org_with(&app, "Big", &owner, &members).await;
    let other = org_with(&app, "Other", "user_other", &[]).await;

    // Live streams opened before the organization becomes billable.
    let mut watch = reader(&app)
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let mut events = app
        .events(Some(token("svc-mirror", "orgs:admin")))
        .watch_events(pb::WatchEventsRequest {
            types: vec!["billing.organization_became_billable".into()],
            ..Default::default()
        })
        .await
        .expect("watch events")
        .into_inner();

    let mut everyone: Vec<String> = members.clone();
    everyone.push(owner.clone());
    everyone.sort();
    record(&app, &everyone).await;
    let first_ids: Vec<String> = everyone[..IDS_MAX].to_vec();

    // GetOrganizationUsage pages every id once, in order; the count is whole
    // on every page.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    let mut tokens = Vec::new();
    loop {
        let page = usage_page(&app, &org, "", 100, &page_token)
            .await
            .expect("a page of usage");
        let usage = page.usage.expect("usage");
        assert_eq!(
            usage.active_member_count, 260,
            "the whole count on every page"
        );
        assert!(usage.billable);
        assert!(usage.active_member_user_ids.len() <= 100);
        seen.extend(usage.active_member_user_ids);
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, everyone, "each id once, ordered by user id");

    // The default page is 50 ids; a page larger than the maximum is lowered.
    let default = usage_page(&app, &org, "", 0, "").await.expect("default");
    assert_eq!(
        default.usage.expect("usage").active_member_user_ids.len(),
        50
    );
    let largest = usage_page(&app, &org, "", 10_000, "").await.expect("max");
    assert_eq!(
        largest.usage.expect("usage").active_member_user_ids.len(),
        260
    );
    assert!(largest.next_page_token.is_empty());

    // A token is bound to its organization and period.
    let token = &tokens[0];
    assert_invalid(usage_page(&app, &other, "", 100, token).await, "page_token");
    let period = usage_page(&app, &org, "", 1, "")
        .await
        .expect("usage")
        .usage
        .expect("usage")
        .period;
    let (year, month) = period.split_once('-').expect("YYYY-MM");
    let earlier = if month == "01" {
        format!("{}-12", year.parse::<i32>().expect("year") - 1)
    } else {
        format!("{year}-{:02}", month.parse::<u32>().expect("month") - 1)
    };
    assert_invalid(
        usage_page(&app, &org, &earlier, 100, token).await,
        "page_token",
    );
    assert_invalid(
        usage_page(&app, &org, "", 100, "not-a-token").await,
        "page_token",
    );
    assert_invalid(usage_page(&app, &org, "", -1, "").await, "page_size");
    // The same token answers its own query.
    assert!(usage_page(&app, &org, &period, 100, token).await.is_ok());

    // Listings carry the first 100 ids at most.
    let listed = reader(&app)
        .list_billable_organizations(pb::ListBillableOrganizationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.usages.len(), 1);
    assert_eq!(listed.usages[0].active_member_count, 260);
    assert_eq!(listed.usages[0].active_member_user_ids, first_ids);

    // So does the live watch message of the transition ...
    let live = loop {
        match next_watch_message(&mut watch).await.event {
            Some(Event::OrganizationBecameBillable(usage)) => break usage,
            Some(Event::PeriodStarted(_) | Event::Checkpoint(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(live.organization_id, org);
    assert_eq!(live.active_member_count, 260);
    assert_eq!(live.active_member_user_ids, first_ids);

    // ... and its event.
    let event = loop {
        let message = tokio::time::timeout(LIVENESS, events.message())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("the stream is open");
        if let Some(pb::watch_events_response::Message::Event(event)) = message.message {
            break event;
        }
    };
    let Some(pb::event::Resource::Usage(usage)) = event.resource else {
        panic!("a usage event, got {event:?}");
    };
    assert_eq!(usage.active_member_count, 260);
    assert_eq!(usage.active_member_user_ids, first_ids);

    // And the initial state of a watch opened now.
    let mut initial = reader(&app)
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
            send_initial_state: true,
            ..Default::default()
        })
        .await
        .expect("watch with initial state")
        .into_inner();
    match next_watch_message(&mut initial).await.event {
        Some(Event::OrganizationBecameBillable(usage)) => {
            assert_eq!(usage.active_member_count, 260);
            assert_eq!(usage.active_member_user_ids, first_ids);
        }
        other => panic!("the initial state first, got {other:?}"),
    }
}

/// A billing client whose connection accepts only a few kilobytes unread, so
/// a client that does not read holds the server's stream back at once.
async fn slow_reader(app: &TestApp) -> Billing {
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .initial_stream_window_size(Some(2048))
        .initial_connection_window_size(Some(2048))
        .connect()
        .await
        .expect("connect");
    BillingServiceClient::with_interceptor(channel, Bearer::new(token("svc-slow", "billing:read")))
}

#[tokio::test]
async fn initial_state_is_streamed_in_pages_exactly_once_with_the_live_stream() {
    let app = TestApp::spawn_with(|config| config.rules.max_organizations_per_user = 1000).await;
    // 250 organizations become billable together (pages of the initial
    // state: more than the server buffers for a client that does not read,
    // so some pages are read after the client stalls); 20 more and one last
    // one are ready to.
    let pair = |name: &str| (format!("user_{name}_a"), format!("user_{name}_b"));
    let (a, b) = pair("early");
    let mut early = BTreeSet::new();
    for i in 0..EARLY {
        early.insert(org_with(&app, &format!("Early {i}"), &a, std::slice::from_ref(&b)).await);
    }
    let (c, d) = pair("during");
    let mut during = BTreeSet::new();
    for i in 0..20 {
        during.insert(org_with(&app, &format!("During {i}"), &c, std::slice::from_ref(&d)).await);
    }
    let (e, f) = pair("last");
    let last = org_with(&app, "Last", &e, std::slice::from_ref(&f)).await;
    record(&app, &[a, b]).await;

    let mut watch = slow_reader(&app)
        .await
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
            send_initial_state: true,
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut initial = BTreeSet::new();
    let first = next_watch_message(&mut watch).await;
    let Some(Event::OrganizationBecameBillable(usage)) = first.event else {
        panic!("the initial state first, got {first:?}");
    };
    *seen.entry(usage.organization_id.clone()).or_default() += 1;
    initial.insert(usage.organization_id);

    // The stream is held back inside its initial state: more organizations
    // become billable now, after its starting position.
    record(&app, &[c, d]).await;

    let mut live = BTreeSet::new();
    let mut in_initial_state = true;
    while !seen.contains_key(&last) {
        let message = next_watch_message(&mut watch).await;
        match message.event {
            Some(Event::OrganizationBecameBillable(usage)) => {
                *seen.entry(usage.organization_id.clone()).or_default() += 1;
                if in_initial_state {
                    initial.insert(usage.organization_id);
                } else {
                    live.insert(usage.organization_id);
                }
            }
            Some(Event::Checkpoint(_)) if in_initial_state => {
                in_initial_state = false;
                // Everything else is live from here; the last organization
                // marks the end of what this test waits for.
                record(&app, &[e.clone(), f.clone()]).await;
            }
            Some(Event::Checkpoint(_) | Event::PeriodStarted(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let odd: Vec<_> = initial.symmetric_difference(&early).collect();
    assert!(
        odd.is_empty(),
        "the initial state is what was billable at the start; differs by {odd:?}"
    );
    let mut expected_live = during.clone();
    expected_live.insert(last.clone());
    let odd: Vec<_> = live.symmetric_difference(&expected_live).collect();
    assert!(
        odd.is_empty(),
        "later transitions arrive live; differs by {odd:?}"
    );
    let repeated: Vec<_> = seen.iter().filter(|(_, count)| **count != 1).collect();
    assert!(repeated.is_empty(), "each organization once: {repeated:?}");
    assert_eq!(seen.len(), EARLY + 21);
}

#[tokio::test]
async fn an_organization_without_active_members_has_an_empty_last_page() {
    let app = TestApp::spawn().await;
    let org = org_with(&app, "Quiet", "user_quiet", &[]).await;
    let page = usage_page(&app, &org, "", 10, "").await.expect("usage");
    let usage = page.usage.expect("usage");
    assert_eq!(usage.active_member_count, 0);
    assert!(usage.active_member_user_ids.is_empty());
    assert!(page.next_page_token.is_empty());
    let status = usage_page(&app, "org_01JZZZZZZZZZZZZZZZZZZZZZZZ", "", 10, "")
        .await
        .expect_err("no such organization");
    assert_eq!(status.code(), Code::NotFound);
}
