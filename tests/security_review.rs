//! One test per finding of the security review (issue 9), each named after
//! its finding and failing without its fix. The token findings (iss/aud, aud
//! arrays, nbf, short secrets) are in tests/tokens.rs, the replayed
//! invitation in tests/invitations.rs, the span names in tests/operations.rs,
//! keys in tests/keys.rs and TLS in tests/tls.rs.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use orgs::auth::token::{TokenRequest, mint_hs256};
use orgs::domain::keys::ServerKey;
use orgs::proto::v1 as pb;
use prost_types::FieldMask;
use sha2::{Digest, Sha256};
use tonic::Code;

fn invitations_as(app: &TestApp, token: String) -> Invitations {
    app.invitations(Some(token))
}

fn admin_invitations(app: &TestApp) -> Invitations {
    app.invitations(Some(token("svc-onboarding", "orgs:admin")))
}

/// A token of `sub` claiming `email` without the identity provider vouching
/// for it (`email_verified: false`).
fn unverified_token(sub: &str, email: &str) -> String {
    mint_hs256(
        SECRET,
        &TokenRequest {
            sub: sub.into(),
            ttl_seconds: 3600,
            email: Some(email.into()),
            email_verified: false,
            ..Default::default()
        },
    )
    .expect("mint token")
}

async fn invite(app: &TestApp, organization_id: &str, email: &str) -> pb::CreateInvitationResponse {
    admin_invitations(app)
        .create_invitation(pb::CreateInvitationRequest {
            organization_id: organization_id.into(),
            email_address: email.into(),
            ..Default::default()
        })
        .await
        .expect("invitation")
        .into_inner()
}

/// An organization owned by `user_owner` with a verified automatic-suggestion
/// domain `name`.
async fn org_with_domain(app: &TestApp, org_name: &str, name: &str) -> pb::Organization {
    let org = create_org(app, org_name, Some("user_owner")).await;
    admin_invitations(app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.id.clone(),
            name: name.into(),
            enrollment_mode: pb::EnrollmentMode::AutomaticSuggestion as i32,
            verified: true,
            ..Default::default()
        })
        .await
        .expect("domain");
    org
}

fn resolve(user_id: &str, email: &str) -> pb::ResolveOnboardingRequest {
    pb::ResolveOnboardingRequest {
        user_id: user_id.into(),
        email_address: email.into(),
    }
}

// ---- High: emails are taken on the caller's word --------------------------

#[tokio::test]
async fn emails_from_tokens_resolve_onboarding() {
    let app = TestApp::spawn().await;
    let org = org_with_domain(&app, "Victim", "victim-corp.com").await;
    invite(&app, &org.id, "ann@example.com").await;

    // Without a verified address in the token: nothing to resolve with.
    for token in [
        token("user_mallory", ""),
        unverified_token("user_mallory", "ann@example.com"),
    ] {
        assert_status(
            invitations_as(&app, token)
                .resolve_onboarding(resolve("user_mallory", "ann@example.com"))
                .await,
            Code::FailedPrecondition,
            "EMAIL_NOT_VERIFIED",
        );
    }
    // Another person's address: refused, and another person's invitations
    // are not listed.
    let mallory = verified_token("user_mallory", "mallory@example.com");
    assert_status(
        invitations_as(&app, mallory.clone())
            .resolve_onboarding(resolve("user_mallory", "ann@example.com"))
            .await,
        Code::PermissionDenied,
        "EMAIL_MISMATCH",
    );
    assert_status(
        invitations_as(&app, mallory.clone())
            .resolve_onboarding(resolve("user_mallory", "someone@victim-corp.com"))
            .await,
        Code::PermissionDenied,
        "EMAIL_MISMATCH",
    );
    let own = invitations_as(&app, mallory)
        .resolve_onboarding(resolve("user_mallory", ""))
        .await
        .expect("resolve with the token's address")
        .into_inner();
    assert!(own.invitations.is_empty(), "{:?}", own.invitations);
    assert!(own.suggestions.is_empty(), "{:?}", own.suggestions);

    // The invited person, with the address its token vouches for.
    let ann = invitations_as(&app, verified_token("user_ann", "ann@example.com"))
        .resolve_onboarding(resolve("user_ann", ""))
        .await
        .expect("resolve")
        .into_inner();
    assert_eq!(ann.invitations.len(), 1);
    // orgs:admin (the service that verified the address) passes it.
    let by_admin = admin_invitations(&app)
        .resolve_onboarding(resolve("user_ann", "ann@example.com"))
        .await
        .expect("resolve as orgs:admin")
        .into_inner();
    assert_eq!(by_admin.invitations.len(), 1);
    assert_invalid(
        admin_invitations(&app)
            .resolve_onboarding(resolve("user_ann", ""))
            .await,
        "email_address",
    );
}

