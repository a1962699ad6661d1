//! Memory bounded whatever callers send: the access cache keeps no entry for
//! organizations that do not exist, and stays within its bytes.

mod common;

use common::*;
use orgs::proto::v1 as pb;

/// The value of the sample `name{labels}`.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name_and_labels}"))
}

/// Entries and bytes of both caches.
async fn cache_sizes(app: &TestApp) -> Vec<f64> {
    let (_, text) = scrape(app.metrics_addr).await;
    ["memberships", "organizations"]
        .iter()
        .flat_map(|cache| {
            [
                sample(&text, &format!("orgs_cache_entries{{cache=\"{cache}\"}}")),
                sample(&text, &format!("orgs_cache_bytes{{cache=\"{cache}\"}}")),
            ]
        })
        .collect()
}

#[tokio::test]
async fn ten_thousand_bogus_permission_checks_leave_the_cache_unchanged() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Cached Inc", Some("user_alice")).await;
    // A real member's answer is cached, once the log follower has read the
    // organization's creation.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let check = |organization_id: String, user_id: &str| pb::CheckPermissionRequest {
        organization_id,
        user_id: user_id.into(),
        permission: "org:sys_memberships:manage".into(),
    };
    let allowed = app
        .admin()
        .check_permission(check(organization.id.clone(), "user_alice"))
        .await
        .expect("check")
        .into_inner()
        .allowed;
    assert!(allowed);
    // (Usually cached by now; the log follower may still drop it when it
    // reads the organization's creation, so only growth is checked below.)
    let before = cache_sizes(&app).await;

    let checks: Vec<_> = (0..8)
        .map(|worker| {
            let client = app.admin();
            tokio::spawn(async move {
                for i in 0..1_250 {
                    let bogus = format!("org_{}", ulid::Ulid::new().to_string().to_lowercase());
                    let answer = client
                        .clone()
                        .check_permission(pb::CheckPermissionRequest {
                            organization_id: bogus,
                            user_id: format!("user_{worker}_{i}"),
                            permission: "org:sys_memberships:manage".into(),
                        })
                        .await
                        .expect("a bogus check is answered")
                        .into_inner();
                    assert!(!answer.allowed);
                }
            })
        })
        .collect();
    for check in checks {
        check.await.expect("checks");
    }
    // So is a non-member of a real organization: no entry either.
    app.admin()
        .check_permission(check(organization.id.clone(), "user_stranger"))
        .await
        .expect("check");
    // Nothing was added (the member's own entry may have been dropped since,
    // when the log follower saw the organization's creation).
    let after = cache_sizes(&app).await;
    for (after, before) in after.iter().zip(&before) {
        assert!(after <= before, "grew from {before:?} to {after:?}");
    }
}

