//! Pruning of the event log: old events go in the background, a watch that
//! was open across it and one resumed above the watermark see every later
//! event exactly once, and a cursor below the watermark is refused.

mod common;

use std::time::Duration;

use common::*;
use orgs::proto::v1 as pb;
use pb::watch_events_response::Message;
use tonic::{Code, Streaming};

const PATIENCE: Duration = Duration::from_secs(30);

fn reader(app: &TestApp) -> Events {
    app.events(Some(token("svc-mirror", "orgs:read")))
}

async fn watch(
    app: &TestApp,
    start_cursor: &str,
) -> Result<Streaming<pb::WatchEventsResponse>, tonic::Status> {
    reader(app)
        .watch_events(pb::WatchEventsRequest {
            start_cursor: start_cursor.into(),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner())
}

/// The next `count` events of a stream (checkpoints skipped): their ids,
/// cursors and organizations.
async fn events(stream: &mut Streaming<pb::WatchEventsResponse>, count: usize) -> Vec<pb::Event> {
    let mut events = Vec::new();
    while events.len() < count {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an event in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(Message::Event(event)) = message.message {
            events.push(event);
        }
    }
    events
}

/// Every event still in the log, oldest first.
async fn listed(app: &TestApp) -> Vec<pb::Event> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = reader(app)
            .list_events(pb::ListEventsRequest {
                page_size: 100,
                page_token,
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
async fn pruning_keeps_watches_exactly_once_and_expires_cursors_below_it() {
    let app = TestApp::spawn_with(|config| {
        config.event_retention_days = 1;
        config.event_prune_interval_secs = 1;
        config.watch_checkpoint_interval_secs = 1;
    })
    .await;
    let mut open_watch = watch(&app, "").await.expect("watch");
    let old: Vec<_> = [
        create_org(&app, "Old One", Some("user_a")).await,
        create_org(&app, "Old Two", Some("user_b")).await,
    ]
    .into_iter()
    .map(|organization| organization.id)
    .collect();
    let old_events = listed(&app).await;
    assert!(old_events.len() >= 2);
    let first_cursor = old_events[0].cursor.clone();
    let last_old_cursor = old_events.last().expect("events").cursor.clone();

    // Two days later the old events are past the retention.
    app.clock.advance(chrono::Duration::days(2));
    let new = create_org(&app, "New One", Some("user_c")).await;
    let mut waited = Duration::ZERO;
    while listed(&app)
        .await
        .iter()
        .any(|e| old.contains(&e.organization_id))
    {
        assert!(waited < PATIENCE, "the old events were never pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    let remaining = listed(&app).await;
    assert!(
        remaining.iter().all(|e| e.organization_id == new.id),
        "{remaining:?}"
    );

    // The watch open across the pruning saw every event once, in order.
    let seen = events(&mut open_watch, old_events.len() + remaining.len()).await;
    let ids: Vec<_> = seen.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<_> = old_events
        .iter()
        .chain(&remaining)
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(ids, expected);

    // Resumed at the watermark: exactly the later events.
    let mut resumed = watch(&app, &last_old_cursor)
        .await
        .expect("resume at the watermark");
    let seen = events(&mut resumed, remaining.len()).await;
    let ids: Vec<_> = seen.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<_> = remaining.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, expected);
    create_org(&app, "New Two", None).await;
    let next = events(&mut resumed, 1).await;
    assert_ne!(next[0].organization_id, new.id);

    // Below the watermark: refused.
    let refused = watch(&app, &first_cursor).await;
    let status = assert_status(refused.map(|_| ()), Code::OutOfRange, "CURSOR_EXPIRED");
    assert!(!status.message().is_empty());
}
