//! OrganizationService through the generated client against a real server.

mod common;

use std::collections::BTreeSet;

use common::*;
use orgs::proto::v1 as pb;
use prost_types::{FieldMask, Struct, Value, value::Kind};
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn metadata(pairs: &[(&str, Value)]) -> Option<Struct> {
    Some(Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    })
}

fn new_org(name: &str) -> pb::CreateOrganizationRequest {
    pb::CreateOrganizationRequest {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn admin_creates_on_behalf_of_a_user_who_becomes_the_only_member() {
    let app = TestApp::spawn().await;
    let response = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Acme Inc".into(),
            created_by: "user_alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let organization = response.organization.unwrap();
    assert!(organization.id.starts_with("org_"));
    assert_eq!(organization.slug, "acme-inc");
    assert_eq!(organization.created_by, "user_alice");
    assert_eq!(organization.members_count, 1);
    let membership = response.membership.unwrap();
    assert_eq!(membership.user_id, "user_alice");
    assert_eq!(membership.role, "org:admin");
    assert!(
        membership
            .permissions
            .contains(&"org:sys_memberships:manage".to_string())
    );
    let impact = response.billing_impact.unwrap();
    assert!(!impact.billable_after);
    assert_eq!(impact.marginal_amount.unwrap().currency_code, "USD");

    let members = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.total_size, 1);
    assert_eq!(
        members.memberships[0].user_id, "user_alice",
        "the admin caller is never added"
    );
}

#[tokio::test]
async fn admin_without_created_by_creates_an_organization_with_no_members() {
    let app = TestApp::spawn().await;
    let response = app
        .admin()
        .create_organization(new_org("Empty"))
        .await
        .unwrap()
        .into_inner();
    assert!(response.membership.is_none());
    assert_eq!(response.organization.unwrap().members_count, 0);
}

#[tokio::test]
async fn an_end_user_creates_for_itself_only() {
    let app = TestApp::spawn().await;
    let response = app
        .user("user_bob")
        .create_organization(new_org("Bob's shop"))
        .await
        .unwrap()
        .into_inner();
    let organization = response.organization.unwrap();
    assert_eq!(organization.created_by, "user_bob");
    assert_eq!(organization.slug, "bob-s-shop");
    assert_eq!(response.membership.unwrap().role, "org:admin");
    assert!(
        organization.private_metadata.is_none(),
        "end users never see private metadata"
    );

    let other = app
        .user("user_bob")
        .create_organization(pb::CreateOrganizationRequest {
            name: "X".into(),
            created_by: "user_eve".into(),
            ..Default::default()
        })
        .await;
    assert_status(other, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn the_per_user_creation_limit_is_resource_exhausted_with_retry_info() {
    let app = TestApp::spawn_with(|config| config.rules.max_organizations_per_user = 2).await;
    let user = app.user("user_carol");
    for name in ["One", "Two"] {
        user.clone()
            .create_organization(new_org(name))
            .await
            .unwrap();
    }
    let status = assert_status(
        user.clone().create_organization(new_org("Three")).await,
        Code::ResourceExhausted,
        "ORGANIZATION_LIMIT_REACHED",
    );
    use tonic_types::StatusExt;
    assert!(status.get_details_retry_info().is_some());
    // Platform principals are not limited.
    for i in 0..3 {
        app.admin()
            .create_organization(pb::CreateOrganizationRequest {
                name: format!("P{i}"),
                created_by: "user_carol".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn slugs_are_unique_and_derived_with_a_suffix_on_collision() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let first = create_org(&app, "Globex", None).await;
    assert_eq!(first.slug, "globex");
    let second = create_org(&app, "Globex", None).await;
    assert!(
        second.slug.starts_with("globex-") && second.slug.len() > "globex-".len(),
        "{}",
        second.slug
    );
    let taken = admin
        .clone()
        .create_organization(pb::CreateOrganizationRequest {
            name: "G".into(),
            slug: "globex".into(),
            ..Default::default()
        })
        .await;
    assert_status(taken, Code::AlreadyExists, "SLUG_TAKEN");
    for bad in ["Globex", "a", "-globex", "glo--bex", "glo bex"] {
        let result = admin
            .clone()
            .create_organization(pb::CreateOrganizationRequest {
                name: "G".into(),
                slug: bad.into(),
                ..Default::default()
            })
            .await;
        assert_invalid(result, "slug");
    }
}

#[tokio::test]
async fn bad_input_names_every_bad_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let huge = "x".repeat(9 * 1024);
    let result = admin
        .clone()
        .create_organization(pb::CreateOrganizationRequest {
            name: "  ".into(),
            slug: "Bad Slug".into(),
            created_by: "user with spaces".into(),
            max_allowed_memberships: -1,
            public_metadata: metadata(&[("blob", string_value(&huge))]),
            request_id: "r".repeat(65),
            ..Default::default()
        })
        .await;
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "FIELD_INVALID");
    let fields: BTreeSet<String> = bad_fields(&status).into_iter().collect();
    for field in [
        "name",
        "slug",
        "created_by",
        "max_allowed_memberships",
        "public_metadata",
        "request_id",
    ] {
        assert!(fields.contains(field), "{field} missing from {fields:?}");
    }
    assert_invalid(
        admin
            .clone()
            .create_organization(new_org(&"n".repeat(257)))
            .await,
        "name",
    );
    assert_invalid(
        admin
            .clone()
            .create_organization(new_org("tab\tname"))
            .await,
        "name",
    );
    assert_invalid(
        admin
            .clone()
            .get_organization(pb::GetOrganizationRequest {
                lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                    "mem_123".into(),
                )),
            })
            .await,
        "organization_id",
    );
    assert_invalid(
        admin
            .clone()
            .get_organization(pb::GetOrganizationRequest { lookup: None })
            .await,
        "organization_id",
    );
    let listed = admin
        .clone()
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 0, "nothing was written");
}

#[tokio::test]
async fn get_by_id_or_slug_and_outsiders_get_not_found() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Initech", Some("user_peter")).await;
    let by_slug = app
        .user("user_peter")
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::Slug("initech".into())),
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(by_slug.id, organization.id);
    let by_id = pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
            organization.id.clone(),
        )),
    };
    assert_status(
        app.user("user_outsider")
            .get_organization(by_id.clone())
            .await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    let missing = pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::Slug("nope".into())),
    };
    assert_status(
        app.user("user_outsider")
            .get_organization(missing.clone())
            .await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    assert_status(
        app.admin().get_organization(missing).await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    let reader = app.orgs(Some(token("svc-reporting", "orgs:read")));
    assert_eq!(
        reader
            .clone()
            .get_organization(by_id)
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap()
            .id,
        organization.id
    );
}

#[tokio::test]
async fn private_metadata_is_returned_only_to_platform_principals() {
    let app = TestApp::spawn().await;
    let created = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Secretive".into(),
            created_by: "user_sam".into(),
            public_metadata: metadata(&[("plan", string_value("pro"))]),
            private_metadata: metadata(&[("stripe", string_value("cus_1"))]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert!(
        created
            .private_metadata
            .as_ref()
            .unwrap()
            .fields
            .contains_key("stripe")
    );
    let get = pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
            created.id.clone(),
        )),
    };
    let seen = app
        .user("user_sam")
        .get_organization(get)
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert!(seen.public_metadata.unwrap().fields.contains_key("plan"));
    assert!(seen.private_metadata.is_none());
}

