//! Authentication and authorization: every RPC refuses bad tokens, the policy
//! table covers every RPC, and the role matrix of OrganizationService holds.

mod common;

use std::collections::BTreeSet;
use std::str::FromStr;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orgs::auth::policy::POLICY;
use orgs::domain::Reason;
use orgs::proto::v1 as pb;
use prost::Message;
use prost_types::FieldMask;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Every RPC path of the orgs services, from the served descriptor set.
fn rpc_paths() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(orgs::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut paths = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                paths.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    paths
}

#[test]
fn every_rpc_has_exactly_one_policy_entry() {
    let paths = rpc_paths();
    assert_eq!(paths.len(), 51, "the four services define 51 RPCs");
    for path in &paths {
        let entries = POLICY.iter().filter(|(p, _)| p == path).count();
        assert_eq!(entries, 1, "{path} must have exactly one policy entry");
    }
    for (path, _) in POLICY {
        assert!(
            paths.iter().any(|p| p == path),
            "{path} is in the policy table but not in the protos"
        );
    }
}

#[test]
fn error_reasons_match_the_proto_enum() {
    let set = prost_types::FileDescriptorSet::decode(orgs::proto::FILE_DESCRIPTOR_SET).unwrap();
    let reasons: BTreeSet<String> = set
        .file
        .iter()
        .flat_map(|f| f.enum_type.iter())
        .filter(|e| e.name() == "ErrorReason")
        .flat_map(|e| e.value.iter())
        .map(|v| v.name().trim_start_matches("ERROR_REASON_").to_string())
        .filter(|name| name != "UNSPECIFIED")
        .collect();
    let domain: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(reasons, domain);
}

/// Calls `path` with an empty message and optional raw `authorization` value.
async fn raw_call(channel: Channel, path: &str, authorization: Option<String>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = Request::new(());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let codec: tonic_prost::ProstCodec<(), ()> = tonic_prost::ProstCodec::default();
    match grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_str(path).unwrap(),
            codec,
        )
        .await
    {
        Ok(_) => Status::ok(""),
        Err(status) => status,
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn signed(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn every_rpc_refuses_missing_expired_forged_and_unsigned_tokens() {
    let app = TestApp::spawn().await;
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(format!(
        r#"{{"sub":"user_x","scope":"orgs:admin","exp":{}}}"#,
        now() + 600
    )
    .as_bytes());
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "TOKEN_MISSING"),
        (
            "not bearer",
            Some(format!("Basic {}", b64(b"a:b"))),
            "TOKEN_MISSING",
        ),
        (
            "garbage",
            Some("Bearer not.a.token".into()),
            "TOKEN_INVALID",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                signed(
                    serde_json::json!({"sub": "user_x", "exp": now() - 3600}),
                    SECRET
                )
            )),
            "TOKEN_EXPIRED",
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                signed(serde_json::json!({"sub": "user_x"}), SECRET)
            )),
            "TOKEN_INVALID",
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                signed(
                    serde_json::json!({"sub": "user_x", "exp": now() + 600}),
                    "another-secret-0123456789"
                )
            )),
            "TOKEN_INVALID",
        ),
        (
            "alg none",
            Some(format!("Bearer {header}.{claims}.")),
            "TOKEN_INVALID",
        ),
    ];
    for path in rpc_paths() {
        for (name, authorization, expected) in &cases {
            let status = raw_call(app.channel(), &path, authorization.clone()).await;
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{path} with {name}: {status:?}"
            );
            assert_eq!(reason(&status), *expected, "{path} with {name}");
        }
    }
    // Within the 60 s leeway a just-expired token still works.
    let fresh = signed(
        serde_json::json!({"sub": "user_x", "exp": now() - 30}),
        SECRET,
    );
    let status = raw_call(
        app.channel(),
        "/orgs.v1.OrganizationService/ListRoles",
        Some(format!("Bearer {fresh}")),
    )
    .await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let app = TestApp::spawn().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    for service in [
        "",
        "orgs.v1.OrganizationService",
        "orgs.v1.InvitationService",
        "orgs.v1.BillingService",
        "orgs.v1.EventService",
    ] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    let status = raw_call(
        app.channel(),
        "/orgs.v1.OrganizationService/NoSuchMethod",
        None,
    )
    .await;
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn scope_only_rpcs_refuse_principals_without_the_scope() {
    let app = TestApp::spawn().await;
    let end_user = format!("Bearer {}", token("user_plain", ""));
    let reader = format!("Bearer {}", token("svc-read", "orgs:read"));
    for path in [
        "/orgs.v1.OrganizationService/CreateRole",
        "/orgs.v1.OrganizationService/DeleteRole",
        "/orgs.v1.OrganizationService/CreatePermission",
        "/orgs.v1.BillingService/RecordActivity",
        "/orgs.v1.BillingService/GetBillingSummary",
        "/orgs.v1.BillingService/ListCostDrivers",
        "/orgs.v1.BillingService/WatchBillableOrganizations",
    ] {
        for authorization in [&end_user, &reader] {
            let status = raw_call(app.channel(), path, Some(authorization.clone())).await;
            assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
            assert_eq!(reason(&status), "PERMISSION_DENIED");
        }
    }
}

