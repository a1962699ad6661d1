//! The example consumer `examples/mirror_memberships.rs`, run as a child
//! process against a real server: killed (SIGKILL) mid-stream while writes go
//! on, restarted, and finally its mirror equals `ListMemberships` of every
//! organization.
//!
//! `cargo test` builds the examples; `cargo test --test mirror` alone does
//! not (build it with `cargo build --example mirror_memberships`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use orgs::proto::v1 as pb;
use prost_types::FieldMask;

type Mirror = BTreeMap<String, BTreeMap<String, String>>;

/// The compiled example, beside the test executable's directory
/// (`target/debug/deps/..` → `target/debug/examples/`).
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let debug = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = debug.join("examples").join(format!(
        "mirror_memberships{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test` (which builds the examples) or `cargo build --example mirror_memberships`",
        path.display()
    );
    path
}

/// The running example; killed when dropped, so a failing test leaves no
/// process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SIGKILL: no chance to tidy up.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(app: &TestApp, state: &Path) -> Running {
    let child = Command::new(example())
        .arg(format!("http://{}", app.addr))
        .arg(token("svc-mirror", "orgs:read"))
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example");
    Running(child)
}

fn stop(child: Running) {
    drop(child);
}

/// The cursor the state file resumes from.
fn saved_cursor(state: &Path) -> Option<String> {
    let bytes = std::fs::read(state).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value["cursor"].as_str().map(str::to_string)
}

fn mirror(state: &Path) -> Option<Mirror> {
    let bytes = std::fs::read(state).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("the state file is whole");
    serde_json::from_value(value["memberships"].clone()).ok()
}

/// Every membership of every organization, as the server lists them.
async fn truth(app: &TestApp) -> Mirror {
    let mut admin = app.admin();
    let mut truth = Mirror::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_organizations(pb::ListOrganizationsRequest {
                page_size: 500,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("list organizations")
            .into_inner();
        for organization in page.organizations {
            let memberships = admin
                .list_memberships(pb::ListMembershipsRequest {
                    organization_id: organization.id.clone(),
                    page_size: 500,
                    ..Default::default()
                })
                .await
                .expect("list memberships")
                .into_inner()
                .memberships;
            for m in memberships {
                truth
                    .entry(m.organization_id)
                    .or_default()
                    .insert(m.user_id, m.role);
            }
        }
        if page.next_page_token.is_empty() {
            return truth;
        }
        page_token = page.next_page_token;
    }
}

/// Membership changes: adds, role changes, removals, a whole organization
/// deleted now and then.
async fn write(app: &TestApp, organizations: &mut Vec<String>, step: usize) {
    let organization = organizations[step % organizations.len()].clone();
    let user = format!("user_w{}", step / 3);
    let admin = || app.admin();
    match step % 9 {
        0..=3 => {
            add_member(app, &organization, &format!("user_s{step}"), "org:member").await;
        }
        4 | 5 => {
            admin()
                .update_membership(pb::UpdateMembershipRequest {
                    membership: Some(pb::Membership {
                        organization_id: organization.clone(),
                        user_id: format!("user_s{}", step - 4),
                        role: "org:admin".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec!["role".into()],
                    }),
                })
                .await
                .ok();
        }
        6 | 7 => {
            admin()
                .delete_membership(pb::DeleteMembershipRequest {
                    organization_id: organization.clone(),
                    user_id: format!("user_s{}", step - 6),
                    ..Default::default()
                })
                .await
                .ok();
        }
        _ => {
            admin()
                .delete_organization(pb::DeleteOrganizationRequest {
                    organization_id: organization.clone(),
                    ..Default::default()
                })
                .await
                .expect("delete organization");
            organizations.retain(|o| *o != organization);
            let created = create_org(app, &format!("Org {step}"), Some(&user)).await;
            organizations.push(created.id);
        }
    }
}

/// What the log holds about the memberships where the mirror and the truth
/// differ, and where in the log the saved cursor stands: tells an event
/// missing from the log from one the stream skipped.
async fn diagnose(app: &TestApp, state: &Path, expected: &Mirror) -> String {
    let mirrored = mirror(state).unwrap_or_default();
    let mut differing = BTreeSet::new();
    for (organization, members) in expected.iter().chain(mirrored.iter()) {
        for user in members.keys() {
            let want = expected.get(organization).and_then(|m| m.get(user));
            let have = mirrored.get(organization).and_then(|m| m.get(user));
            if want != have {
                differing.insert((organization.clone(), user.clone()));
            }
        }
    }
    let mut events = app.events(Some(token("svc-mirror", "orgs:read")));
    let log = list_all(&mut events, "", &[], 500).await;
    let cursor = saved_cursor(state).unwrap_or_default();
    let at = log.iter().position(|event| event.cursor == cursor);
    let mut lines = vec![format!(
        "{} events in the log; the saved cursor is at index {at:?}; differing: {differing:?}",
        log.len()
    )];
    for (index, event) in log.iter().enumerate() {
        let user = match &event.resource {
            Some(pb::event::Resource::Membership(m)) => m.user_id.clone(),
            _ => String::new(),
        };
        let touches = differing
            .iter()
            .any(|(o, u)| *o == event.organization_id && (user.is_empty() || *u == user));
        if touches {
            lines.push(format!(
                "  [{index}] {} {} {user}",
                event.r#type, event.organization_id
            ));
        }
    }
    lines.join("\n")
}

#[tokio::test]
async fn the_example_mirror_survives_kills_and_matches_list_memberships() {
    let app = TestApp::spawn_with(|config| config.watch_checkpoint_interval_secs = 1).await;
    let mut organizations = Vec::new();
    for n in 0..3 {
        let organization = create_org(&app, &format!("Org {n}"), Some(&format!("user_c{n}"))).await;
        organizations.push(organization.id);
    }
    let dir = std::env::temp_dir().join(format!("orgs-mirror-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let state = dir.join("mirror.json");

    let mut child = start(&app, &state);
    let mut step = 0;
    for round in 0..3 {
        // Writes while the mirror follows…
        for _ in 0..25 {
            write(&app, &mut organizations, step).await;
            step += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // …killed mid-stream, and restarted after more writes it did not see.
        stop(child);
        for _ in 0..10 {
            write(&app, &mut organizations, step).await;
            step += 1;
        }
        assert!(
            mirror(&state).is_some(),
            "round {round}: the state was saved"
        );
        child = start(&app, &state);
    }
    for _ in 0..20 {
        write(&app, &mut organizations, step).await;
        step += 1;
    }

    let expected = truth(&app).await;
    assert!(expected.len() >= 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if mirror(&state).as_ref() == Some(&expected) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let diagnosis = diagnose(&app, &state, &expected).await;
            panic!(
                "the mirror {:#?} never matched {expected:#?}\n{diagnosis}",
                mirror(&state)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(child);
    std::fs::remove_dir_all(&dir).ok();
    app.shutdown().await;
}