#[tokio::test]
async fn list_filters_orders_and_pages_stay_correct_while_rows_are_inserted() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    for name in ["Delta", "alpha", "Charlie", "bravo", "Echo"] {
        create_org(&app, name, None).await;
        app.clock.advance(chrono::Duration::seconds(1));
    }
    let by_name = admin
        .clone()
        .list_organizations(pb::ListOrganizationsRequest {
            order_by: "name".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = by_name
        .organizations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(names, ["Charlie", "Delta", "Echo", "alpha", "bravo"]);
    let newest = admin
        .clone()
        .list_organizations(pb::ListOrganizationsRequest {
            order_by: "create_time desc".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(newest.organizations[0].name, "Echo");
    let query = admin
        .clone()
        .list_organizations(pb::ListOrganizationsRequest {
            query: "HARL".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(query.total_size, 1);
    assert_eq!(query.organizations[0].name, "Charlie");
    assert_invalid(
        admin
            .clone()
            .list_organizations(pb::ListOrganizationsRequest {
                order_by: "size".into(),
                ..Default::default()
            })
            .await,
        "order_by",
    );

    // Page through in creation order while new organizations arrive.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .clone()
            .list_organizations(pb::ListOrganizationsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.organizations.iter().map(|o| o.name.clone()));
        if seen.len() == 2 {
            app.clock.advance(chrono::Duration::seconds(1));
            create_org(&app, "Foxtrot", None).await;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["Delta", "alpha", "Charlie", "bravo", "Echo", "Foxtrot"]
    );

    // Tampered and foreign tokens are refused.
    let first = admin
        .clone()
        .list_organizations(pb::ListOrganizationsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut tampered = first.next_page_token.clone();
    tampered.insert(3, 'x');
    let status = assert_status(
        admin
            .clone()
            .list_organizations(pb::ListOrganizationsRequest {
                page_size: 1,
                page_token: tampered,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    assert_eq!(bad_fields(&status), ["page_token"]);
    let foreign = admin
        .clone()
        .list_organizations(pb::ListOrganizationsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            order_by: "name".into(),
            ..Default::default()
        })
        .await;
    assert_status(foreign, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    let big = admin
        .clone()
        .list_organizations(pb::ListOrganizationsRequest {
            page_size: 10_000,
            ..Default::default()
        })
        .await;
    assert_eq!(
        big.unwrap().into_inner().organizations.len(),
        6,
        "large page sizes are lowered, not refused"
    );
}

#[tokio::test]
async fn end_users_list_only_their_own_organizations() {
    let app = TestApp::spawn().await;
    create_org(&app, "Mine", Some("user_dana")).await;
    create_org(&app, "Theirs", Some("user_erin")).await;
    let listed = app
        .user("user_dana")
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 1);
    assert_eq!(listed.organizations[0].name, "Mine");
    let other = app
        .user("user_dana")
        .list_organizations(pb::ListOrganizationsRequest {
            user_id: "user_erin".into(),
            ..Default::default()
        })
        .await;
    assert_status(other, Code::PermissionDenied, "PERMISSION_DENIED");
    let by_user = app
        .admin()
        .list_organizations(pb::ListOrganizationsRequest {
            user_id: "user_erin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_user.organizations[0].name, "Theirs");
}

#[tokio::test]
async fn update_with_mask_etag_and_slug_rules() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Hooli", Some("user_gavin")).await;
    create_org(&app, "Pied Piper", None).await;
    let gavin = app.user("user_gavin");
    let updated = gavin
        .clone()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                name: "Hooli XYZ".into(),
                slug: "ignored-without-mask".into(),
                etag: organization.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(updated.name, "Hooli XYZ");
    assert_eq!(updated.slug, "hooli");
    assert_ne!(updated.etag, organization.etag);

    // A stale etag changes nothing.
    let stale = gavin
        .clone()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                name: "Stale".into(),
                etag: organization.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await;
    assert_status(stale, Code::Aborted, "ETAG_MISMATCH");
    let unknown = gavin
        .clone()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["members_count"]),
        })
        .await;
    assert_invalid(unknown, "update_mask");
    let no_mask = gavin
        .clone()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await;
    assert_invalid(no_mask, "update_mask");
    let taken = gavin
        .clone()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                slug: "pied-piper".into(),
                ..Default::default()
            }),
            update_mask: mask(&["slug", "max_allowed_memberships"]),
        })
        .await;
    assert_status(taken, Code::AlreadyExists, "SLUG_TAKEN");
    let get = pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
            organization.id.clone(),
        )),
    };
    let current = gavin
        .clone()
        .get_organization(get)
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(
        (current.name.as_str(), current.slug.as_str()),
        ("Hooli XYZ", "hooli")
    );

    // A plain member may not update.
    add_member(&app, &organization.id, "user_richard", "").await;
    let member = app
        .user("user_richard")
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                name: "Mine now".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await;
    assert_status(member, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn metadata_deep_merges_and_null_deletes() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Merge", None).await;
    let nested = Value {
        kind: Some(Kind::StructValue(Struct {
            fields: [
                ("a".to_string(), string_value("1")),
                ("b".to_string(), string_value("2")),
            ]
            .into_iter()
            .collect(),
        })),
    };
    app.admin()
        .update_organization_metadata(pb::UpdateOrganizationMetadataRequest {
            organization_id: organization.id.clone(),
            public_metadata: metadata(&[
                ("nested", nested),
                ("keep", string_value("yes")),
                ("drop", string_value("soon")),
            ]),
            ..Default::default()
        })
        .await
        .unwrap();
    let patch_nested = Value {
        kind: Some(Kind::StructValue(Struct {
            fields: [
                (
                    "a".to_string(),
                    Value {
                        kind: Some(Kind::NullValue(0)),
                    },
                ),
                ("c".to_string(), string_value("3")),
            ]
            .into_iter()
            .collect(),
        })),
    };
    let merged = app
        .admin()
        .update_organization_metadata(pb::UpdateOrganizationMetadataRequest {
            organization_id: organization.id.clone(),
            public_metadata: metadata(&[
                ("nested", patch_nested),
                (
                    "drop",
                    Value {
                        kind: Some(Kind::NullValue(0)),
                    },
                ),
            ]),
            private_metadata: metadata(&[("secret", string_value("s"))]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    let public = merged.public_metadata.unwrap().fields;
    assert!(public.contains_key("keep"));
    assert!(!public.contains_key("drop"));
    let Some(Kind::StructValue(inner)) = &public["nested"].kind else {
        panic!("nested is an object")
    };
    let keys: Vec<_> = inner.fields.keys().cloned().collect();
    assert_eq!(keys, ["b", "c"]);
    assert!(
        merged
            .private_metadata
            .unwrap()
            .fields
            .contains_key("secret")
    );
    let too_big = app
        .admin()
        .update_organization_metadata(pb::UpdateOrganizationMetadataRequest {
            organization_id: organization.id.clone(),
            public_metadata: metadata(&[("blob", string_value(&"x".repeat(9000)))]),
            ..Default::default()
        })
        .await;
    assert_invalid(too_big, "public_metadata");
    let stale = app
        .admin()
        .update_organization_metadata(pb::UpdateOrganizationMetadataRequest {
            organization_id: organization.id.clone(),
            etag: organization.etag.clone(),
            public_metadata: metadata(&[("x", string_value("y"))]),
            ..Default::default()
        })
        .await;
    assert_status(stale, Code::Aborted, "ETAG_MISMATCH");
}

#[tokio::test]
async fn delete_removes_memberships_but_keeps_the_audit_trail() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Doomed", Some("user_owner")).await;
    add_member(&app, &organization.id, "user_two", "").await;
    let member = app
        .user("user_two")
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await;
    assert_status(member, Code::PermissionDenied, "PERMISSION_DENIED");
    app.user("user_owner")
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let memberships = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            user_id: "user_two".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(memberships.total_size, 0);
    let events = app
        .admin()
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<_> = events
        .audit_events
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "DeleteOrganization",
            "CreateMembership",
            "CreateOrganization"
        ]
    );
    let again = app
        .admin()
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await;
    assert_status(again, Code::NotFound, "ORGANIZATION_NOT_FOUND");
}