#[tokio::test]
async fn rs256_and_es256_are_pinned_by_configuration() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (algorithm, config_algorithm, name) in [
        (
            Algorithm::RS256,
            orgs::config::AuthAlgorithm::Rs256,
            "rs256",
        ),
        (
            Algorithm::ES256,
            orgs::config::AuthAlgorithm::Es256,
            "es256",
        ),
    ] {
        let public = fixtures.join(format!("{name}-public.pem"));
        let app = TestApp::spawn_with(|config| {
            config.auth.algorithm = config_algorithm;
            config.auth.hs256_secret = None;
            config.auth.public_key_file = Some(public.clone());
            config.auth.issuer = Some("https://id.example.com".into());
            config.auth.audience = Some("orgs".into());
        })
        .await;
        let private = std::fs::read(fixtures.join(format!("{name}-private.pem"))).unwrap();
        let key = if name == "rs256" {
            EncodingKey::from_rsa_pem(&private).unwrap()
        } else {
            EncodingKey::from_ec_pem(&private).unwrap()
        };
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
        };
        let good = sign(
            serde_json::json!({"sub": "user_k", "exp": now() + 600, "iss": "https://id.example.com", "aud": "orgs"}),
        );
        let ok = raw_call(
            app.channel(),
            "/orgs.v1.OrganizationService/ListRoles",
            Some(format!("Bearer {good}")),
        )
        .await;
        assert_eq!(ok.code(), Code::Ok, "{name}: {ok:?}");
        let wrong_issuer = sign(
            serde_json::json!({"sub": "user_k", "exp": now() + 600, "iss": "https://evil.example.com", "aud": "orgs"}),
        );
        let wrong_audience = sign(
            serde_json::json!({"sub": "user_k", "exp": now() + 600, "iss": "https://id.example.com", "aud": "other"}),
        );
        let hs256 = signed(
            serde_json::json!({"sub": "user_k", "exp": now() + 600, "iss": "https://id.example.com", "aud": "orgs"}),
            SECRET,
        );
        for (case, token) in [
            ("issuer", wrong_issuer),
            ("audience", wrong_audience),
            ("hs256 instead", hs256),
        ] {
            let status = raw_call(
                app.channel(),
                "/orgs.v1.OrganizationService/ListRoles",
                Some(format!("Bearer {token}")),
            )
            .await;
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{name} {case}: {status:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_server_without_a_key_refuses_to_start() {
    let url = fresh_database_url().await;
    let mut config = orgs::ServeConfig::for_tests(&url, "");
    config.auth.hs256_secret = None;
    let err = orgs::App::build(config, std::sync::Arc::new(orgs::domain::time::SystemClock))
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("ORGS_AUTH_HS256_SECRET"), "{err}");
}

/// The callers of the role matrix.
#[derive(Debug, Clone, Copy)]
enum Who {
    Outsider,
    Member,
    OrgAdmin,
    Reader,
    Platform,
}

const EVERYONE: [Who; 5] = [
    Who::Outsider,
    Who::Member,
    Who::OrgAdmin,
    Who::Reader,
    Who::Platform,
];

fn client(app: &TestApp, who: Who) -> Orgs {
    match who {
        Who::Outsider => app.user("user_outsider"),
        Who::Member => app.user("user_member"),
        Who::OrgAdmin => app.user("user_owner"),
        Who::Reader => app.orgs(Some(token("svc-reader", "orgs:read"))),
        Who::Platform => app.admin(),
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Checks one RPC for every caller: `expected` lists the code for Outsider,
/// Member, OrgAdmin, Reader, Platform (OK = allowed).
async fn check<F, Fut>(app: &TestApp, rpc: &str, expected: [Code; 5], call: F)
where
    F: Fn(Orgs, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    for (who, code) in EVERYONE.iter().zip(expected) {
        let organization = create_org(app, &format!("{rpc} {who:?}"), Some("user_owner")).await;
        add_member(app, &organization.id, "user_member", "org:member").await;
        add_member(app, &organization.id, "user_victim", "org:member").await;
        let result = call(client(app, *who), organization.id.clone()).await;
        match result {
            Ok(()) => assert_eq!(code, Code::Ok, "{rpc} as {who:?} was allowed"),
            Err(status) => {
                assert_eq!(status.code(), code, "{rpc} as {who:?}: {status:?}");
                if code == Code::NotFound {
                    assert_eq!(
                        reason(&status),
                        "ORGANIZATION_NOT_FOUND",
                        "{rpc} as {who:?}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn organization_service_role_matrix() {
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD};
    let app = TestApp::spawn().await;
    let get = |id: String| pb::GetOrganizationRequest {
        lookup: Some(pb::get_organization_request::Lookup::OrganizationId(id)),
    };
    check(
        &app,
        "GetOrganization",
        [NF, OK, OK, OK, OK],
        |mut c, id| async move { c.get_organization(get(id)).await.map(|_| ()) },
    )
    .await;
    check(
        &app,
        "UpdateOrganization",
        [NF, PD, OK, PD, OK],
        |mut c, id| async move {
            c.update_organization(pb::UpdateOrganizationRequest {
                organization: Some(pb::Organization {
                    id,
                    name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "UpdateOrganizationMetadata",
        [NF, PD, OK, PD, OK],
        |mut c, id| async move {
            c.update_organization_metadata(pb::UpdateOrganizationMetadataRequest {
                organization_id: id,
                ..Default::default()
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "DeleteOrganization",
        [NF, PD, OK, PD, OK],
        |mut c, id| async move {
            c.delete_organization(pb::DeleteOrganizationRequest {
                organization_id: id,
                ..Default::default()
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "CreateMembership",
        [NF, PD, OK, PD, OK],
        |mut c, id| async move {
            c.create_membership(pb::CreateMembershipRequest {
                organization_id: id,
                user_id: "user_new".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "ListMemberships",
        [NF, OK, OK, OK, OK],
        |mut c, id| async move {
            c.list_memberships(pb::ListMembershipsRequest {
                organization_id: id,
                ..Default::default()
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "UpdateMembership",
        [NF, PD, OK, PD, OK],
        |mut c, id| async move {
            c.update_membership(pb::UpdateMembershipRequest {
                membership: Some(pb::Membership {
                    organization_id: id,
                    user_id: "user_victim".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["public_metadata"]),
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "DeleteMembership",
        [NF, PD, OK, PD, OK],
        |mut c, id| async move {
            c.delete_membership(pb::DeleteMembershipRequest {
                organization_id: id,
                user_id: "user_victim".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "CheckPermission",
        [PD, OK, PD, OK, OK],
        |mut c, id| async move {
            c.check_permission(pb::CheckPermissionRequest {
                organization_id: id,
                user_id: "user_member".into(),
                permission: "org:sys_memberships:read".into(),
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "ListAuditEvents",
        [NF, PD, OK, OK, OK],
        |mut c, id| async move {
            c.list_audit_events(pb::ListAuditEventsRequest {
                organization_id: id,
                ..Default::default()
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "CreateOrganization",
        // orgs:read is read-only: it never creates, or becomes a member of,
        // anything.
        [OK, OK, OK, PD, OK],
        |mut c, _| async move {
            c.create_organization(pb::CreateOrganizationRequest {
                name: "Anyone".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "ListOrganizations",
        [OK, OK, OK, OK, OK],
        |mut c, _| async move {
            c.list_organizations(pb::ListOrganizationsRequest::default())
                .await
                .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "GetRole",
        [OK, OK, OK, OK, OK],
        |mut c, _| async move {
            c.get_role(pb::GetRoleRequest {
                key: "org:admin".into(),
            })
            .await
            .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "ListRoles",
        [OK, OK, OK, OK, OK],
        |mut c, _| async move {
            c.list_roles(pb::ListRolesRequest::default())
                .await
                .map(|_| ())
        },
    )
    .await;
    check(
        &app,
        "ListPermissions",
        [OK, OK, OK, OK, OK],
        |mut c, _| async move {
            c.list_permissions(pb::ListPermissionsRequest::default())
                .await
                .map(|_| ())
        },
    )
    .await;
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next = move || counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let n = next.clone();
    check(
        &app,
        "CreatePermission",
        [PD, PD, PD, PD, OK],
        move |mut c, _| {
            let key = format!("org:feature{}:use", n());
            async move {
                c.create_permission(pb::CreatePermissionRequest {
                    key,
                    name: "P".into(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
        },
    )
    .await;
    let n = next.clone();
    check(&app, "CreateRole", [PD, PD, PD, PD, OK], move |mut c, _| {
        let key = format!("org:role{}", n());
        async move {
            c.create_role(pb::CreateRoleRequest {
                key,
                name: "R".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
        }
    })
    .await;
    for i in 0..5 {
        app.admin()
            .create_role(pb::CreateRoleRequest {
                key: format!("org:doomed{i}"),
                name: "D".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        app.admin()
            .create_permission(pb::CreatePermissionRequest {
                key: format!("org:doomed{i}:x"),
                name: "D".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let n = next.clone();
    check(&app, "UpdateRole", [PD, PD, PD, PD, OK], move |mut c, _| {
        let key = format!("org:role{}", n() % 5 + 5);
        async move {
            c.update_role(pb::UpdateRoleRequest {
                role: Some(pb::Role {
                    key,
                    name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            })
            .await
            .map(|_| ())
        }
    })
    .await;
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let m = n.clone();
    check(&app, "DeleteRole", [PD, PD, PD, PD, OK], move |mut c, _| {
        let key = format!(
            "org:doomed{}",
            m.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        async move {
            c.delete_role(pb::DeleteRoleRequest { key })
                .await
                .map(|_| ())
        }
    })
    .await;
    let m = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    check(
        &app,
        "DeletePermission",
        [PD, PD, PD, PD, OK],
        move |mut c, _| {
            let key = format!(
                "org:doomed{}:x",
                m.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            );
            async move {
                c.delete_permission(pb::DeletePermissionRequest { key })
                    .await
                    .map(|_| ())
            }
        },
    )
    .await;
}
