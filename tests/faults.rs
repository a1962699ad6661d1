//! Database faults: an outage of PostgreSQL under concurrent writers answers
//! only UNAVAILABLE (with `RetryInfo`) and loses nothing acknowledged, and
//! changes that race in the database answer with the documented errors,
//! never INTERNAL.
//!
//! The outage is made by a TCP proxy between the test's server and the
//! database, which the test cuts and restores, so that only this test's
//! server sees it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use orgs::proto::v1 as pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// A TCP proxy to `upstream` that can be cut (every open connection reset,
/// new ones refused) and restored.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let up = up.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        // Refused: the socket closes at once.
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().expect("lock").push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Proxy {
            addr,
            up,
            connections,
            accept,
        }
    }

    /// Resets every open connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The `host:port` a database URL names.
fn host_and_port(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("database url");
    format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().unwrap_or(5432)
    )
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).expect("database url");
    parsed.set_host(Some(&addr.ip().to_string())).expect("host");
    parsed.set_port(Some(addr.port())).expect("port");
    parsed.to_string()
}

fn add(organization_id: &str, user_id: &str) -> Request<pb::CreateMembershipRequest> {
    let mut request = Request::new(pb::CreateMembershipRequest {
        organization_id: organization_id.into(),
        user_id: user_id.into(),
        request_id: format!("add-{user_id}"),
        ..Default::default()
    });
    // Far longer than the acquire timeout: a call that waits for it has hung.
    request.set_timeout(Duration::from_secs(20));
    request
}

/// Asserts an UNAVAILABLE `DATABASE_UNAVAILABLE` with a positive `RetryInfo`.
#[track_caller]
fn assert_database_unavailable(status: &Status) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(status), "DATABASE_UNAVAILABLE", "{status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert!(delay > Duration::ZERO);
}