#[tokio::test]
async fn memberships_default_role_duplicates_and_cap() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let organization = admin
        .clone()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Capped".into(),
            created_by: "user_a".into(),
            max_allowed_memberships: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    let member = add_member(&app, &organization.id, "user_b", "").await;
    assert_eq!(member.role, "org:member");
    assert_eq!(member.permissions, ["org:sys_memberships:read"]);
    let request = |user: &str| pb::CreateMembershipRequest {
        organization_id: organization.id.clone(),
        user_id: user.into(),
        ..Default::default()
    };
    assert_status(
        admin.clone().create_membership(request("user_b")).await,
        Code::AlreadyExists,
        "MEMBERSHIP_EXISTS",
    );
    assert_status(
        admin.clone().create_membership(request("user_c")).await,
        Code::FailedPrecondition,
        "MEMBERSHIP_LIMIT_REACHED",
    );
    let unknown_role = admin
        .clone()
        .create_membership(pb::CreateMembershipRequest {
            role: "org:nope".into(),
            ..request("user_d")
        })
        .await;
    assert_invalid(unknown_role, "role");
    let missing = admin
        .clone()
        .create_membership(pb::CreateMembershipRequest {
            organization_id: "org_01jd3x4y5z6a7b8c9d0e1f2g3h".into(),
            user_id: "user_x".into(),
            ..Default::default()
        })
        .await;
    assert_status(missing, Code::NotFound, "ORGANIZATION_NOT_FOUND");
}

