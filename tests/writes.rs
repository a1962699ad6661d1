//! The write path under concurrency: calls that share a batch (SQLite's group
//! commit) or commit side by side (PostgreSQL, positions given after commit)
//! keep their own outcomes, and the log stays exactly-once and in commit
//! order for watches on every replica.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use orgs::domain::time::Clock;
use orgs::proto::v1 as pb;
use pb::watch_billable_organizations_response::Event as BillingEvent;
use pb::watch_events_response::Message;
use tonic::{Code, Streaming};

const PATIENCE: Duration = Duration::from_secs(30);

fn quick_checkpoints(config: &mut orgs::ServeConfig) {
    config.watch_checkpoint_interval_secs = 1;
}

async fn list_log(app: &TestApp) -> Vec<pb::Event> {
    let mut client = app.events(Some(token("svc-list", "orgs:read")));
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_events(pb::ListEventsRequest {
                page_size: 100,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("list events")
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn calls_written_together_keep_their_own_outcomes() {
    let app = TestApp::spawn().await;
    let first = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Holder".into(),
            created_by: "user_holder".into(),
            external_id: "shared".into(),
            ..Default::default()
        })
        .await
        .expect("the holder of the shared external id")
        .into_inner()
        .organization
        .expect("organization");
    let mut calls = Vec::new();
    for i in 0..60 {
        let mut admin = app.admin();
        calls.push(tokio::spawn(async move {
            // A third commit, a third claim an external id another
            // organization has, a third are previews that write everything
            // and roll it back.
            let (external_id, validate_only) = match i % 3 {
                0 => (format!("ext-{i}"), false),
                1 => ("shared".to_string(), false),
                _ => (format!("preview-{i}"), true),
            };
            let result = admin
                .create_organization(pb::CreateOrganizationRequest {
                    name: format!("Batch {i}"),
                    created_by: format!("user_batch_{i}"),
                    external_id,
                    validate_only,
                    request_id: format!("batch-{i}"),
                    ..Default::default()
                })
                .await;
            (i, result)
        }));
    }
    let mut created = HashSet::from([first.id]);
    for call in calls {
        let (i, result) = call.await.expect("task");
        match (i % 3, result) {
            (0, Ok(answer)) => {
                created.insert(answer.into_inner().organization.expect("organization").id);
            }
            (1, Err(status)) => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                assert_eq!(reason(&status), "EXTERNAL_ID_TAKEN");
            }
            (2, Ok(answer)) => {
                let organization = answer.into_inner().organization.expect("preview");
                assert!(!organization.id.is_empty());
            }
            (kind, result) => panic!("call {i} (kind {kind}): {result:?}"),
        }
    }
    assert_eq!(created.len(), 21);

    let listed = app
        .admin()
        .list_organizations(pb::ListOrganizationsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total_size, 21, "previews and refusals left nothing");
    for organization in &listed.organizations {
        assert!(created.contains(&organization.id));
        assert_eq!(organization.members_count, 1);
    }
    // One organization.created and one membership.created per commit, in
    // that order for each organization, each once.
    let log = list_log(&app).await;
    assert_eq!(log.len(), 42, "{log:#?}");
    let ids: HashSet<&str> = log.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids.len(), log.len());
    let mut organization_seen = HashSet::new();
    for event in &log {
        match event.r#type.as_str() {
            "organization.created" => {
                assert!(organization_seen.insert(event.organization_id.clone()));
            }
            "membership.created" => {
                assert!(organization_seen.contains(&event.organization_id));
            }
            other => panic!("unexpected {other}"),
        }
    }

    // A retry of a committed call answers as it did; of a refused one, runs
    // afresh and is refused again.
    let retried = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Batch 3".into(),
            created_by: "user_batch_3".into(),
            external_id: "ext-3".into(),
            request_id: "batch-3".into(),
            ..Default::default()
        })
        .await
        .expect("replayed")
        .into_inner();
    assert!(created.contains(&retried.organization.expect("organization").id));
    app.shutdown().await;
}