#[tokio::test]
async fn emails_from_tokens_create_membership_request() {
    let app = TestApp::spawn().await;
    let org = org_with_domain(&app, "Victim", "victim-corp.com").await;
    let request = |email: &str| pb::CreateMembershipRequestRequest {
        organization_id: org.id.clone(),
        user_id: "user_mallory".into(),
        email_address: email.into(),
        ..Default::default()
    };
    for token in [
        token("user_mallory", ""),
        unverified_token("user_mallory", "eve@victim-corp.com"),
    ] {
        assert_status(
            invitations_as(&app, token)
                .create_membership_request(request("eve@victim-corp.com"))
                .await,
            Code::FailedPrecondition,
            "EMAIL_NOT_VERIFIED",
        );
    }
    // Claiming an address at the verified domain that is not its own.
    assert_status(
        invitations_as(&app, verified_token("user_mallory", "mallory@example.com"))
            .create_membership_request(request("eve@victim-corp.com"))
            .await,
        Code::PermissionDenied,
        "EMAIL_MISMATCH",
    );
    // Its own address is not at the domain.
    assert_status(
        invitations_as(&app, verified_token("user_mallory", "mallory@example.com"))
            .create_membership_request(request(""))
            .await,
        Code::FailedPrecondition,
        "DOMAIN_NOT_ELIGIBLE",
    );
    let created = invitations_as(&app, verified_token("user_mallory", "eve@victim-corp.com"))
        .create_membership_request(request(""))
        .await
        .expect("a verified address at the domain")
        .into_inner()
        .membership_request
        .expect("membership request");
    assert_eq!(created.email_address, "eve@victim-corp.com");
    // orgs:admin passes the address.
    admin_invitations(&app)
        .create_membership_request(pb::CreateMembershipRequestRequest {
            user_id: "user_fred".into(),
            ..request("fred@victim-corp.com")
        })
        .await
        .expect("orgs:admin passes email_address");
}

#[tokio::test]
async fn emails_from_tokens_accept_invitation() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = invite(&app, &org.id, "ann@example.com").await;
    let accept = |email: &str| pb::AcceptInvitationRequest {
        token: created.token.clone(),
        user_id: "user_mallory".into(),
        email_address: email.into(),
        ..Default::default()
    };
    for token in [
        token("user_mallory", ""),
        unverified_token("user_mallory", "ann@example.com"),
    ] {
        assert_status(
            invitations_as(&app, token)
                .accept_invitation(accept("ann@example.com"))
                .await,
            Code::FailedPrecondition,
            "EMAIL_NOT_VERIFIED",
        );
    }
    let mallory = verified_token("user_mallory", "mallory@example.com");
    // Sending the invited address does not make it the caller's.
    assert_status(
        invitations_as(&app, mallory.clone())
            .accept_invitation(accept("ann@example.com"))
            .await,
        Code::PermissionDenied,
        "EMAIL_MISMATCH",
    );
    // The token's address is not the invited one.
    assert_status(
        invitations_as(&app, mallory)
            .accept_invitation(accept(""))
            .await,
        Code::PermissionDenied,
        "EMAIL_MISMATCH",
    );
    let accepted = invitations_as(&app, verified_token("user_ann", "ann@example.com"))
        .accept_invitation(pb::AcceptInvitationRequest {
            user_id: "user_ann".into(),
            ..accept("")
        })
        .await
        .expect("the invited person accepts")
        .into_inner();
    assert_eq!(accepted.membership.expect("membership").user_id, "user_ann");
    // orgs:admin passes the address.
    let second = invite(&app, &org.id, "bob@example.com").await;
    admin_invitations(&app)
        .accept_invitation(pb::AcceptInvitationRequest {
            token: second.token,
            user_id: "user_bob".into(),
            email_address: "bob@example.com".into(),
            ..Default::default()
        })
        .await
        .expect("orgs:admin passes email_address");
}