#[tokio::test]
async fn the_membership_cap_holds_under_20_concurrent_adds() {
    let app = TestApp::spawn().await;
    let organization = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Race".into(),
            max_allowed_memberships: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = app.admin();
        let organization_id = organization.id.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_membership(pb::CreateMembershipRequest {
                    organization_id,
                    user_id: format!("user_{i}"),
                    ..Default::default()
                })
                .await
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(reason(&status), "MEMBERSHIP_LIMIT_REACHED");
            }
        }
    }
    assert_eq!(succeeded, 5);
    let listed = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 5);
    let get = pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
            organization.id,
        )),
    };
    assert_eq!(
        app.admin()
            .get_organization(get)
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap()
            .members_count,
        5
    );
}

#[tokio::test]
async fn the_last_admin_cannot_be_removed_or_demoted() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Solo", Some("user_admin")).await;
    add_member(&app, &organization.id, "user_member", "").await;
    let demote = app
        .admin()
        .update_membership(pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                organization_id: organization.id.clone(),
                user_id: "user_admin".into(),
                role: "org:member".into(),
                ..Default::default()
            }),
            update_mask: mask(&["role"]),
        })
        .await;
    assert_status(demote, Code::FailedPrecondition, "LAST_ADMIN");
    let leave = app
        .user("user_admin")
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_admin".into(),
            ..Default::default()
        })
        .await;
    assert_status(leave, Code::FailedPrecondition, "LAST_ADMIN");
    // A plain member may always leave.
    app.user("user_member")
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_member".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The last member of all may leave too: the organization is then empty.
    app.user("user_admin")
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_admin".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_last_admin_survives_20_concurrent_removals_and_demotions() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Admins", None).await;
    for i in 0..20 {
        add_member(
            &app,
            &organization.id,
            &format!("user_admin_{i}"),
            "org:admin",
        )
        .await;
    }
    add_member(&app, &organization.id, "user_plain", "").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = app.admin();
        let organization_id = organization.id.clone();
        let user_id = format!("user_admin_{i}");
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                client
                    .delete_membership(pb::DeleteMembershipRequest {
                        organization_id,
                        user_id,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            } else {
                client
                    .update_membership(pb::UpdateMembershipRequest {
                        membership: Some(pb::Membership {
                            organization_id,
                            user_id,
                            role: "org:member".into(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["role"]),
                    })
                    .await
                    .map(|_| ())
            }
        }));
    }
    let mut refused = 0;
    for task in tasks {
        if let Err(status) = task.await.unwrap() {
            assert_eq!(reason(&status), "LAST_ADMIN", "{status:?}");
            refused += 1;
        }
    }
    assert_eq!(refused, 1, "exactly one change must be refused");
    let admins = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: organization.id.clone(),
            role: "org:admin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(admins.total_size, 1);
}