/// The log's positions run on without a gap or a repeat across batches,
/// across changes refused or previewed in the middle of a batch (SQLite rolls
/// them back to their savepoints) and across a restart (the SQLite writer
/// numbers a batch's events itself and stores the counter once per batch).
#[tokio::test]
async fn log_positions_run_on_across_batches_refusals_and_restarts() {
    let url = fresh_database_url().await;
    let mut kept = 0;
    for round in 0..2 {
        let app = TestApp::spawn_on(&url, |_| {}).await;
        let mut calls = Vec::new();
        for i in 0..30 {
            let mut admin = app.admin();
            calls.push(tokio::spawn(async move {
                // A third commit, a third take a slug the first call of the
                // round holds (or may lose it to it), a third are previews.
                let (slug, validate_only) = match i % 3 {
                    0 => (format!("pos-{round}-{i}"), false),
                    1 => (format!("pos-{round}-0"), false),
                    _ => (format!("pos-{round}-preview-{i}"), true),
                };
                admin
                    .create_organization(pb::CreateOrganizationRequest {
                        name: format!("Positions {round} {i}"),
                        slug,
                        created_by: format!("user_pos_{round}_{i}"),
                        validate_only,
                        ..Default::default()
                    })
                    .await
                    .map(|answer| (validate_only, answer))
            }));
        }
        for call in calls {
            match call.await.expect("task") {
                Ok((false, _)) => kept += 1,
                Ok((true, _)) => {}
                Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            }
        }
        // Each kept creation logs the organization and its creator's
        // membership; the listing waits until every event has its position.
        assert_eq!(list_log(&app).await.len(), 2 * kept, "round {round}");
        app.shutdown().await;
    }
    // Nine creations with slugs of their own a round, and one that holds
    // the shared slug.
    assert_eq!(kept, 20);

    use sea_orm::ConnectionTrait;
    let db = orgs::store::Db::connect(&url, 1).await.expect("connect");
    let positions: Vec<i64> = db
        .conn()
        .query_all_raw(sea_orm::Statement::from_string(
            db.backend(),
            "SELECT seq FROM events ORDER BY seq",
        ))
        .await
        .expect("positions")
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0).expect("seq"))
        .collect();
    if backend_url().is_some() {
        // PostgreSQL: positions come from a sequence, taken by the events'
        // own transactions; one that failed after taking its position would
        // leave a gap, which readers skip.
        assert_eq!(positions.len(), 2 * kept);
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
        db.close().await;
        return;
    }
    let expected: Vec<i64> = (1..=2 * kept as i64).collect();
    assert_eq!(positions, expected);
    let counter = db
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(
            db.backend(),
            "SELECT last_seq FROM event_sequence WHERE id = 1",
        ))
        .await
        .expect("counter")
        .expect("the counter row")
        .try_get_by_index::<i64>(0)
        .expect("last_seq");
    assert_eq!(counter, 2 * kept as i64);
    db.close().await;
}

/// SQLite: the batches' commits do not copy the write-ahead log back into
/// the database file (the callers of a batch would wait for it); a task
/// beside the writer does, while the server runs, long before the log holds
/// the pages at which a commit would still do it itself.
#[tokio::test]
async fn the_log_is_copied_into_the_database_file_beside_the_writer() {
    if backend_url().is_some() {
        return;
    }
    let app = TestApp::spawn().await;
    let file = app
        .database_url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .map(std::path::PathBuf::from)
        .expect("an SQLite file");
    let size = || std::fs::metadata(&file).map(|meta| meta.len()).unwrap_or(0);
    let before = size();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut created = 0;
    // Each creation commits; each commit is followed by a checkpoint. The
    // migrations' and these pages are far fewer than the backstop.
    while size() <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database file stayed at {before} bytes after {created} commits"
        );
        create_org(
            &app,
            &format!("Checkpointed {created}"),
            Some(&format!("user_ckpt_{created}")),
        )
        .await;
        created += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(created < 100, "the file grew only after {created} commits");
    // And the metrics tell what the checkpoints found.
    let (_, metrics) = scrape(app.metrics_addr).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(value("orgs_sqlite_checkpoints_total") >= 1.0);
    let pages = value("orgs_sqlite_wal_pages");
    assert!(pages >= 1.0);
    assert!(value("orgs_sqlite_wal_uncopied_pages") <= pages);
    assert_eq!(value("orgs_sqlite_checkpoint_failures_total"), 0.0);
    app.shutdown().await;
}

async fn next_event(stream: &mut Streaming<pb::WatchEventsResponse>) -> Option<pb::Event> {
    let message = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a message in time")
        .expect("no error")
        .expect("the stream goes on");
    match message.message {
        Some(Message::Event(event)) => Some(event),
        Some(Message::Checkpoint(_)) => None,
        None => panic!("an empty message"),
    }
}