// ---- Medium: no role ceiling ----------------------------------------------

const MANAGER: &str = "org:manager";

/// An organization where `user_manager` holds a custom role with only
/// `org:sys_memberships:manage`, `user_member` is an `org:member`.
async fn org_with_manager(app: &TestApp) -> pb::Organization {
    app.admin()
        .create_role(pb::CreateRoleRequest {
            key: MANAGER.into(),
            name: "Manager".into(),
            permissions: vec!["org:sys_memberships:manage".into()],
            ..Default::default()
        })
        .await
        .expect("role");
    let org = create_org(app, "Acme", Some("user_owner")).await;
    add_member(app, &org.id, "user_manager", MANAGER).await;
    add_member(app, &org.id, "user_member", "org:member").await;
    org
}

fn role_mask() -> Option<FieldMask> {
    Some(FieldMask {
        paths: vec!["role".into()],
    })
}

#[tokio::test]
async fn role_ceiling_create_and_update_membership() {
    let app = TestApp::spawn().await;
    let org = org_with_manager(&app).await;
    let manager = app.user("user_manager");
    let create = |user: &str, role: &str| pb::CreateMembershipRequest {
        organization_id: org.id.clone(),
        user_id: user.into(),
        role: role.into(),
        ..Default::default()
    };
    assert_status(
        manager
            .clone()
            .create_membership(create("user_sock", "org:admin"))
            .await,
        Code::PermissionDenied,
        "ROLE_ABOVE_CALLER",
    );
    // org:member grants org:sys_memberships:read, which the manager lacks.
    assert_status(
        manager
            .clone()
            .create_membership(create("user_sock", "org:member"))
            .await,
        Code::PermissionDenied,
        "ROLE_ABOVE_CALLER",
    );
    manager
        .clone()
        .create_membership(create("user_sock", MANAGER))
        .await
        .expect("a role within the caller's");

    let update = |user: &str, role: &str| pb::UpdateMembershipRequest {
        membership: Some(pb::Membership {
            organization_id: org.id.clone(),
            user_id: user.into(),
            role: role.into(),
            ..Default::default()
        }),
        update_mask: role_mask(),
    };
    // Promoting itself, or the account it just added.
    for user in ["user_manager", "user_sock"] {
        assert_status(
            manager
                .clone()
                .update_membership(update(user, "org:admin"))
                .await,
            Code::PermissionDenied,
            "ROLE_ABOVE_CALLER",
        );
    }
    let roles = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: org.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .memberships;
    assert!(
        roles
            .iter()
            .filter(|m| m.user_id == "user_manager" || m.user_id == "user_sock")
            .all(|m| m.role == MANAGER),
        "{roles:?}"
    );
    manager
        .clone()
        .update_membership(update("user_member", MANAGER))
        .await
        .expect("a role within the caller's");
    // The org:admin and a platform principal have no ceiling to hit.
    app.user("user_owner")
        .update_membership(update("user_member", "org:admin"))
        .await
        .expect("org:admin gives org:admin");
    app.admin()
        .create_membership(create("user_platform_made", "org:admin"))
        .await
        .expect("orgs:admin has no ceiling");
}

#[tokio::test]
async fn role_ceiling_invitations() {
    let app = TestApp::spawn().await;
    let org = org_with_manager(&app).await;
    let manager = invitations_as(&app, token("user_manager", ""));
    let invitation = |email: &str, role: &str| pb::CreateInvitationRequest {
        organization_id: org.id.clone(),
        email_address: email.into(),
        role: role.into(),
        ..Default::default()
    };
    assert_status(
        manager
            .clone()
            .create_invitation(invitation("sock@example.com", "org:admin"))
            .await,
        Code::PermissionDenied,
        "ROLE_ABOVE_CALLER",
    );
    let batch = manager
        .clone()
        .create_invitations(pb::CreateInvitationsRequest {
            requests: vec![
                invitation("sock@example.com", "org:admin"),
                invitation("ok@example.com", MANAGER),
            ],
        })
        .await
        .expect("a batch answers per item")
        .into_inner()
        .results;
    let error = batch[0].error.as_ref().expect("the admin item fails");
    assert_eq!(error.code, Code::PermissionDenied as i32);
    assert_eq!(error.reason, "ROLE_ABOVE_CALLER");
    assert!(batch[1].error.is_none(), "{:?}", batch[1]);
    // A platform principal has no ceiling.
    admin_invitations(&app)
        .create_invitation(invitation("sock@example.com", "org:admin"))
        .await
        .expect("orgs:admin invites with any role");
}