#[tokio::test]
async fn membership_listing_updating_and_self_service() {
    let app = TestApp::spawn().await;
    let one = create_org(&app, "One", Some("user_owner")).await;
    let two = create_org(&app, "Two", Some("user_owner")).await;
    add_member(&app, &one.id, "user_joe", "").await;
    add_member(&app, &two.id, "user_joe", "").await;
    let own = app
        .user("user_joe")
        .list_memberships(pb::ListMembershipsRequest {
            user_id: "user_joe".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.total_size, 2);
    let others = app
        .user("user_joe")
        .list_memberships(pb::ListMembershipsRequest {
            user_id: "user_owner".into(),
            ..Default::default()
        })
        .await;
    assert_status(others, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_invalid(
        app.admin()
            .list_memberships(pb::ListMembershipsRequest::default())
            .await,
        "organization_id",
    );
    // org:member holds org:sys_memberships:read, so it may list its organization.
    let in_org = app
        .user("user_joe")
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: one.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(in_org.total_size, 2);
    assert_eq!(in_org.memberships.len(), 1);
    assert!(!in_org.next_page_token.is_empty());

    let joe = in_org
        .memberships
        .iter()
        .chain(own.memberships.iter())
        .find(|m| m.user_id == "user_joe")
        .unwrap()
        .clone();
    let updated = app
        .user("user_owner")
        .update_membership(pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                organization_id: joe.organization_id.clone(),
                user_id: "user_joe".into(),
                public_metadata: metadata(&[("title", string_value("CTO"))]),
                etag: joe.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["public_metadata"]),
        })
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(updated.role, "org:member");
    assert!(
        updated
            .public_metadata
            .unwrap()
            .fields
            .contains_key("title")
    );
    let stale = app
        .user("user_owner")
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: joe.organization_id.clone(),
            user_id: "user_joe".into(),
            etag: joe.etag.clone(),
        })
        .await;
    assert_status(stale, Code::Aborted, "ETAG_MISMATCH");
}