#[tokio::test]
async fn a_postgres_outage_under_writers_answers_only_unavailable_and_loses_nothing_acknowledged() {
    if backend_url().is_none() {
        // SQLite is a file of this process: it has no outage of its own.
        return;
    }
    let database_url = fresh_database_url().await;
    let proxy = Proxy::start(host_and_port(&database_url)).await;
    let proxied_url = through(&database_url, proxy.addr);
    let app = TestApp::spawn_on(&proxied_url, |config| {
        config.database.acquire_timeout_secs = 1;
        config.database.max_connections = 4;
    })
    .await;
    let organization = create_org(&app, "Outage Inc", Some("user_alice")).await;

    let running = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let client = app.admin();
        let organization_id = organization.id.clone();
        let running = running.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failures: Vec<Status> = Vec::new();
            let mut call = 0;
            while running.load(Ordering::SeqCst) {
                let user_id = format!("user_w{writer}_{call}");
                match client
                    .clone()
                    .create_membership(add(&organization_id, &user_id))
                    .await
                {
                    Ok(_) => acknowledged.push(user_id),
                    Err(status) => failures.push(status),
                }
                call += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    // Writers go on until each has had a call acknowledged after the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::SeqCst);

    let mut acknowledged = BTreeSet::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for writer in writers {
        let (ok, failures) = writer.await.expect("writer");
        *codes.entry("OK".into()).or_default() += ok.len();
        acknowledged.extend(ok);
        for status in failures {
            *codes.entry(format!("{:?}", status.code())).or_default() += 1;
            assert_database_unavailable(&status);
        }
    }
    assert!(
        codes.contains_key("Unavailable"),
        "no call saw the outage: {codes:?}"
    );

    // Recovered: a new call succeeds, and every acknowledged member is there.
    let mut recovered = None;
    for _ in 0..50 {
        match app
            .admin()
            .create_membership(add(&organization.id, "user_after"))
            .await
        {
            Ok(_) => {
                recovered = Some(());
                break;
            }
            Err(status) => {
                assert_database_unavailable(&status);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    recovered.expect("the server recovers once the database is back");
    let mut stored = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .admin()
            .list_memberships(pb::ListMembershipsRequest {
                organization_id: organization.id.clone(),
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await
            .expect("list memberships")
            .into_inner();
        stored.extend(page.memberships.into_iter().map(|m| m.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    eprintln!("statuses during the outage: {codes:?}");
}

const ROUNDS: usize = 30;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Runs `left` and `right` at the same moment (released by one barrier).
async fn race<L, R, A, B>(left: L, right: R) -> (Result<A, Status>, Result<B, Status>)
where
    L: std::future::Future<Output = Result<A, Status>> + Send + 'static,
    R: std::future::Future<Output = Result<B, Status>> + Send + 'static,
    A: Send + 'static,
    B: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (left_barrier, right_barrier) = (barrier.clone(), barrier);
    let left = tokio::spawn(async move {
        left_barrier.wait().await;
        left.await
    });
    let right = tokio::spawn(async move {
        right_barrier.wait().await;
        right.await
    });
    (left.await.expect("left"), right.await.expect("right"))
}

/// Asserts a result is OK or one of the `allowed` (code, reason) errors.
#[track_caller]
fn ok_or<T>(result: &Result<T, Status>, allowed: &[(Code, &str)]) -> bool {
    match result {
        Ok(_) => true,
        Err(status) => {
            assert!(
                allowed
                    .iter()
                    .any(|(code, why)| status.code() == *code && reason(status) == *why),
                "unexpected: {status:?}"
            );
            false
        }
    }
}

async fn create_role(app: &TestApp, key: &str, permissions: &[&str]) {
    app.admin()
        .create_role(pb::CreateRoleRequest {
            key: key.into(),
            name: key.into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        })
        .await
        .expect("create role");
}

#[tokio::test]
async fn deleting_a_role_while_a_membership_takes_it_answers_role_in_use_or_invalid_argument() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Roles Race", Some("user_alice")).await;
    add_member(&app, &organization.id, "user_moved", "org:member").await;
    for round in 0..ROUNDS {
        let role = format!("org:racer{round}");
        create_role(&app, &role, &[]).await;
        let (admin, other) = (app.admin(), app.admin());
        let key = role.clone();
        let delete = async move {
            let mut admin = admin;
            admin
                .delete_role(pb::DeleteRoleRequest { key })
                .await
                .map(|_| ())
        };
        let (organization_id, key) = (organization.id.clone(), role.clone());
        let take = async move {
            let mut other = other;
            if round % 2 == 0 {
                other
                    .create_membership(pb::CreateMembershipRequest {
                        organization_id,
                        user_id: format!("user_new{round}"),
                        role: key,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            } else {
                other
                    .update_membership(pb::UpdateMembershipRequest {
                        membership: Some(pb::Membership {
                            organization_id,
                            user_id: "user_moved".into(),
                            role: key,
                            ..Default::default()
                        }),
                        update_mask: mask(&["role"]),
                    })
                    .await
                    .map(|_| ())
            }
        };
        let (deleted, taken) = race(delete, take).await;
        let deleted = ok_or(&deleted, &[(Code::FailedPrecondition, "ROLE_IN_USE")]);
        let taken = ok_or(&taken, &[(Code::InvalidArgument, "FIELD_INVALID")]);
        assert!(
            deleted != taken,
            "round {round}: deleted {deleted}, taken {taken}"
        );
        if taken && round % 2 == 1 {
            // Move the member back so the next round's role is free to go.
            app.admin()
                .update_membership(pb::UpdateMembershipRequest {
                    membership: Some(pb::Membership {
                        organization_id: organization.id.clone(),
                        user_id: "user_moved".into(),
                        role: "org:member".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["role"]),
                })
                .await
                .expect("move back");
        }
    }
}

#[tokio::test]
async fn deleting_a_permission_while_a_role_gains_it_answers_permission_in_use_or_invalid_argument()
{
    let app = TestApp::spawn().await;
    create_role(&app, "org:gainer", &[]).await;
    for round in 0..ROUNDS {
        let permission = format!("org:racer{round}:use");
        app.admin()
            .create_permission(pb::CreatePermissionRequest {
                key: permission.clone(),
                name: "P".into(),
                ..Default::default()
            })
            .await
            .expect("create permission");
        let (admin, other) = (app.admin(), app.admin());
        let key = permission.clone();
        let delete = async move {
            let mut admin = admin;
            admin
                .delete_permission(pb::DeletePermissionRequest { key })
                .await
                .map(|_| ())
        };
        let key = permission.clone();
        let gain = async move {
            let mut other = other;
            other
                .update_role(pb::UpdateRoleRequest {
                    role: Some(pb::Role {
                        key: "org:gainer".into(),
                        permissions: vec![key],
                        ..Default::default()
                    }),
                    update_mask: mask(&["permissions"]),
                })
                .await
                .map(|_| ())
        };
        let (deleted, gained) = race(delete, gain).await;
        let deleted = ok_or(&deleted, &[(Code::FailedPrecondition, "PERMISSION_IN_USE")]);
        let gained = ok_or(&gained, &[(Code::InvalidArgument, "FIELD_INVALID")]);
        assert!(
            deleted != gained,
            "round {round}: deleted {deleted}, gained {gained}"
        );
        if gained {
            // Give it up again, so that the next round starts alike.
            app.admin()
                .update_role(pb::UpdateRoleRequest {
                    role: Some(pb::Role {
                        key: "org:gainer".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["permissions"]),
                })
                .await
                .expect("give up");
        }
    }
}

#[tokio::test]
async fn a_role_losing_the_manage_permission_and_the_last_admin_leaving_cannot_both_succeed() {
    let app = TestApp::spawn().await;
    for round in 0..ROUNDS {
        let role = format!("org:manager{round}");
        create_role(&app, &role, &["org:sys_memberships:manage"]).await;
        let organization = create_org(&app, &format!("Skew {round}"), Some("user_a")).await;
        add_member(&app, &organization.id, "user_b", &role).await;
        let (admin, other) = (app.admin(), app.admin());
        let key = role.clone();
        let strip = async move {
            let mut admin = admin;
            admin
                .update_role(pb::UpdateRoleRequest {
                    role: Some(pb::Role {
                        key,
                        ..Default::default()
                    }),
                    update_mask: mask(&["permissions"]),
                })
                .await
                .map(|_| ())
        };
        let organization_id = organization.id.clone();
        let leave = async move {
            let mut other = other;
            if round % 2 == 0 {
                other
                    .update_membership(pb::UpdateMembershipRequest {
                        membership: Some(pb::Membership {
                            organization_id,
                            user_id: "user_a".into(),
                            role: "org:member".into(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["role"]),
                    })
                    .await
                    .map(|_| ())
            } else {
                other
                    .delete_membership(pb::DeleteMembershipRequest {
                        organization_id,
                        user_id: "user_a".into(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            }
        };
        let (stripped, left) = race(strip, leave).await;
        let stripped = ok_or(&stripped, &[(Code::FailedPrecondition, "LAST_ADMIN")]);
        let left = ok_or(&left, &[(Code::FailedPrecondition, "LAST_ADMIN")]);
        assert!(
            !(stripped && left),
            "round {round}: both succeeded, nobody manages the organization"
        );
        assert!(stripped || left, "round {round}: neither succeeded");
    }
}

#[tokio::test]
async fn concurrent_creations_with_the_same_name_and_no_slug_all_succeed_with_distinct_slugs() {
    let app = TestApp::spawn().await;
    for round in 0..5 {
        let name = format!("Same Name {round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let creations: Vec<_> = (0..8)
            .map(|_| {
                let (mut client, barrier, name) = (app.admin(), barrier.clone(), name.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    client
                        .create_organization(pb::CreateOrganizationRequest {
                            name,
                            ..Default::default()
                        })
                        .await
                })
            })
            .collect();
        let mut slugs = BTreeSet::new();
        for creation in creations {
            let organization = creation
                .await
                .expect("task")
                .expect("a derived slug never fails")
                .into_inner()
                .organization
                .expect("organization");
            slugs.insert(organization.slug);
        }
        assert_eq!(slugs.len(), 8, "{slugs:?}");
    }
}

/// A replica answers its own writes from fresh state even while the log's
/// head cannot pass their events (here a transaction that took an earlier
/// position stays open): the access cache forgets at commit, not when the
/// log follower reads the events. Another replica's follower, held below
/// the same position, still hands the change to its cache within a poll.
#[tokio::test]
async fn replicas_forget_changes_while_the_log_head_is_held_back() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if backend_url().is_none() {
        // SQLite positions events in the writing transaction itself.
        return;
    }
    let app = TestApp::spawn_with(|config| config.database.statement_timeout_secs = 1).await;
    let replica = TestApp::spawn_on(&app.database_url, |_| {}).await;
    let organization = create_org(&app, "Own Writes", Some("user_owner")).await;
    add_member(&app, &organization.id, "user_c", "org:admin").await;
    let check = |server: &TestApp| {
        let mut client = server.admin();
        let organization_id = organization.id.clone();
        async move {
            let answer = client
                .check_permission(pb::CheckPermissionRequest {
                    organization_id,
                    user_id: "user_c".into(),
                    permission: "org:sys_memberships:manage".into(),
                })
                .await
                .expect("check permission")
                .into_inner();
            (answer.allowed, answer.role)
        }
    };
    let db = orgs::store::Db::connect(&app.database_url, 1)
        .await
        .expect("connect");
    // Until the membership is cached on both servers and their log followers
    // have nothing left to tell about it: then a role changed behind the
    // servers' backs keeps answering from the caches across a few polls.
    let set_role = |role: &'static str| {
        let db = db.clone();
        async move {
            db.conn()
                .execute_unprepared(&format!(
                    "UPDATE memberships SET role = '{role}' WHERE user_id = 'user_c'"
                ))
                .await
                .expect("change the role behind the servers' backs");
        }
    };
    let mut cached = false;
    let mut role = "org:admin";
    for _ in 0..20 {
        let before = (check(&app).await, check(&replica).await);
        role = if role == "org:admin" {
            "org:member"
        } else {
            "org:admin"
        };
        set_role(role).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Each answer changes with the role unless it comes from a cache.
        if (check(&app).await, check(&replica).await) == before {
            cached = true;
            break;
        }
    }
    assert!(cached, "the membership never stayed cached on both servers");

    let lock = db.conn().begin().await.expect("begin");
    lock.execute_unprepared("SELECT event_position()")
        .await
        .expect("take a position and hold it");
    app.admin()
        .deactivate_membership(pb::DeactivateMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_c".into(),
            ..Default::default()
        })
        .await
        .expect("committed, though the log's head is held below it");
    assert_eq!(check(&app).await, (false, String::new()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while check(&replica).await != (false, String::new()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other replica kept the membership cached"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator sees it: the follower reports how long it has been held.
    let held = || async {
        let (_, text) = scrape(replica.metrics_addr).await;
        sample(&text, "orgs_event_log_held_back_seconds", &[]).expect("the gauge")
    };
    while held().await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held-back gauge stayed at 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lock.rollback().await.expect("release");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held().await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held-back gauge stayed up after the transaction ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