#[tokio::test]
async fn role_ceiling_accept_membership_request() {
    let app = TestApp::spawn_with(|c| c.rules.default_role = "org:admin".into()).await;
    app.admin()
        .create_role(pb::CreateRoleRequest {
            key: MANAGER.into(),
            name: "Manager".into(),
            permissions: vec![
                "org:sys_memberships:manage".into(),
                "org:sys_memberships:read".into(),
            ],
            ..Default::default()
        })
        .await
        .expect("role");
    let org = org_with_domain(&app, "Acme", "acme-corp.com").await;
    add_member(&app, &org.id, "user_manager", MANAGER).await;
    let request = admin_invitations(&app)
        .create_membership_request(pb::CreateMembershipRequestRequest {
            organization_id: org.id.clone(),
            user_id: "user_sock".into(),
            email_address: "sock@acme-corp.com".into(),
            ..Default::default()
        })
        .await
        .expect("request")
        .into_inner()
        .membership_request
        .expect("request");
    let accept = pb::AcceptMembershipRequestRequest {
        membership_request_id: request.id.clone(),
        ..Default::default()
    };
    // The request's role (the default role, here org:admin) is above the
    // manager's.
    assert_status(
        invitations_as(&app, token("user_manager", ""))
            .accept_membership_request(accept.clone())
            .await,
        Code::PermissionDenied,
        "ROLE_ABOVE_CALLER",
    );
    let accepted = admin_invitations(&app)
        .accept_membership_request(accept)
        .await
        .expect("orgs:admin has no ceiling")
        .into_inner();
    assert_eq!(accepted.membership.expect("membership").role, "org:admin");
}

// ---- Medium: orgs:read acts like orgs:admin --------------------------------