#[tokio::test]
async fn custom_roles_and_permissions() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let permission = admin
        .clone()
        .create_permission(pb::CreatePermissionRequest {
            key: "org:invoices:read".into(),
            name: "Read invoices".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .permission
        .unwrap();
    assert!(permission.id.starts_with("perm_"));
    assert_status(
        admin
            .clone()
            .create_permission(pb::CreatePermissionRequest {
                key: "org:invoices:read".into(),
                name: "Again".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "PERMISSION_EXISTS",
    );
    assert_invalid(
        admin
            .clone()
            .create_permission(pb::CreatePermissionRequest {
                key: "org:sys_billing:write".into(),
                name: "X".into(),
                ..Default::default()
            })
            .await,
        "key",
    );
    assert_invalid(
        admin
            .clone()
            .create_permission(pb::CreatePermissionRequest {
                key: "invoices".into(),
                name: "".into(),
                ..Default::default()
            })
            .await,
        "name",
    );
    let role = admin
        .clone()
        .create_role(pb::CreateRoleRequest {
            key: "org:billing".into(),
            name: "Billing".into(),
            permissions: vec!["org:invoices:read".into(), "org:sys_billing:read".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    assert!(!role.built_in);
    assert_eq!(
        role.permissions,
        ["org:invoices:read", "org:sys_billing:read"]
    );
    assert_status(
        admin
            .clone()
            .create_role(pb::CreateRoleRequest {
                key: "org:billing".into(),
                name: "B".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "ROLE_EXISTS",
    );
    assert_invalid(
        admin
            .clone()
            .create_role(pb::CreateRoleRequest {
                key: "org:x".into(),
                name: "X".into(),
                permissions: vec!["org:no:such".into()],
                ..Default::default()
            })
            .await,
        "permissions[0]",
    );
    assert_status(
        app.user("user_x")
            .create_role(pb::CreateRoleRequest {
                key: "org:y".into(),
                name: "Y".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    let organization = create_org(&app, "Roles", Some("user_owner")).await;
    add_member(&app, &organization.id, "user_accountant", "org:billing").await;
    let check = |user: &str, permission: &str| pb::CheckPermissionRequest {
        organization_id: organization.id.clone(),
        user_id: user.into(),
        permission: permission.into(),
    };
    let allowed = admin
        .clone()
        .check_permission(check("user_accountant", "org:invoices:read"))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed.allowed);
    assert_eq!(allowed.role, "org:billing");
    assert!(
        !admin
            .clone()
            .check_permission(check("user_accountant", "org:sys_profile:manage"))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    let stranger = admin
        .clone()
        .check_permission(check("user_stranger", "org:invoices:read"))
        .await
        .unwrap()
        .into_inner();
    assert!(!stranger.allowed);
    assert_eq!(stranger.role, "");
    assert!(
        app.user("user_accountant")
            .check_permission(check("user_accountant", "org:invoices:read"))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    assert_status(
        app.user("user_accountant")
            .check_permission(check("user_owner", "org:invoices:read"))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_invalid(
        admin
            .clone()
            .check_permission(check("user_owner", "invoices"))
            .await,
        "permission",
    );

    // Roles and permissions in use cannot be deleted; built-in ones never.
    assert_status(
        admin
            .clone()
            .delete_role(pb::DeleteRoleRequest {
                key: "org:billing".into(),
            })
            .await,
        Code::FailedPrecondition,
        "ROLE_IN_USE",
    );
    assert_status(
        admin
            .clone()
            .delete_role(pb::DeleteRoleRequest {
                key: "org:admin".into(),
            })
            .await,
        Code::FailedPrecondition,
        "SYSTEM_ROLE",
    );
    assert_status(
        admin
            .clone()
            .delete_role(pb::DeleteRoleRequest {
                key: "org:member".into(),
            })
            .await,
        Code::FailedPrecondition,
        "SYSTEM_ROLE",
    );
    assert_status(
        admin
            .clone()
            .delete_permission(pb::DeletePermissionRequest {
                key: "org:invoices:read".into(),
            })
            .await,
        Code::FailedPrecondition,
        "PERMISSION_IN_USE",
    );
    assert_status(
        admin
            .clone()
            .delete_permission(pb::DeletePermissionRequest {
                key: "org:sys_profile:manage".into(),
            })
            .await,
        Code::FailedPrecondition,
        "SYSTEM_ROLE",
    );

    // Updating the role changes what its members may do.
    let updated = admin
        .clone()
        .update_role(pb::UpdateRoleRequest {
            role: Some(pb::Role {
                key: "org:billing".into(),
                permissions: vec!["org:sys_billing:read".into()],
                etag: role.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["permissions"]),
        })
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    assert_eq!(updated.permissions, ["org:sys_billing:read"]);
    assert!(
        !admin
            .clone()
            .check_permission(check("user_accountant", "org:invoices:read"))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    assert_status(
        admin
            .clone()
            .update_role(pb::UpdateRoleRequest {
                role: Some(pb::Role {
                    key: "org:billing".into(),
                    name: "Stale".into(),
                    etag: role.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            })
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    admin
        .clone()
        .delete_permission(pb::DeletePermissionRequest {
            key: "org:invoices:read".into(),
        })
        .await
        .unwrap();
    admin
        .clone()
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_accountant".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .clone()
        .delete_role(pb::DeleteRoleRequest {
            key: "org:billing".into(),
        })
        .await
        .unwrap();
    assert_status(
        app.user("user_x")
            .get_role(pb::GetRoleRequest {
                key: "org:billing".into(),
            })
            .await,
        Code::NotFound,
        "ROLE_NOT_FOUND",
    );
    let roles = app
        .user("user_x")
        .list_roles(pb::ListRolesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = roles.roles.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["org:admin", "org:member"]);
    let permissions = app
        .user("user_x")
        .list_permissions(pb::ListPermissionsRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(permissions.total_size, 7);
    assert_eq!(permissions.permissions.len(), 3);
}

#[tokio::test]
async fn request_id_replays_the_first_answer_and_refuses_other_content() {
    let app = TestApp::spawn().await;
    let request = pb::CreateOrganizationRequest {
        name: "Idempotent".into(),
        created_by: "user_i".into(),
        request_id: "req-1".into(),
        ..Default::default()
    };
    let first = app
        .admin()
        .create_organization(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = app
        .admin()
        .create_organization(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    let changed = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Other".into(),
            ..request.clone()
        })
        .await;
    assert_status(changed, Code::FailedPrecondition, "REQUEST_ID_REUSED");
    // The key belongs to the principal: another principal may use it.
    app.user("user_other")
        .create_organization(pb::CreateOrganizationRequest {
            name: "Mine".into(),
            request_id: "req-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Concurrent calls with one key create one organization.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut client = app.admin();
        let request = pb::CreateOrganizationRequest {
            name: "Burst".into(),
            request_id: "req-burst".into(),
            ..Default::default()
        };
        tasks.push(tokio::spawn(async move {
            client.create_organization(request).await
        }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.insert(
            task.await
                .unwrap()
                .unwrap()
                .into_inner()
                .organization
                .unwrap()
                .id,
        );
    }
    assert_eq!(ids.len(), 1);
    let listed = app
        .admin()
        .list_organizations(pb::ListOrganizationsRequest {
            query: "burst".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 1);
}

#[tokio::test]
async fn validate_only_checks_everything_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let preview = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Preview".into(),
            created_by: "user_p".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.organization.unwrap().slug, "preview");
    assert!(preview.billing_impact.is_some());
    let listed = app
        .admin()
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 0);

    let organization = create_org(&app, "Real", None).await;
    let membership = app
        .admin()
        .create_membership(pb::CreateMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_v".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(membership.membership.unwrap().user_id, "user_v");
    assert!(membership.billing_impact.is_some());
    let members = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.total_size, 0);
    // A preview still reports what a real call would refuse.
    add_member(&app, &organization.id, "user_v", "").await;
    let duplicate = app
        .admin()
        .create_membership(pb::CreateMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_v".into(),
            validate_only: true,
            ..Default::default()
        })
        .await;
    assert_status(duplicate, Code::AlreadyExists, "MEMBERSHIP_EXISTS");
    let events = app
        .admin()
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<_> = events
        .audit_events
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        ["CreateMembership", "CreateOrganization"],
        "previews leave no audit event"
    );
}

#[tokio::test]
async fn audit_events_record_actor_delegation_and_request_id() {
    let app = TestApp::spawn().await;
    let delegated = orgs::auth::token::mint_hs256(
        SECRET,
        &orgs::auth::token::TokenRequest {
            sub: "user_zoe".into(),
            act: Some("svc-onboarding".into()),
            ttl_seconds: 600,
            ..Default::default()
        },
    )
    .unwrap();
    let organization = app
        .orgs(Some(delegated))
        .create_organization(pb::CreateOrganizationRequest {
            name: "Zoe Co".into(),
            request_id: "r-zoe".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    add_member(&app, &organization.id, "user_yan", "").await;
    let events = app
        .user("user_zoe")
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: organization.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.total_size, 2);
    assert_eq!(events.audit_events[0].action, "CreateMembership");
    let older = app
        .user("user_zoe")
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: organization.id.clone(),
            page_size: 1,
            page_token: events.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let created = &older.audit_events[0];
    assert_eq!(created.action, "CreateOrganization");
    assert_eq!(created.actor, "user_zoe");
    assert_eq!(created.on_behalf_of, "svc-onboarding");
    assert_eq!(created.request_id, "r-zoe");
    assert_eq!(created.resource_id, organization.id);
    assert!(created.id.starts_with("evt_"));
    let by_actor = app
        .admin()
        .list_audit_events(pb::ListAuditEventsRequest {
            actor: "user_zoe".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_actor.total_size, 1);
    // A plain member may not read the trail; an end user may not read all of it.
    assert_status(
        app.user("user_yan")
            .list_audit_events(pb::ListAuditEventsRequest {
                organization_id: organization.id.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_invalid(
        app.user("user_zoe")
            .list_audit_events(pb::ListAuditEventsRequest::default())
            .await,
        "organization_id",
    );
}

#[tokio::test]
async fn concurrent_metadata_merges_lose_no_key() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Merges", None).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut client = app.admin();
        let organization_id = organization.id.clone();
        tasks.push(tokio::spawn(async move {
            client
                .update_organization_metadata(pb::UpdateOrganizationMetadataRequest {
                    organization_id,
                    public_metadata: metadata(&[(&format!("k{i}"), string_value("v"))]),
                    ..Default::default()
                })
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let get = pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
            organization.id,
        )),
    };
    let current = app
        .admin()
        .get_organization(get)
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(current.public_metadata.unwrap().fields.len(), 10);
}

#[tokio::test]
async fn the_creation_limit_holds_under_concurrent_creations() {
    let app = TestApp::spawn_with(|config| config.rules.max_organizations_per_user = 3).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut client = app.user("user_rush");
        tasks.push(tokio::spawn(async move {
            client
                .create_organization(new_org(&format!("Rush {i}")))
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(status) => assert_eq!(reason(&status), "ORGANIZATION_LIMIT_REACHED", "{status:?}"),
        }
    }
    assert_eq!(created, 3);
}

#[tokio::test]
async fn a_role_update_cannot_take_the_last_managers_permission() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    admin
        .clone()
        .create_role(pb::CreateRoleRequest {
            key: "org:owner".into(),
            name: "Owner".into(),
            permissions: vec![
                "org:sys_memberships:manage".into(),
                "org:sys_memberships:read".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let organization = create_org(&app, "Owned", None).await;
    add_member(&app, &organization.id, "user_owner", "org:owner").await;
    add_member(&app, &organization.id, "user_member", "").await;
    let demote = |permissions: Vec<String>| pb::UpdateRoleRequest {
        role: Some(pb::Role {
            key: "org:owner".into(),
            permissions,
            ..Default::default()
        }),
        update_mask: mask(&["permissions"]),
    };
    assert_status(
        admin
            .clone()
            .update_role(demote(vec!["org:sys_memberships:read".into()]))
            .await,
        Code::FailedPrecondition,
        "LAST_ADMIN",
    );
    // With an org:admin beside the owner the permission may go.
    add_member(&app, &organization.id, "user_admin", "org:admin").await;
    admin
        .clone()
        .update_role(demote(vec!["org:sys_memberships:read".into()]))
        .await
        .unwrap();
}

async fn allowed(
    app: &TestApp,
    organization_id: &str,
    user_id: &str,
    permission: &str,
) -> (bool, String) {
    let answer = app
        .admin()
        .check_permission(pb::CheckPermissionRequest {
            organization_id: organization_id.into(),
            user_id: user_id.into(),
            permission: permission.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (answer.allowed, answer.role)
}

async fn eventually(
    app: &TestApp,
    organization_id: &str,
    user_id: &str,
    permission: &str,
    expected: (bool, &str),
) {
    for _ in 0..100 {
        let (allowed_now, role) = allowed(app, organization_id, user_id, permission).await;
        if (allowed_now, role.as_str()) == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("CheckPermission never answered {expected:?}");
}

#[tokio::test]
async fn check_permission_is_cached_and_every_replica_converges() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.database_url, |_| {}).await;
    let organization = create_org(&a, "Cached", Some("user_owner")).await;
    add_member(&a, &organization.id, "user_c", "").await;
    const MANAGE: &str = "org:sys_memberships:manage";
    for app in [&a, &b] {
        assert_eq!(
            allowed(app, &organization.id, "user_c", MANAGE).await,
            (false, "org:member".into())
        );
        assert_eq!(
            allowed(app, &organization.id, "user_c", MANAGE).await,
            (false, "org:member".into())
        );
    }
    // A change answers at once on the replica that made it, and soon on the other.
    a.admin()
        .update_membership(pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                organization_id: organization.id.clone(),
                user_id: "user_c".into(),
                role: "org:admin".into(),
                ..Default::default()
            }),
            update_mask: mask(&["role"]),
        })
        .await
        .unwrap();
    assert_eq!(
        allowed(&a, &organization.id, "user_c", MANAGE).await,
        (true, "org:admin".into())
    );
    eventually(&b, &organization.id, "user_c", MANAGE, (true, "org:admin")).await;
    b.admin()
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_c".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        allowed(&b, &organization.id, "user_c", MANAGE).await,
        (false, String::new())
    );
    eventually(&a, &organization.id, "user_c", MANAGE, (false, "")).await;
    // Deactivating a member drops its rights before the call returns on the
    // replica that made it, and soon on the other; reactivating gives its
    // role back.
    add_member(&a, &organization.id, "user_e", "org:admin").await;
    for app in [&a, &b] {
        eventually(app, &organization.id, "user_e", MANAGE, (true, "org:admin")).await;
    }
    let deactivated = b
        .admin()
        .deactivate_membership(pb::DeactivateMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_e".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(deactivated.state, pb::MembershipState::Deactivated as i32);
    assert_eq!(deactivated.role, "org:admin", "the role is kept");
    assert_eq!(
        allowed(&b, &organization.id, "user_e", MANAGE).await,
        (false, String::new())
    );
    eventually(&a, &organization.id, "user_e", MANAGE, (false, "")).await;
    a.admin()
        .reactivate_membership(pb::ReactivateMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_e".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        allowed(&a, &organization.id, "user_e", MANAGE).await,
        (true, "org:admin".into())
    );
    eventually(&b, &organization.id, "user_e", MANAGE, (true, "org:admin")).await;
    // Deactivating the organization drops every member's rights the same way.
    a.admin()
        .deactivate_organization(pb::DeactivateOrganizationRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        allowed(&a, &organization.id, "user_e", MANAGE).await,
        (false, String::new())
    );
    eventually(&b, &organization.id, "user_e", MANAGE, (false, "")).await;
    b.admin()
        .reactivate_organization(pb::ReactivateOrganizationRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        allowed(&b, &organization.id, "user_e", MANAGE).await,
        (true, "org:admin".into())
    );
    eventually(&a, &organization.id, "user_e", MANAGE, (true, "org:admin")).await;
    // Changing what a role grants reaches every cached membership holding it.
    b.admin()
        .create_permission(pb::CreatePermissionRequest {
            key: "org:reports:read".into(),
            name: "Reports".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    b.admin()
        .create_role(pb::CreateRoleRequest {
            key: "org:analyst".into(),
            name: "Analyst".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    add_member(&b, &organization.id, "user_d", "org:analyst").await;
    for app in [&a, &b] {
        eventually(
            app,
            &organization.id,
            "user_d",
            "org:reports:read",
            (false, "org:analyst"),
        )
        .await;
    }
    a.admin()
        .update_role(pb::UpdateRoleRequest {
            role: Some(pb::Role {
                key: "org:analyst".into(),
                permissions: vec!["org:reports:read".into()],
                ..Default::default()
            }),
            update_mask: mask(&["permissions"]),
        })
        .await
        .unwrap();
    assert_eq!(
        allowed(&a, &organization.id, "user_d", "org:reports:read").await,
        (true, "org:analyst".into())
    );
    eventually(
        &b,
        &organization.id,
        "user_d",
        "org:reports:read",
        (true, "org:analyst"),
    )
    .await;
    // Deleting the organization forgets its memberships everywhere.
    a.admin()
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: organization.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        allowed(&a, &organization.id, "user_owner", MANAGE).await,
        (false, String::new())
    );
    eventually(&b, &organization.id, "user_owner", MANAGE, (false, "")).await;
}

#[tokio::test]
async fn get_organization_is_cached_and_every_replica_converges() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.database_url, |_| {}).await;
    let organization = create_org(&a, "Before", Some("user_reader")).await;
    let get = |id: &str| pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
            id.into(),
        )),
    };
    let name_on = |app: &TestApp, as_user: bool| {
        let mut client = if as_user {
            app.user("user_reader")
        } else {
            app.admin()
        };
        let request = get(&organization.id);
        async move {
            client
                .get_organization(request)
                .await
                .map(|r| r.into_inner().organization.unwrap())
        }
    };
    for app in [&a, &b] {
        for as_user in [false, true] {
            assert_eq!(name_on(app, as_user).await.unwrap().name, "Before");
            assert_eq!(name_on(app, as_user).await.unwrap().name, "Before");
        }
    }
    a.admin()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                name: "After".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap();
    for as_user in [false, true] {
        assert_eq!(
            name_on(&a, as_user).await.unwrap().name,
            "After",
            "the writing replica answers at once"
        );
    }
    let mut converged = false;
    for _ in 0..100 {
        if name_on(&b, false).await.unwrap().name == "After"
            && name_on(&b, true).await.unwrap().name == "After"
        {
            converged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(converged, "the other replica never saw the change");
    // A member who leaves no longer sees it, on either replica.
    add_member(&a, &organization.id, "user_admin2", "org:admin").await;
    a.user("user_reader")
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: organization.id.clone(),
            user_id: "user_reader".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        name_on(&a, true).await,
        Code::NotFound,
        "ORGANIZATION_NOT_FOUND",
    );
    let mut gone = false;
    for _ in 0..100 {
        if name_on(&b, true).await.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the other replica kept showing the organization to a former member"
    );
}
