//! API.md §7.5: external ids, batch reads, and the organization's name on
//! memberships.

mod common;

use common::*;
use orgs::proto::v1 as pb;
use pb::get_organization_request::Lookup;
use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

async fn create_with_external_id(
    app: &TestApp,
    name: &str,
    created_by: &str,
    external_id: &str,
) -> Result<pb::Organization, tonic::Status> {
    app.admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: name.into(),
            created_by: created_by.into(),
            external_id: external_id.into(),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().organization.expect("organization"))
}

async fn set_external_id(
    app: &TestApp,
    id: &str,
    external_id: &str,
) -> Result<pb::Organization, tonic::Status> {
    app.admin()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: id.into(),
                external_id: external_id.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["external_id".into()],
            }),
        })
        .await
        .map(|response| response.into_inner().organization.expect("organization"))
}

fn by_external_id(external_id: &str) -> pb::GetOrganizationRequest {
    pb::GetOrganizationRequest {
        lookup: Some(Lookup::ExternalId(external_id.into())),
    }
}

#[tokio::test]
async fn external_ids_are_unique_when_set_and_name_an_organization() {
    let app = TestApp::spawn().await;
    let acme = create_with_external_id(&app, "Acme", "user_acme", " crm-001 ")
        .await
        .unwrap();
    assert_eq!(acme.external_id, "crm-001", "trimmed");
    // Organizations without one do not collide.
    let plain = create_org(&app, "Plain", Some("user_plain")).await;
    let other_plain = create_org(&app, "Plain too", None).await;
    assert!(plain.external_id.is_empty() && other_plain.external_id.is_empty());

    assert_status(
        create_with_external_id(&app, "Copy", "", "crm-001").await,
        Code::AlreadyExists,
        "EXTERNAL_ID_TAKEN",
    );
    assert_status(
        set_external_id(&app, &plain.id, "crm-001").await,
        Code::AlreadyExists,
        "EXTERNAL_ID_TAKEN",
    );
    // Setting an organization's own id again changes nothing else.
    assert_eq!(
        set_external_id(&app, &acme.id, "crm-001")
            .await
            .unwrap()
            .external_id,
        "crm-001"
    );

    // By external_id: platform readers any, end users only their own.
    for client in [
        app.admin(),
        app.orgs(Some(token("svc-reader", "orgs:read"))),
    ] {
        let found = client
            .clone()
            .get_organization(by_external_id("crm-001"))
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap();
        assert_eq!(found.id, acme.id);
    }
    let found = app
        .user("user_acme")
        .get_organization(by_external_id("crm-001"))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(found.id, acme.id);
    assert_status(
        app.user("user_plain")
            .get_organization(by_external_id("crm-001"))
            .await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    assert_status(
        app.admin()
            .get_organization(by_external_id("crm-404"))
            .await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );

    // Empty clears it; then another organization may take it.
    let cleared = set_external_id(&app, &acme.id, "").await.unwrap();
    assert!(cleared.external_id.is_empty());
    assert_status(
        app.admin()
            .get_organization(by_external_id("crm-001"))
            .await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    let taken = set_external_id(&app, &plain.id, "crm-001").await.unwrap();
    assert_eq!(taken.external_id, "crm-001");

    // Bad values name the field.
    let long = "x".repeat(129);
    assert_invalid(
        create_with_external_id(&app, "Long", "", &long).await,
        "external_id",
    );
    assert_invalid(
        set_external_id(&app, &acme.id, "bad\u{7}id").await,
        "organization.external_id",
    );
    assert_invalid(
        app.admin().get_organization(by_external_id(&long)).await,
        "external_id",
    );
    assert_invalid(
        app.admin().get_organization(by_external_id("  ")).await,
        "external_id",
    );
    assert!(
        create_with_external_id(&app, "Longest", "", &"y".repeat(128))
            .await
            .is_ok()
    );
    app.shutdown().await;
}

fn batch(ids: &[&str]) -> pb::BatchGetOrganizationsRequest {
    pb::BatchGetOrganizationsRequest {
        organization_ids: ids.iter().map(|id| id.to_string()).collect(),
    }
}

fn named_in_metadata(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get("organization_id").cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn batch_get_answers_in_request_order_and_names_what_is_missing() {
    let app = TestApp::spawn().await;
    let a = create_org(&app, "A", Some("user_a")).await;
    let b = create_org(&app, "B", Some("user_b")).await;
    let c = create_org(&app, "C", Some("user_a")).await;

    let got = app
        .orgs(Some(token("svc-reader", "orgs:read")))
        .batch_get_organizations(batch(&[&c.id, &a.id, &b.id, &a.id]))
        .await
        .unwrap()
        .into_inner()
        .organizations;
    let names: Vec<&str> = got.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["C", "A", "B", "A"]);

    // An end user: its own organizations only; another's is NOT_FOUND naming
    // it, exactly as one that does not exist.
    let mine = app
        .user("user_a")
        .batch_get_organizations(batch(&[&a.id, &c.id]))
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert_eq!(mine.len(), 2);
    let status = assert_status(
        app.user("user_a")
            .batch_get_organizations(batch(&[&a.id, &b.id, &c.id]))
            .await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    assert_eq!(named_in_metadata(&status), b.id);
    assert!(status.message().contains(&b.id), "{status:?}");
    let unknown = "org_01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let status = assert_status(
        app.admin()
            .batch_get_organizations(batch(&[&a.id, unknown]))
            .await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    assert_eq!(named_in_metadata(&status), unknown);

    // 1 to 100 well-formed ids.
    assert_invalid(
        app.admin().batch_get_organizations(batch(&[])).await,
        "organization_ids",
    );
    let many: Vec<String> = (0..101).map(|_| a.id.clone()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_invalid(
        app.admin().batch_get_organizations(batch(&many)).await,
        "organization_ids",
    );
    assert_eq!(
        app.admin()
            .batch_get_organizations(batch(&many[..100]))
            .await
            .unwrap()
            .into_inner()
            .organizations
            .len(),
        100
    );
    assert_invalid(
        app.admin()
            .batch_get_organizations(batch(&[&a.id, "not-an-id"]))
            .await,
        "organization_ids[1]",
    );
    app.shutdown().await;
}

#[tokio::test]
async fn memberships_carry_the_name_and_slug_of_their_organization() {
    let app = TestApp::spawn().await;
    let first = create_org(&app, "First Org", Some("user_switcher")).await;
    let second = create_org(&app, "Second Org", None).await;
    let added = add_member(&app, &second.id, "user_switcher", "org:member").await;
    assert_eq!(added.organization_name, "Second Org");
    assert_eq!(added.organization_slug, second.slug);

    // Renamed: later reads say so.
    app.admin()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: first.id.clone(),
                name: "First, renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap();

    // The organization switcher: one call.
    let memberships = app
        .user("user_switcher")
        .list_memberships(pb::ListMembershipsRequest {
            user_id: "user_switcher".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .memberships;
    let names: Vec<(&str, &str)> = memberships
        .iter()
        .map(|m| (m.organization_name.as_str(), m.organization_slug.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("First, renamed", first.slug.as_str()),
            ("Second Org", second.slug.as_str())
        ]
    );

    let onboarding = app
        .invitations(Some(verified_token(
            "user_switcher",
            "switcher@example.com",
        )))
        .resolve_onboarding(pb::ResolveOnboardingRequest {
            user_id: "user_switcher".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<&str> = onboarding
        .memberships
        .iter()
        .map(|m| m.organization_name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["First, renamed", "Second Org"]);

    // By organization too.
    let members = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: second.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert!(members.iter().all(|m| m.organization_name == "Second Org"));
    app.shutdown().await;
}

#[tokio::test]
async fn racing_creations_with_one_external_id_give_one_organization_and_external_id_taken() {
    let app = TestApp::spawn().await;
    for round in 0..5 {
        let external_id = format!("crm-race-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(6));
        let calls = (0..6).map(|i| {
            let (app, barrier, external_id) = (&app, barrier.clone(), external_id.clone());
            async move {
                barrier.wait().await;
                create_with_external_id(app, &format!("Race {round} {i}"), "", &external_id).await
            }
        });
        let results = futures::future::join_all(calls).await;
        let created = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(created, 1, "round {round}: {results:?}");
        for refused in results.into_iter().filter_map(Result::err) {
            assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
            assert_eq!(
                refused.get_error_details().error_info().unwrap().reason,
                "EXTERNAL_ID_TAKEN"
            );
        }
    }
}