#[tokio::test]
async fn orgs_read_is_read_only() {
    let app = TestApp::spawn().await;
    let reader_token = token("svc-reader", "orgs:read");
    let reader = app.orgs(Some(reader_token.clone()));
    let reader_invitations = invitations_as(&app, reader_token);
    for created_by in ["", "svc-reader", "user_someone"] {
        assert_status(
            reader
                .clone()
                .create_organization(pb::CreateOrganizationRequest {
                    name: "Read only".into(),
                    created_by: created_by.into(),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    let all = app
        .admin()
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(all.total_size, 0, "{:?}", all.organizations);

    let org = org_with_domain(&app, "Acme", "acme-corp.com").await;
    let unverified = admin_invitations(&app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.id.clone(),
            name: "acme-labs.com".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            ..Default::default()
        })
        .await
        .expect("domain")
        .into_inner()
        .domain
        .expect("domain");
    // No verification codes, no pre-verified domains.
    assert_status(
        reader_invitations
            .clone()
            .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
                domain_id: unverified.id.clone(),
                affiliation_email_address: "it@acme-labs.com".into(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        reader_invitations
            .clone()
            .create_domain(pb::CreateDomainRequest {
                organization_id: org.id.clone(),
                name: "acme-squat.com".into(),
                enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                verified: true,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // It never joins anything for itself.
    let created = invite(&app, &org.id, "reader@acme-corp.com").await;
    assert_status(
        reader_invitations
            .clone()
            .accept_invitation(pb::AcceptInvitationRequest {
                token: created.token,
                user_id: "svc-reader".into(),
                email_address: "reader@acme-corp.com".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        reader_invitations
            .clone()
            .create_membership_request(pb::CreateMembershipRequestRequest {
                organization_id: org.id.clone(),
                user_id: "svc-reader".into(),
                email_address: "reader@acme-corp.com".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let memberships = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            user_id: "svc-reader".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(memberships.total_size, 0);
    // It still reads.
    reader
        .clone()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: org.id.clone(),
            ..Default::default()
        })
        .await
        .expect("orgs:read reads");
}

// ---- Low: page tokens and watch cursors -----------------------------------

/// The format page tokens and cursors had before they were authenticated: a
/// SHA-256 over a public constant and the length-prefixed parts, first 12
/// bytes in hex. Anyone can compute it.
fn public_checksum(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"orgs.v1 page token");
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..12])
}

/// The query fingerprint and the position of a token the server made.
fn opened(token: &str) -> (String, Vec<String>) {
    let bytes = URL_SAFE_NO_PAD.decode(token).expect("base64");
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    let q = json["q"].as_str().expect("q").to_string();
    let k = json["k"]
        .as_array()
        .expect("k")
        .iter()
        .map(|v| v.as_str().expect("part").to_string())
        .collect();
    (q, k)
}

/// Tokens for `q` and `k` anyone could make: with the old public checksum (in
/// its old field, and in the new one), and with a key that is not the
/// server's.
fn forgeries(q: &str, k: &[String]) -> Vec<String> {
    let mut parts = vec![q];
    parts.extend(k.iter().map(String::as_str));
    let checksum = public_checksum(&parts);
    let other_key = ServerKey::new(b"not the key of this deployment".to_vec());
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    [
        serde_json::json!({"q": q, "k": k, "c": checksum}),
        serde_json::json!({"q": q, "k": k, "m": checksum}),
        serde_json::json!({"q": q, "k": k, "m": other_key.mac_hex(&bytes)}),
    ]
    .iter()
    .map(|token| URL_SAFE_NO_PAD.encode(token.to_string()))
    .collect()
}

#[tokio::test]
async fn page_tokens_are_authenticated() {
    let app = TestApp::spawn().await;
    for n in 0..3 {
        create_org(&app, &format!("Org {n}"), None).await;
    }
    let list = |page_token: String| pb::ListOrganizationsRequest {
        page_size: 1,
        page_token,
        order_by: "name".into(),
        ..Default::default()
    };
    let first = app
        .admin()
        .list_organizations(list(String::new()))
        .await
        .expect("first page")
        .into_inner();
    let (q, k) = opened(&first.next_page_token);
    // The token the server made works; the same position under a forged
    // checksum or another key does not.
    app.admin()
        .list_organizations(list(first.next_page_token.clone()))
        .await
        .expect("a genuine token");
    for forged in forgeries(&q, &k) {
        let status = assert_status(
            app.admin().list_organizations(list(forged)).await,
            Code::InvalidArgument,
            "PAGE_TOKEN_INVALID",
        );
        assert_eq!(bad_fields(&status), ["page_token"]);
    }
}

async fn watch(
    app: &TestApp,
    start_cursor: &str,
) -> Result<tonic::Streaming<pb::WatchBillableOrganizationsResponse>, tonic::Status> {
    app.billing(Some(token("svc-billing", "billing:read")))
        .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
            start_cursor: start_cursor.into(),
            send_initial_state: false,
        })
        .await
        .map(|response| response.into_inner())
}

#[tokio::test]
async fn watch_cursors_are_authenticated_and_aged_by_the_log() {
    let app = TestApp::spawn_with(|c| {
        c.watch_checkpoint_interval_secs = 1;
        c.watch_retention_days = 30;
    })
    .await;
    let mut stream = watch(&app, "").await.expect("watch");
    let first = stream
        .message()
        .await
        .expect("a message")
        .expect("not ended");
    let cursor = first.cursor;
    drop(stream);
    // A change the cursor has not seen, then more than the retention.
    create_org(&app, "Changed after the cursor", None).await;
    app.clock.advance(chrono::Duration::days(31));
    assert_status(
        watch(&app, &cursor).await,
        Code::OutOfRange,
        "CURSOR_EXPIRED",
    );

    // Nothing the client sends makes it fresh: the same position with an
    // issue time of now, or from the start of the log, under the old public
    // checksum or another key, is not a cursor of this server.
    let (q, k) = opened(&cursor);
    let now = orgs::domain::time::Clock::now(&app.clock).timestamp_micros();
    let positions = [
        vec![k[0].clone(), now.to_string()],
        vec!["0".to_string(), now.to_string()],
        vec!["0".to_string()],
        k.clone(),
    ];
    for position in positions {
        for forged in forgeries(&q, &position) {
            let status = assert_status(
                watch(&app, &forged).await,
                Code::InvalidArgument,
                "CURSOR_INVALID",
            );
            assert_eq!(bad_fields(&status), ["start_cursor"]);
        }
    }
}

// ---- Low: a retried CreateInvitation loses its token -----------------------
// tests/invitations.rs `token_is_returned_once_with_its_url_and_stored_only_as_a_hash`.

// ---- Low: two RPCs reveal whether an organization exists ------------------

/// A well-formed id of an organization that does not exist (any more).
async fn missing_org(app: &TestApp) -> String {
    let org = create_org(app, "Gone", None).await;
    app.admin()
        .delete_organization(pb::DeleteOrganizationRequest {
            organization_id: org.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete");
    org.id
}

fn same_answer(existing: tonic::Status, missing: tonic::Status) {
    assert_eq!(
        existing.code(),
        missing.code(),
        "{existing:?} / {missing:?}"
    );
    assert_eq!(reason(&existing), reason(&missing));
    assert_eq!(existing.message(), missing.message());
}

#[tokio::test]
async fn no_existence_leaks_delete_membership() {
    let app = TestApp::spawn().await;
    let existing = create_org(&app, "Acme", Some("user_owner")).await.id;
    let missing = missing_org(&app).await;
    let leave = |organization_id: &str| pb::DeleteMembershipRequest {
        organization_id: organization_id.into(),
        user_id: "user_outsider".into(),
        ..Default::default()
    };
    let outsider = app.user("user_outsider");
    let a = outsider.clone().delete_membership(leave(&existing)).await;
    let b = outsider.clone().delete_membership(leave(&missing)).await;
    assert_eq!(
        reason(a.as_ref().expect_err("not a member")),
        "ORGANIZATION_NOT_FOUND"
    );
    same_answer(
        a.expect_err("not a member"),
        b.expect_err("no organization"),
    );
}

#[tokio::test]
async fn no_existence_leaks_create_membership_request() {
    let app = TestApp::spawn().await;
    let existing = create_org(&app, "Acme", Some("user_owner")).await.id;
    let missing = missing_org(&app).await;
    let ask = |organization_id: &str| pb::CreateMembershipRequestRequest {
        organization_id: organization_id.into(),
        user_id: "user_outsider".into(),
        email_address: "out@elsewhere.com".into(),
        ..Default::default()
    };
    let outsider = invitations_as(&app, verified_token("user_outsider", "out@elsewhere.com"));
    let a = outsider
        .clone()
        .create_membership_request(ask(&existing))
        .await;
    let b = outsider
        .clone()
        .create_membership_request(ask(&missing))
        .await;
    same_answer(
        a.expect_err("not eligible"),
        b.expect_err("no organization"),
    );
}

// ---- Low: links and attribution -------------------------------------------

#[tokio::test]
async fn redirect_urls_are_https_to_allowed_hosts() {
    let app = TestApp::spawn_with(|c| {
        c.rules.invitation_redirect_hosts = vec!["app.example.org".into(), "*.example.com".into()];
    })
    .await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let mut n = 0;
    let mut invite_to = |url: &str| {
        n += 1;
        pb::CreateInvitationRequest {
            organization_id: org.id.clone(),
            email_address: format!("guest{n}@example.net"),
            redirect_url: url.into(),
            ..Default::default()
        }
    };
    for url in [
        "http://app.example.org/join",
        "https://evil.example.net/join",
        "https://example.com/join",
        "https://evilexample.com/join",
        "https://app.example.org.evil.net/join",
        "javascript:alert(1)",
    ] {
        assert_invalid(
            admin_invitations(&app)
                .create_invitation(invite_to(url))
                .await,
            "redirect_url",
        );
    }
    for url in [
        "https://app.example.org/join",
        "https://tenant.example.com/join",
    ] {
        let created = admin_invitations(&app)
            .create_invitation(invite_to(url))
            .await
            .unwrap_or_else(|status| panic!("{url}: {status:?}"))
            .into_inner();
        assert!(created.url.starts_with(url), "{}", created.url);
    }
}

#[tokio::test]
async fn redirect_urls_over_http_only_to_localhost() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let invite_to = |n: usize, url: &str| pb::CreateInvitationRequest {
        organization_id: org.id.clone(),
        email_address: format!("guest{n}@example.net"),
        redirect_url: url.into(),
        ..Default::default()
    };
    assert_invalid(
        admin_invitations(&app)
            .create_invitation(invite_to(1, "http://app.example.com/join"))
            .await,
        "redirect_url",
    );
    for (n, url) in [
        "http://localhost:3000/join",
        "http://127.0.0.1:3000/join",
        "https://any.example.com/join",
    ]
    .iter()
    .enumerate()
    {
        admin_invitations(&app)
            .create_invitation(invite_to(n + 2, url))
            .await
            .unwrap_or_else(|status| panic!("{url}: {status:?}"));
    }
}

#[tokio::test]
async fn inviter_of_an_end_user_is_itself() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let owner = invitations_as(&app, token("user_owner", ""));
    let invitation = |email: &str, inviter: &str| pb::CreateInvitationRequest {
        organization_id: org.id.clone(),
        email_address: email.into(),
        inviter_user_id: inviter.into(),
        ..Default::default()
    };
    assert_status(
        owner
            .clone()
            .create_invitation(invitation("a@example.com", "user_ceo"))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    for (email, inviter) in [("b@example.com", "user_owner"), ("c@example.com", "")] {
        let created = owner
            .clone()
            .create_invitation(invitation(email, inviter))
            .await
            .expect("invite as itself")
            .into_inner();
        assert_eq!(
            created.invitation.expect("invitation").inviter_user_id,
            "user_owner"
        );
    }
    // A platform principal names the inviter it acts for.
    let created = admin_invitations(&app)
        .create_invitation(invitation("d@example.com", "user_ceo"))
        .await
        .expect("orgs:admin names the inviter")
        .into_inner();
    assert_eq!(
        created.invitation.expect("invitation").inviter_user_id,
        "user_ceo"
    );
}

// ---- Low: audit -------------------------------------------------------------

async fn audit_actions(app: &TestApp, organization_id: &str) -> Vec<(String, String, String)> {
    app.admin()
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: organization_id.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .audit_events
        .into_iter()
        .map(|e| (e.action, e.actor, e.resource_id))
        .collect()
}

#[tokio::test]
async fn audit_failed_domain_verification() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let domain = admin_invitations(&app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.id.clone(),
            name: "acme-corp.com".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            ..Default::default()
        })
        .await
        .expect("domain")
        .into_inner()
        .domain
        .expect("domain");
    let owner = invitations_as(&app, token("user_owner", ""));
    owner
        .clone()
        .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
            domain_id: domain.id.clone(),
            affiliation_email_address: "it@acme-corp.com".into(),
        })
        .await
        .expect("prepare");
    let failed = owner
        .clone()
        .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
            domain_id: domain.id.clone(),
            code: "not-a-code".into(),
        })
        .await;
    // Whatever the code's shape, the attempt failed ...
    let failed = failed.expect_err("a wrong code");
    assert_ne!(failed.code(), Code::Ok);
    let wrong = owner
        .clone()
        .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
            domain_id: domain.id.clone(),
            code: "000000".into(),
        })
        .await;
    let wrong = wrong.expect_err("a wrong code");
    assert_eq!(wrong.code(), Code::FailedPrecondition, "{wrong:?}");
    // ... and is in the trail, with who tried it.
    let trail = audit_actions(&app, &org.id).await;
    assert!(
        trail.contains(&(
            "AttemptDomainVerification".to_string(),
            "user_owner".to_string(),
            domain.id.clone()
        )),
        "{trail:?}"
    );
}

#[tokio::test]
async fn audit_email_mismatch() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = invite(&app, &org.id, "ann@example.com").await;
    let invitation_id = created.invitation.expect("invitation").id;
    assert_status(
        invitations_as(&app, verified_token("user_mallory", "mallory@example.com"))
            .accept_invitation(pb::AcceptInvitationRequest {
                token: created.token,
                user_id: "user_mallory".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "EMAIL_MISMATCH",
    );
    let trail = audit_actions(&app, &org.id).await;
    assert!(
        trail.contains(&(
            "AcceptInvitation".to_string(),
            "user_mallory".to_string(),
            invitation_id
        )),
        "{trail:?}"
    );
}