#[tokio::test]
async fn the_cache_stays_within_its_configured_bytes() {
    let app = TestApp::spawn_with(|config| config.limits.cache_max_bytes = 256 * 1024).await;
    let metadata: prost_types::Struct = prost_types::Struct {
        fields: [(
            "blob".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("x".repeat(7_000))),
            },
        )]
        .into(),
    };
    let mut ids = Vec::new();
    for i in 0..60 {
        let organization = app
            .admin()
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("Heavy {i}"),
                public_metadata: Some(metadata.clone()),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner()
            .organization
            .expect("organization");
        ids.push(organization.id);
    }
    // The log follower drops an organization's entry when it sees the
    // organization's creation, which it reads a poll later: read them all
    // until some stay. 60 organizations of about 7 KB
    // would take 420 KB; the organizations' half of the cache is 128 KiB.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        for id in &ids {
            app.admin()
                .get_organization(pb::GetOrganizationRequest {
                    lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                        id.clone(),
                    )),
                })
                .await
                .expect("get");
        }
        let sizes = cache_sizes(&app).await;
        assert!(sizes[3] <= 128.0 * 1024.0, "{sizes:?}");
        assert!(sizes[2] < 60.0, "{sizes:?}");
        if sizes[2] >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no organization stayed cached: {sizes:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The memberships' and organizations' entry counts.
async fn entries(app: &TestApp) -> (f64, f64) {
    let sizes = cache_sizes(app).await;
    (sizes[0], sizes[2])
}

#[tokio::test]
async fn a_restarted_server_answers_its_data_set_from_memory() {
    let app = TestApp::spawn().await;
    let url = app.database_url.clone();
    let mut organizations = Vec::new();
    for i in 0..5 {
        let organization = create_org(&app, &format!("Warm {i}"), Some("user_owner")).await;
        add_member(&app, &organization.id, "user_member", "org:member").await;
        organizations.push(organization.id);
    }
    // A member who left is not a member after the restart either.
    app.admin()
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: organizations[0].clone(),
            user_id: "user_member".into(),
            ..Default::default()
        })
        .await
        .expect("delete membership");
    // Every change has its position in the log before the restart, so no
    // replica's log follower drops what the next one warms.
    app.events(Some(token("svc", "orgs:admin")))
        .list_events(pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list events");
    app.shutdown().await;

    let cold = TestApp::spawn_on(&url, |config| config.limits.cache_warm = false).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        entries(&cold).await,
        (0.0, 0.0),
        "nothing read, nothing cached"
    );
    cold.shutdown().await;

    let warm = TestApp::spawn_on(&url, |_| {}).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while entries(&warm).await != (5.0, 5.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not warmed: {:?}",
            entries(&warm).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // What it holds is the database's answer: (allowed, role).
    let check = |organization_id: &str, user_id: &str| {
        let request = pb::CheckPermissionRequest {
            organization_id: organization_id.into(),
            user_id: user_id.into(),
            permission: "org:sys_memberships:manage".into(),
        };
        let client = warm.admin();
        async move {
            let answer = client
                .clone()
                .check_permission(request)
                .await
                .expect("check")
                .into_inner();
            (answer.allowed, answer.role)
        }
    };
    assert_eq!(
        check(&organizations[1], "user_owner").await,
        (true, "org:admin".to_string())
    );
    assert_eq!(
        check(&organizations[1], "user_member").await,
        (false, "org:member".to_string())
    );
    assert_eq!(
        check(&organizations[0], "user_member").await,
        (false, String::new())
    );
    let organization = warm
        .admin()
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                organizations[4].clone(),
            )),
        })
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(organization.name, "Warm 4");
    assert_eq!(organization.members_count, 2);
    // Reads answered from what was warmed add nothing.
    assert_eq!(entries(&warm).await, (5.0, 5.0));
}

/// Entries of the verified tokens kept.
async fn verified_tokens(app: &TestApp) -> f64 {
    sample(
        &scrape(app.metrics_addr).await.1,
        "orgs_cache_entries{cache=\"tokens\"}",
    )
}

#[tokio::test]
async fn refused_tokens_are_never_kept_and_each_valid_one_once() {
    use orgs::proto::v1::ListRolesRequest;
    let app = TestApp::spawn().await;
    let list = |token: String| {
        let mut client = app.orgs(Some(token));
        async move { client.list_roles(ListRolesRequest::default()).await }
    };
    let valid = token("user_kept", "");
    for _ in 0..20 {
        list(valid.clone()).await.expect("a valid token passes");
    }
    let kept = verified_tokens(&app).await;
    assert_eq!(kept, 1.0, "one token, sent 20 times, kept once");

    // A signature by another secret, a broken one, garbage after one: refused
    // every time, and nothing of them kept.
    let foreign = orgs::auth::token::mint_hs256(
        "another-secret-0123456789abcdef-0123456789",
        &orgs::auth::token::TokenRequest {
            sub: "user_forged".into(),
            ttl_seconds: 3600,
            ..Default::default()
        },
    )
    .expect("mint");
    let mut refused = vec![foreign, valid.replace('.', "")];
    refused.extend((0..500).map(|n| format!("{valid}{n}")));
    for token in refused {
        let status = list(token).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
    assert_eq!(verified_tokens(&app).await, kept);

    // Each further valid token once.
    for n in 0..30 {
        list(token(&format!("user_{n}"), "")).await.expect("valid");
    }
    assert_eq!(verified_tokens(&app).await, kept + 30.0);
}