async fn next_billing(
    stream: &mut Streaming<pb::WatchBillableOrganizationsResponse>,
) -> Option<BillingEvent> {
    let message = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a message in time")
        .expect("no error")
        .expect("the stream goes on");
    match message.event {
        Some(BillingEvent::Checkpoint(_)) => None,
        other => other,
    }
}

/// Organizations each with a creator and a second member, both then active:
/// every one becomes billable.
async fn workload(app: &TestApp, replica: usize, task: usize, count: usize) -> Vec<String> {
    let mut organizations = Vec::new();
    for n in 0..count {
        let a = format!("user_{replica}_{task}_{n}_a");
        let b = format!("user_{replica}_{task}_{n}_b");
        let organization = create_org(app, &format!("Org {replica} {task} {n}"), Some(&a)).await;
        add_member(app, &organization.id, &b, "org:member").await;
        app.billing(Some(token("svc-activity", "billing:write")))
            .record_activity(pb::RecordActivityRequest {
                events: [a, b]
                    .into_iter()
                    .map(|user_id| pb::ActivityEvent {
                        user_id,
                        occur_time: None,
                    })
                    .collect(),
            })
            .await
            .expect("record activity");
        organizations.push(organization.id);
    }
    organizations
}

#[tokio::test]
async fn concurrent_writers_on_two_replicas_are_watched_exactly_once_in_commit_order() {
    let first = TestApp::spawn_with(quick_checkpoints).await;
    let second = TestApp::spawn_on(&first.database_url, quick_checkpoints).await;
    second.clock.set(first.clock.now());
    let replicas = [&first, &second];

    // Watches on both replicas, open before any write (each starts with a
    // checkpoint once it is open).
    let mut event_watches = Vec::new();
    let mut billing_watches = Vec::new();
    for (n, app) in replicas.iter().enumerate() {
        let mut stream = app
            .events(Some(token(&format!("svc-watch-{n}"), "orgs:read")))
            .watch_events(pb::WatchEventsRequest::default())
            .await
            .expect("watch events")
            .into_inner();
        assert!(
            next_event(&mut stream).await.is_none(),
            "a checkpoint first"
        );
        event_watches.push(stream);
        let mut stream = app
            .billing(Some(token(&format!("svc-billing-{n}"), "billing:read")))
            .watch_billable_organizations(pb::WatchBillableOrganizationsRequest::default())
            .await
            .expect("watch billable")
            .into_inner();
        assert!(
            next_billing(&mut stream).await.is_none(),
            "a checkpoint first"
        );
        billing_watches.push(stream);
    }

    const TASKS: usize = 6;
    const PER_TASK: usize = 5;
    let mut tasks = Vec::new();
    for (replica, app) in replicas.iter().enumerate() {
        for task in 0..TASKS {
            tasks.push(workload(app, replica, task, PER_TASK));
        }
    }
    let organizations: Vec<String> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(organizations.len(), 2 * TASKS * PER_TASK);

    // The log: every event once.
    let log = list_log(&first).await;
    let ids: Vec<&str> = log.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no duplicate"
    );
    // In commit order: what a change read was committed before it, so its
    // event comes after the events of what it read.
    let mut stage: HashMap<&str, usize> = HashMap::new();
    for event in &log {
        let organization = event.organization_id.as_str();
        let at = stage.entry(organization).or_default();
        match event.r#type.as_str() {
            "organization.created" => assert_eq!(*at, 0, "{organization} created first"),
            "membership.created" => assert!(*at >= 1, "{organization}: member before org"),
            "billing.organization_became_billable" => {
                assert_eq!(*at, 3, "{organization}: billable after both members")
            }
            "billing.period_started" => continue,
            other => panic!("unexpected {other}"),
        }
        *at += 1;
    }
    for organization in &organizations {
        assert_eq!(stage.get(organization.as_str()), Some(&4), "{organization}");
    }

    // Each watch, on either replica, delivered exactly the log, then nothing.
    for (n, stream) in event_watches.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < log.len() {
            if let Some(event) = next_event(stream).await {
                seen.push(event.id);
            }
        }
        assert_eq!(seen, ids, "the watch on replica {n}");
        assert!(
            next_event(stream).await.is_none(),
            "nothing more on replica {n}"
        );
    }
    let billable: Vec<&str> = log
        .iter()
        .filter(|event| event.r#type == "billing.organization_became_billable")
        .map(|event| event.organization_id.as_str())
        .collect();
    assert_eq!(billable.len(), organizations.len());
    for (n, stream) in billing_watches.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < billable.len() {
            match next_billing(stream).await {
                Some(BillingEvent::OrganizationBecameBillable(usage)) => {
                    seen.push(usage.organization_id)
                }
                Some(BillingEvent::PeriodStarted(_)) | None => {}
                Some(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, billable, "billable watch on replica {n}");
        assert!(
            next_billing(stream).await.is_none(),
            "nothing more on replica {n}"
        );
    }
    second.shutdown().await;
    first.shutdown().await;
}

/// The events of a new membership (CreateMembership) and of a new
/// organization with its creator (CreateOrganization) tell them as they were
/// answered, once each and in order, whether the statement that adds the
/// member writes them (PostgreSQL, a user not active in the period) or the
/// change appends them at its end (a user active already, and SQLite); the
/// first of a call is its audit entry; and every stored payload is in the
/// one form payloads have (`serde_json`'s: keys in order, no spaces).
#[tokio::test]
async fn new_members_events_tell_what_was_answered_however_they_are_written() {
    use sea_orm::{EntityTrait, QueryOrder};

    let app = TestApp::spawn().await;
    let mut admin = app.admin();
    record(&app, &["user_active_first", "user_active_creator"]).await;
    let mut organizations = HashMap::new();
    let mut memberships = HashMap::new();
    for creator in ["user_new_creator", "user_active_creator"] {
        let created = admin
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("Made by {creator}"),
                created_by: creator.into(),
                ..Default::default()
            })
            .await
            .expect("create organization")
            .into_inner();
        let organization = created.organization.expect("organization");
        let membership = created.membership.expect("the creator's membership");
        assert!(membership.permissions.len() > 1, "{membership:?}");
        organizations.insert(organization.id.clone(), organization);
        memberships.insert(membership.id.clone(), membership);
    }
    let organization_id = organizations.keys().next().expect("one").clone();
    // The creator role grants several permissions, the default one.
    for (user, role) in [
        ("user_not_seen_yet", "org:admin"),
        ("user_active_first", ""),
    ] {
        let membership = add_member(&app, &organization_id, user, role).await;
        assert!(!membership.permissions.is_empty(), "{membership:?}");
        memberships.insert(membership.id.clone(), membership);
    }

    let log: Vec<pb::Event> = list_log(&app)
        .await
        .into_iter()
        .filter(|event| {
            ["organization.created", "membership.created"].contains(&event.r#type.as_str())
        })
        .collect();
    let mut told_organizations = 0;
    let mut told_memberships = 0;
    for (n, event) in log.iter().enumerate() {
        match &event.resource {
            Some(pb::event::Resource::Organization(organization)) => {
                assert_eq!(event.r#type, "organization.created");
                assert_eq!(Some(organization), organizations.get(&organization.id));
                // Its creator's membership comes right after it.
                let next = log.get(n + 1).and_then(|next| next.resource.clone());
                assert!(
                    matches!(&next, Some(pb::event::Resource::Membership(m)) if m.organization_id == organization.id),
                    "{next:?}"
                );
                told_organizations += 1;
            }
            Some(pb::event::Resource::Membership(membership)) => {
                assert_eq!(event.r#type, "membership.created");
                assert_eq!(Some(membership), memberships.get(&membership.id));
                told_memberships += 1;
            }
            other => panic!("a {} event tells {other:?}", event.r#type),
        }
    }
    assert_eq!((told_organizations, told_memberships), (2, 4), "{log:?}");

    let db = orgs::store::Db::connect(&app.database_url, 1)
        .await
        .expect("connect");
    let stored = orgs::store::entity::events::Entity::find()
        .order_by_asc(orgs::store::entity::events::Column::Seq)
        .all(db.conn())
        .await
        .expect("the events");
    let mut audit_entries = HashMap::new();
    for event in &stored {
        let parsed: serde_json::Value = serde_json::from_str(&event.payload).expect("JSON");
        assert_eq!(event.payload, parsed.to_string());
        if event.audit {
            *audit_entries.entry(event.kind.as_str()).or_insert(0) += 1;
        }
    }
    // One entry per call: the organization's for a creation, the
    // membership's for CreateMembership.
    assert_eq!(
        audit_entries.get("organization.created"),
        Some(&2),
        "{stored:?}"
    );
    assert_eq!(
        audit_entries.get("membership.created"),
        Some(&2),
        "{stored:?}"
    );
    db.close().await;
    app.shutdown().await;
}
