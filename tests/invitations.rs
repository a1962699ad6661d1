//! InvitationService through the generated client against a real server, on
//! SQLite or PostgreSQL (`ORGS_TEST_DATABASE_URL`).

mod common;

use common::*;
use orgs::proto::v1 as pb;
use prost_types::{FieldMask, Struct, Value, value::Kind};
use tonic::{Code, Status};

const ADMIN_SUB: &str = "svc-onboarding";

fn admin(app: &TestApp) -> Invitations {
    app.invitations(Some(token(ADMIN_SUB, "orgs:admin")))
}

fn reader(app: &TestApp) -> Invitations {
    app.invitations(Some(token("svc-reporting", "orgs:read")))
}

fn user(app: &TestApp, sub: &str) -> Invitations {
    app.invitations(Some(token(sub, "")))
}

/// An end user whose identity provider vouches for `email`.
fn user_with_email(app: &TestApp, sub: &str, email: &str) -> Invitations {
    app.invitations(Some(verified_token(sub, email)))
}

fn strings(pairs: &[(&str, &str)]) -> Option<Struct> {
    Some(Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value {
                        kind: Some(Kind::StringValue(v.to_string())),
                    },
                )
            })
            .collect(),
    })
}

fn invitation_request(organization_id: &str, email: &str) -> pb::CreateInvitationRequest {
    pb::CreateInvitationRequest {
        organization_id: organization_id.into(),
        email_address: email.into(),
        ..Default::default()
    }
}

async fn invite(app: &TestApp, organization_id: &str, email: &str) -> pb::CreateInvitationResponse {
    admin(app)
        .create_invitation(invitation_request(organization_id, email))
        .await
        .expect("create invitation")
        .into_inner()
}

fn accept_request(token: &str, user_id: &str, email: &str) -> pb::AcceptInvitationRequest {
    pb::AcceptInvitationRequest {
        token: token.into(),
        user_id: user_id.into(),
        email_address: email.into(),
        ..Default::default()
    }
}

async fn get_org(app: &TestApp, organization_id: &str) -> pb::Organization {
    app.admin()
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                organization_id.into(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap()
}

async fn org_with_cap(app: &TestApp, created_by: &str, max: i32) -> pb::Organization {
    app.admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: format!("Capped {created_by}"),
            created_by: created_by.into(),
            max_allowed_memberships: max,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap()
}

async fn domain(
    app: &TestApp,
    organization_id: &str,
    name: &str,
    mode: pb::EnrollmentMode,
    verified: bool,
) -> pb::Domain {
    admin(app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: organization_id.into(),
            name: name.into(),
            enrollment_mode: mode as i32,
            verified,
            ..Default::default()
        })
        .await
        .expect("create domain")
        .into_inner()
        .domain
        .unwrap()
}

async fn list_invitations(
    app: &TestApp,
    organization_id: &str,
    status: pb::InvitationStatus,
    email: &str,
) -> pb::ListInvitationsResponse {
    admin(app)
        .list_invitations(pb::ListInvitationsRequest {
            organization_id: organization_id.into(),
            status: status as i32,
            email_address: email.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn members_count(app: &TestApp, organization_id: &str) -> i32 {
    get_org(app, organization_id).await.members_count
}

async fn db(app: &TestApp) -> orgs::store::Db {
    orgs::store::Db::connect(&app.database_url, 1)
        .await
        .unwrap()
}

fn status_of(invitation: &pb::Invitation) -> pb::InvitationStatus {
    pb::InvitationStatus::try_from(invitation.status).unwrap()
}

#[tokio::test]
async fn token_is_returned_once_with_its_url_and_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = admin(&app)
        .create_invitation(pb::CreateInvitationRequest {
            redirect_url: "https://app.example.com/join?from=mail".into(),
            request_id: "invite-1".into(),
            ..invitation_request(&org.id, "ann@example.com")
        })
        .await
        .unwrap()
        .into_inner();
    let invitation = created.invitation.clone().unwrap();
    assert!(invitation.id.starts_with("inv_"));
    assert_eq!(status_of(&invitation), pb::InvitationStatus::Pending);
    assert_eq!(invitation.role, "org:member", "the default role");
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&created.token)
        .unwrap();
    assert_eq!(raw.len(), 32, "256 random bits");
    assert_eq!(
        created.url,
        format!(
            "https://app.example.com/join?from=mail&ticket={}",
            created.token
        )
    );
    let expire = invitation.expire_time.unwrap().seconds;
    let create = invitation.create_time.unwrap().seconds;
    assert_eq!(expire - create, 30 * 24 * 3600, "30 days by default");
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 1);

    // Reads never carry the token.
    let read = admin(&app)
        .get_invitation(pb::GetInvitationRequest {
            invitation_id: invitation.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(read.id, invitation.id);

    // A retry with the same request_id answers the same invitation with a new
    // token (a client that lost the first answer is not stuck); the first
    // token stops working. Neither is anywhere in the database.
    let replay = admin(&app)
        .create_invitation(pb::CreateInvitationRequest {
            redirect_url: "https://app.example.com/join?from=mail".into(),
            request_id: "invite-1".into(),
            ..invitation_request(&org.id, "ann@example.com")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.invitation.unwrap().id, invitation.id);
    assert!(!replay.token.is_empty() && replay.token != created.token);
    assert_eq!(
        replay.url,
        format!(
            "https://app.example.com/join?from=mail&ticket={}",
            replay.token
        )
    );
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 1);

    let db = db(&app).await;
    for token in [&created.token, &replay.token] {
        let pattern = format!("%{token}%");
        for sql in [
            "SELECT COUNT(*) FROM invitations WHERE token_hash LIKE $1 OR id LIKE $1 OR redirect_url LIKE $1 OR public_metadata LIKE $1",
            "SELECT COUNT(*) FROM idempotency_keys WHERE response LIKE $1",
            "SELECT COUNT(*) FROM events WHERE payload LIKE $1",
        ] {
            let found = orgs::store::fetch_i64(db.conn(), sql, orgs::values![pattern.clone()])
                .await
                .unwrap();
            assert_eq!(found, 0, "{sql}");
        }
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(replay.token.as_bytes()));
    let stored = orgs::store::fetch_i64(
        db.conn(),
        "SELECT COUNT(*) FROM invitations WHERE token_hash = $1",
        orgs::values![hash],
    )
    .await
    .unwrap();
    assert_eq!(stored, 1);
    db.close().await;
    assert_status(
        user_with_email(&app, "user_ann", "ann@example.com")
            .accept_invitation(accept_request(
                &created.token,
                "user_ann",
                "ann@example.com",
            ))
            .await,
        Code::NotFound,
        "INVITATION_NOT_FOUND",
    );
    user_with_email(&app, "user_ann", "ann@example.com")
        .accept_invitation(accept_request(&replay.token, "user_ann", "ann@example.com"))
        .await
        .expect("the new token works");
}

#[tokio::test]
async fn emails_are_normalized_and_a_second_pending_invitation_is_refused() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let other = create_org(&app, "Other", Some("user_owner")).await;
    let first = invite(&app, &org.id, "  Ann@Example.COM ").await;
    assert_eq!(first.invitation.unwrap().email_address, "ann@example.com");
    assert_status(
        admin(&app)
            .create_invitation(invitation_request(&org.id, "ann@example.com"))
            .await,
        Code::AlreadyExists,
        "INVITATION_EXISTS",
    );
    // Another organization may invite the same address.
    invite(&app, &other.id, "ann@example.com").await;
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 1);
}

#[tokio::test]
async fn a_current_member_cannot_be_invited_again() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = invite(&app, &org.id, "bob@example.com").await;
    user_with_email(&app, "user_bob", "bob@example.com")
        .accept_invitation(accept_request(
            &created.token,
            "user_bob",
            "bob@example.com",
        ))
        .await
        .unwrap();
    assert_status(
        admin(&app)
            .create_invitation(invitation_request(&org.id, "bob@example.com"))
            .await,
        Code::AlreadyExists,
        "MEMBERSHIP_EXISTS",
    );
    // Once the member left, the address may be invited again.
    app.admin()
        .delete_membership(pb::DeleteMembershipRequest {
            organization_id: org.id.clone(),
            user_id: "user_bob".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    invite(&app, &org.id, "bob@example.com").await;
}

#[tokio::test]
async fn accept_creates_the_membership_with_the_invited_role_and_metadata() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = admin(&app)
        .create_invitation(pb::CreateInvitationRequest {
            role: "org:admin".into(),
            inviter_user_id: "user_owner".into(),
            public_metadata: strings(&[("team", "sales")]),
            private_metadata: strings(&[("plan", "gold")]),
            ..invitation_request(&org.id, "cy@example.com")
        })
        .await
        .unwrap()
        .into_inner();
    let accepted = user_with_email(&app, "user_cy", "CY@example.com")
        .accept_invitation(accept_request(&created.token, "user_cy", "CY@example.com"))
        .await
        .unwrap()
        .into_inner();
    let invitation = accepted.invitation.unwrap();
    assert_eq!(status_of(&invitation), pb::InvitationStatus::Accepted);
    assert_eq!(invitation.accepted_user_id, "user_cy");
    assert!(
        invitation.private_metadata.is_none(),
        "end users never see private metadata"
    );
    let membership = accepted.membership.unwrap();
    assert_eq!(membership.role, "org:admin");
    assert_eq!(membership.user_id, "user_cy");
    assert!(membership.private_metadata.is_none());
    assert!(accepted.billing_impact.is_some());

    let stored = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: org.id.clone(),
            user_id: "user_cy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .memberships
        .remove(0);
    assert_eq!(stored.private_metadata, strings(&[("plan", "gold")]));
    assert_eq!(stored.public_metadata, strings(&[("team", "sales")]));
    let organization = get_org(&app, &org.id).await;
    assert_eq!(organization.members_count, 2);
    assert_eq!(organization.pending_invitations_count, 0);
}

#[tokio::test]
async fn accept_checks_the_email_and_the_status() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = invite(&app, &org.id, "dee@example.com").await;
    assert_status(
        user_with_email(&app, "user_dee", "mallory@example.com")
            .accept_invitation(accept_request(
                &created.token,
                "user_dee",
                "mallory@example.com",
            ))
            .await,
        Code::PermissionDenied,
        "EMAIL_MISMATCH",
    );
    assert_status(
        user_with_email(&app, "user_dee", "dee@example.com")
            .accept_invitation(accept_request(
                "bm90LWEtdG9rZW4",
                "user_dee",
                "dee@example.com",
            ))
            .await,
        Code::NotFound,
        "INVITATION_NOT_FOUND",
    );
    user_with_email(&app, "user_dee", "dee@example.com")
        .accept_invitation(accept_request(
            &created.token,
            "user_dee",
            "dee@example.com",
        ))
        .await
        .unwrap();
    assert_status(
        user_with_email(&app, "user_dee", "dee@example.com")
            .accept_invitation(accept_request(
                &created.token,
                "user_dee",
                "dee@example.com",
            ))
            .await,
        Code::FailedPrecondition,
        "INVITATION_ALREADY_ACCEPTED",
    );

    let revoked = invite(&app, &org.id, "eve@example.com").await;
    admin(&app)
        .revoke_invitation(pb::RevokeInvitationRequest {
            invitation_id: revoked.invitation.unwrap().id,
        })
        .await
        .unwrap();
    assert_status(
        user_with_email(&app, "user_eve", "eve@example.com")
            .accept_invitation(accept_request(
                &revoked.token,
                "user_eve",
                "eve@example.com",
            ))
            .await,
        Code::FailedPrecondition,
        "INVITATION_REVOKED",
    );
    // An end user accepts only for itself.
    assert_status(
        user_with_email(&app, "user_other", "dee@example.com")
            .accept_invitation(accept_request(
                &created.token,
                "user_dee",
                "dee@example.com",
            ))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
}

#[tokio::test]
async fn a_pending_invitation_past_its_expiry_reads_as_expired_everywhere() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let short = admin(&app)
        .create_invitation(pb::CreateInvitationRequest {
            expires_in_days: 1,
            ..invitation_request(&org.id, "fay@example.com")
        })
        .await
        .unwrap()
        .into_inner();
    let long = invite(&app, &org.id, "gus@example.com").await;
    let short_id = short.invitation.unwrap().id;
    app.clock.advance(chrono::Duration::days(2));

    let read = admin(&app)
        .get_invitation(pb::GetInvitationRequest {
            invitation_id: short_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(status_of(&read), pb::InvitationStatus::Expired);
    let expired = list_invitations(&app, &org.id, pb::InvitationStatus::Expired, "").await;
    assert_eq!(expired.total_size, 1);
    assert_eq!(expired.invitations[0].id, short_id);
    let pending = list_invitations(&app, &org.id, pb::InvitationStatus::Pending, "").await;
    assert_eq!(pending.total_size, 1);
    assert_eq!(pending.invitations[0].email_address, "gus@example.com");
    let all = list_invitations(&app, &org.id, pb::InvitationStatus::Unspecified, "").await;
    let statuses: Vec<_> = all.invitations.iter().map(status_of).collect();
    assert_eq!(
        statuses,
        vec![pb::InvitationStatus::Pending, pb::InvitationStatus::Expired]
    );

    assert_status(
        user_with_email(&app, "user_fay", "fay@example.com")
            .accept_invitation(accept_request(&short.token, "user_fay", "fay@example.com"))
            .await,
        Code::FailedPrecondition,
        "INVITATION_EXPIRED",
    );
    assert_status(
        admin(&app)
            .revoke_invitation(pb::RevokeInvitationRequest {
                invitation_id: short_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "INVITATION_EXPIRED",
    );
    // The address may be invited again, and the count follows.
    invite(&app, &org.id, "fay@example.com").await;
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 2);
    let read = admin(&app)
        .get_invitation(pb::GetInvitationRequest {
            invitation_id: short_id,
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(status_of(&read), pb::InvitationStatus::Expired);

    // Past 30 days the other one expires too.
    app.clock.advance(chrono::Duration::days(29));
    assert_status(
        user_with_email(&app, "user_gus", "gus@example.com")
            .accept_invitation(accept_request(&long.token, "user_gus", "gus@example.com"))
            .await,
        Code::FailedPrecondition,
        "INVITATION_EXPIRED",
    );
}

#[tokio::test]
async fn revoke_only_from_pending() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = invite(&app, &org.id, "hal@example.com").await;
    let id = created.invitation.unwrap().id;
    let revoked = admin(&app)
        .revoke_invitation(pb::RevokeInvitationRequest {
            invitation_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(status_of(&revoked), pb::InvitationStatus::Revoked);
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 0);
    assert_status(
        admin(&app)
            .revoke_invitation(pb::RevokeInvitationRequest { invitation_id: id })
            .await,
        Code::FailedPrecondition,
        "INVITATION_REVOKED",
    );
    let accepted = invite(&app, &org.id, "ivy@example.com").await;
    user_with_email(&app, "user_ivy", "ivy@example.com")
        .accept_invitation(accept_request(
            &accepted.token,
            "user_ivy",
            "ivy@example.com",
        ))
        .await
        .unwrap();
    assert_status(
        admin(&app)
            .revoke_invitation(pb::RevokeInvitationRequest {
                invitation_id: accepted.invitation.unwrap().id,
            })
            .await,
        Code::FailedPrecondition,
        "INVITATION_ALREADY_ACCEPTED",
    );
    // After a revoke the address may be invited again.
    invite(&app, &org.id, "hal@example.com").await;
}

#[tokio::test]
async fn accept_respects_the_cap_validate_only_and_request_id() {
    let app = TestApp::spawn().await;
    let full = org_with_cap(&app, "user_owner", 1).await;
    let created = invite(&app, &full.id, "jo@example.com").await;
    assert_status(
        user_with_email(&app, "user_jo", "jo@example.com")
            .accept_invitation(accept_request(&created.token, "user_jo", "jo@example.com"))
            .await,
        Code::FailedPrecondition,
        "MEMBERSHIP_LIMIT_REACHED",
    );
    let still = list_invitations(&app, &full.id, pb::InvitationStatus::Pending, "").await;
    assert_eq!(still.total_size, 1, "a refused accept changes nothing");

    let roomy = org_with_cap(&app, "user_owner2", 3).await;
    let created = invite(&app, &roomy.id, "kim@example.com").await;
    let preview = user_with_email(&app, "user_kim", "kim@example.com")
        .accept_invitation(pb::AcceptInvitationRequest {
            validate_only: true,
            ..accept_request(&created.token, "user_kim", "kim@example.com")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.membership.unwrap().user_id, "user_kim");
    assert!(preview.billing_impact.is_some());
    assert_eq!(
        members_count(&app, &roomy.id).await,
        1,
        "validate_only writes nothing"
    );
    let pending = list_invitations(&app, &roomy.id, pb::InvitationStatus::Pending, "").await;
    assert_eq!(pending.total_size, 1);

    let request = pb::AcceptInvitationRequest {
        request_id: "accept-kim".into(),
        ..accept_request(&created.token, "user_kim", "kim@example.com")
    };
    let first = user_with_email(&app, "user_kim", "kim@example.com")
        .accept_invitation(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = user_with_email(&app, "user_kim", "kim@example.com")
        .accept_invitation(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.membership.unwrap().id, again.membership.unwrap().id);
    assert_eq!(members_count(&app, &roomy.id).await, 2);
    assert_status(
        user_with_email(&app, "user_kim", "kim@example.com")
            .accept_invitation(pb::AcceptInvitationRequest {
                validate_only: true,
                ..request
            })
            .await,
        Code::FailedPrecondition,
        "INVITATION_ALREADY_ACCEPTED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_ten_concurrent_accepts_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = invite(&app, &org.id, "lou@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        // Half the callers are the user itself, half the onboarding service.
        let mut client = if i % 2 == 0 {
            user_with_email(&app, "user_lou", "lou@example.com")
        } else {
            admin(&app)
        };
        let request = accept_request(&created.token, "user_lou", "lou@example.com");
        tasks.push(tokio::spawn(async move {
            client.accept_invitation(request).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(reason(&status), "INVITATION_ALREADY_ACCEPTED");
            }
        }
    }
    assert_eq!(wins, 1);
    let organization = get_org(&app, &org.id).await;
    assert_eq!(organization.members_count, 2);
    assert_eq!(organization.pending_invitations_count, 0);
}

#[tokio::test]
async fn application_invitations_need_orgs_admin_and_create_no_membership() {
    let app = TestApp::spawn().await;
    let created = invite(&app, "", "max@customer.example").await;
    let invitation = created.invitation.unwrap();
    assert!(invitation.organization_id.is_empty());
    assert!(invitation.role.is_empty());
    assert_status(
        user(&app, "user_sales")
            .create_invitation(invitation_request("", "ned@customer.example"))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        reader(&app)
            .create_invitation(invitation_request("", "ned@customer.example"))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_invalid(
        admin(&app)
            .create_invitation(pb::CreateInvitationRequest {
                role: "org:admin".into(),
                ..invitation_request("", "ned@customer.example")
            })
            .await,
        "role",
    );
    let listed = reader(&app)
        .list_invitations(pb::ListInvitationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 1);
    assert_eq!(listed.invitations[0].id, invitation.id);
    assert_status(
        user(&app, "user_max")
            .list_invitations(pb::ListInvitationsRequest::default())
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        user(&app, "user_max")
            .get_invitation(pb::GetInvitationRequest {
                invitation_id: invitation.id.clone(),
            })
            .await,
        Code::NotFound,
        "INVITATION_NOT_FOUND",
    );

    let accepted = user_with_email(&app, "user_max", "max@customer.example")
        .accept_invitation(accept_request(
            &created.token,
            "user_max",
            "max@customer.example",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status_of(&accepted.invitation.unwrap()),
        pb::InvitationStatus::Accepted
    );
    assert!(accepted.membership.is_none());
    assert!(accepted.billing_impact.is_none());
    let memberships = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest {
            user_id: "user_max".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(memberships.total_size, 0);
}

#[tokio::test]
async fn create_invitations_answers_one_result_per_item_in_order() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let foreign = create_org(&app, "Foreign", Some("user_stranger")).await;
    invite(&app, &org.id, "dup@example.com").await;
    let response = user(&app, "user_owner")
        .create_invitations(pb::CreateInvitationsRequest {
            requests: vec![
                invitation_request(&org.id, "one@example.com"),
                invitation_request(&org.id, "not an email"),
                invitation_request(&org.id, "dup@example.com"),
                invitation_request(&foreign.id, "two@example.com"),
                pb::CreateInvitationRequest {
                    redirect_url: "https://app.example.com/join".into(),
                    ..invitation_request(&org.id, "three@example.com")
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let results = response.results;
    assert_eq!(results.len(), 5);
    assert_eq!(
        results[0].invitation.as_ref().unwrap().email_address,
        "one@example.com"
    );
    assert!(!results[0].token.is_empty() && results[0].error.is_none());
    let bad = results[1].error.as_ref().unwrap();
    assert_eq!(bad.code, Code::InvalidArgument as i32);
    assert_eq!(bad.reason, "FIELD_INVALID");
    assert!(
        bad.message.contains("requests[1].email_address"),
        "{}",
        bad.message
    );
    let duplicate = results[2].error.as_ref().unwrap();
    assert_eq!(
        (duplicate.code, duplicate.reason.as_str()),
        (Code::AlreadyExists as i32, "INVITATION_EXISTS")
    );
    let hidden = results[3].error.as_ref().unwrap();
    assert_eq!(hidden.code, Code::NotFound as i32);
    assert!(
        results[4]
            .url
            .starts_with("https://app.example.com/join?ticket=")
    );
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 3);

    let too_many = (0..101)
        .map(|i| invitation_request(&org.id, &format!("bulk{i}@example.com")))
        .collect();
    assert_invalid(
        admin(&app)
            .create_invitations(pb::CreateInvitationsRequest { requests: too_many })
            .await,
        "requests",
    );
    assert_invalid(
        admin(&app)
            .create_invitations(pb::CreateInvitationsRequest { requests: vec![] })
            .await,
        "requests",
    );
    let hundred = (0..100)
        .map(|i| invitation_request(&org.id, &format!("bulk{i}@example.com")))
        .collect();
    let response = admin(&app)
        .create_invitations(pb::CreateInvitationsRequest { requests: hundred })
        .await
        .unwrap()
        .into_inner();
    assert!(response.results.iter().all(|r| r.error.is_none()));
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 103);
}

#[tokio::test]
async fn list_invitations_filters_and_pages() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    for i in 0..5 {
        invite(&app, &org.id, &format!("p{i}@example.com")).await;
        app.clock.advance(chrono::Duration::seconds(1));
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = user(&app, "user_owner")
            .list_invitations(pb::ListInvitationsRequest {
                organization_id: org.id.clone(),
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 5);
        seen.extend(page.invitations.into_iter().map(|i| i.email_address));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["p4", "p3", "p2", "p1", "p0"]
            .map(|p| format!("{p}@example.com"))
            .to_vec(),
        "newest first"
    );
    let one = list_invitations(
        &app,
        &org.id,
        pb::InvitationStatus::Unspecified,
        " P2@Example.com",
    )
    .await;
    assert_eq!(one.total_size, 1);
    let none = list_invitations(&app, &org.id, pb::InvitationStatus::Accepted, "").await;
    assert_eq!(none.total_size, 0);
    assert_status(
        admin(&app)
            .list_invitations(pb::ListInvitationsRequest {
                organization_id: org.id.clone(),
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let mut client = admin(&app);
    assert_invalid(
        client
            .create_invitation(invitation_request(&org.id, "ann@@example"))
            .await,
        "email_address",
    );
    assert_invalid(
        client
            .create_invitation(invitation_request(&org.id, ""))
            .await,
        "email_address",
    );
    assert_invalid(
        client
            .create_invitation(invitation_request("org_nope", "ann@example.com"))
            .await,
        "organization_id",
    );
    for days in [-1, 366] {
        assert_invalid(
            client
                .create_invitation(pb::CreateInvitationRequest {
                    expires_in_days: days,
                    ..invitation_request(&org.id, "ann@example.com")
                })
                .await,
            "expires_in_days",
        );
    }
    assert_invalid(
        client
            .create_invitation(pb::CreateInvitationRequest {
                redirect_url: "javascript:alert(1)".into(),
                ..invitation_request(&org.id, "ann@example.com")
            })
            .await,
        "redirect_url",
    );
    assert_invalid(
        client
            .create_invitation(pb::CreateInvitationRequest {
                role: "Admin".into(),
                ..invitation_request(&org.id, "ann@example.com")
            })
            .await,
        "role",
    );
    assert_invalid(
        client
            .create_invitation(pb::CreateInvitationRequest {
                role: "org:nonexistent".into(),
                ..invitation_request(&org.id, "ann@example.com")
            })
            .await,
        "role",
    );
    assert_invalid(
        client
            .create_invitation(pb::CreateInvitationRequest {
                request_id: "x".repeat(65),
                ..invitation_request(&org.id, "ann@example.com")
            })
            .await,
        "request_id",
    );
    // Every bad field is named at once.
    let status = client
        .create_invitation(pb::CreateInvitationRequest {
            expires_in_days: 400,
            ..invitation_request(&org.id, "nope")
        })
        .await
        .unwrap_err();
    let fields = bad_fields(&status);
    assert!(
        fields.contains(&"email_address".to_string())
            && fields.contains(&"expires_in_days".to_string())
    );

    assert_invalid(
        client
            .list_invitations(pb::ListInvitationsRequest {
                organization_id: org.id.clone(),
                status: 99,
                ..Default::default()
            })
            .await,
        "status",
    );
    assert_invalid(
        client
            .list_invitations(pb::ListInvitationsRequest {
                organization_id: org.id.clone(),
                email_address: "not-an-email".into(),
                ..Default::default()
            })
            .await,
        "email_address",
    );
    assert_invalid(
        client
            .accept_invitation(accept_request("", "user_a", "a@example.com"))
            .await,
        "token",
    );
    assert_invalid(
        client
            .accept_invitation(accept_request("has spaces!", "user_a", "a@example.com"))
            .await,
        "token",
    );
    assert_invalid(
        client
            .accept_invitation(accept_request("abc", "", "a@example.com"))
            .await,
        "user_id",
    );
    assert_invalid(
        client
            .get_invitation(pb::GetInvitationRequest {
                invitation_id: "dom_01jd3x4y5z6a7b8c9d0e1f2g3h".into(),
            })
            .await,
        "invitation_id",
    );
    for (name, mode) in [
        ("Not A Domain", pb::EnrollmentMode::ManualInvitation as i32),
        ("localhost", pb::EnrollmentMode::ManualInvitation as i32),
    ] {
        assert_invalid(
            client
                .create_domain(pb::CreateDomainRequest {
                    organization_id: org.id.clone(),
                    name: name.into(),
                    enrollment_mode: mode,
                    ..Default::default()
                })
                .await,
            "name",
        );
    }
    for mode in [0, 42] {
        assert_invalid(
            client
                .create_domain(pb::CreateDomainRequest {
                    organization_id: org.id.clone(),
                    name: "acme.example".into(),
                    enrollment_mode: mode,
                    ..Default::default()
                })
                .await,
            "enrollment_mode",
        );
    }
    let dom = domain(
        &app,
        &org.id,
        "acme.example",
        pb::EnrollmentMode::ManualInvitation,
        false,
    )
    .await;
    assert_invalid(
        client
            .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
                domain_id: dom.id.clone(),
                affiliation_email_address: "it@elsewhere.example".into(),
            })
            .await,
        "affiliation_email_address",
    );
    assert_invalid(
        client
            .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
                domain_id: dom.id.clone(),
                affiliation_email_address: "it@sub.acme.example".into(),
            })
            .await,
        "affiliation_email_address",
    );
    assert_invalid(
        client
            .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
                domain_id: dom.id.clone(),
                code: "12ab56".into(),
            })
            .await,
        "code",
    );
    assert_invalid(
        client
            .update_domain(pb::UpdateDomainRequest {
                domain: Some(pb::Domain {
                    id: dom.id.clone(),
                    enrollment_mode: pb::EnrollmentMode::AutomaticInvitation as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["name".into()],
                }),
            })
            .await,
        "update_mask",
    );
    assert_invalid(
        client
            .list_membership_requests(pb::ListMembershipRequestsRequest {
                organization_id: org.id.clone(),
                status: 7,
                ..Default::default()
            })
            .await,
        "status",
    );
    assert_invalid(
        client
            .resolve_onboarding(pb::ResolveOnboardingRequest {
                user_id: "user_a".into(),
                email_address: "a@".into(),
            })
            .await,
        "email_address",
    );
    assert_invalid(
        client
            .create_membership_request(pb::CreateMembershipRequestRequest {
                organization_id: org.id.clone(),
                user_id: "user a".into(),
                email_address: "a@acme.example".into(),
                ..Default::default()
            })
            .await,
        "user_id",
    );
}

#[tokio::test]
async fn domains_limits_uniqueness_consumer_domains_and_updates() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let other = create_org(&app, "Other", Some("user_owner")).await;
    let mut owner = user(&app, "user_owner");
    let created = owner
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.id.clone(),
            name: "Acme.Example.".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(created.name, "acme.example");
    assert!(!created.verified);
    assert!(created.id.starts_with("dom_"));
    assert_status(
        owner
            .create_domain(pb::CreateDomainRequest {
                organization_id: org.id.clone(),
                name: "verified.example".into(),
                enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                verified: true,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let verified = domain(
        &app,
        &org.id,
        "verified.example",
        pb::EnrollmentMode::AutomaticSuggestion,
        true,
    )
    .await;
    assert!(verified.verified && verified.verify_time.is_some());
    // A verified name belongs to one organization; unverified claims of a
    // name coexist (tests/domains.rs covers claims in depth).
    assert_status(
        admin(&app)
            .create_domain(pb::CreateDomainRequest {
                organization_id: other.id.clone(),
                name: "verified.example".into(),
                enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "DOMAIN_EXISTS",
    );
    domain(
        &app,
        &other.id,
        "acme.example",
        pb::EnrollmentMode::ManualInvitation,
        false,
    )
    .await;
    for consumer in ["gmail.com", "mail.yahoo.com", "OUTLOOK.COM"] {
        assert_status(
            owner
                .create_domain(pb::CreateDomainRequest {
                    organization_id: org.id.clone(),
                    name: consumer.into(),
                    enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                    ..Default::default()
                })
                .await,
            Code::FailedPrecondition,
            "CONSUMER_DOMAIN",
        );
    }
    for i in 0..8 {
        domain(
            &app,
            &org.id,
            &format!("d{i}.example"),
            pb::EnrollmentMode::ManualInvitation,
            false,
        )
        .await;
    }
    assert_status(
        admin(&app)
            .create_domain(pb::CreateDomainRequest {
                organization_id: org.id.clone(),
                name: "eleventh.example".into(),
                enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "DOMAIN_LIMIT_REACHED",
    );

    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = owner
            .list_domains(pb::ListDomainsRequest {
                organization_id: org.id.clone(),
                page_size: 3,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 10);
        names.extend(page.domains.into_iter().map(|d| d.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 10);

    let mask = Some(FieldMask {
        paths: vec!["enrollment_mode".into()],
    });
    let updated = owner
        .update_domain(pb::UpdateDomainRequest {
            domain: Some(pb::Domain {
                id: created.id.clone(),
                enrollment_mode: pb::EnrollmentMode::AutomaticInvitation as i32,
                etag: created.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(
        updated.enrollment_mode,
        pb::EnrollmentMode::AutomaticInvitation as i32
    );
    assert_ne!(updated.etag, created.etag);
    assert_status(
        owner
            .update_domain(pb::UpdateDomainRequest {
                domain: Some(pb::Domain {
                    id: created.id.clone(),
                    enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                    etag: created.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask,
            })
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    owner
        .delete_domain(pb::DeleteDomainRequest {
            domain_id: created.id.clone(),
        })
        .await
        .unwrap();
    assert_status(
        owner
            .delete_domain(pb::DeleteDomainRequest {
                domain_id: created.id.clone(),
            })
            .await,
        Code::NotFound,
        "DOMAIN_NOT_FOUND",
    );
    // Its organization may claim the name again.
    domain(
        &app,
        &org.id,
        "acme.example",
        pb::EnrollmentMode::ManualInvitation,
        false,
    )
    .await;
}

#[tokio::test]
async fn domain_verification_with_a_hashed_six_digit_code() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let dom = domain(
        &app,
        &org.id,
        "acme.example",
        pb::EnrollmentMode::AutomaticSuggestion,
        false,
    )
    .await;
    let prepare = pb::PrepareDomainVerificationRequest {
        domain_id: dom.id.clone(),
        affiliation_email_address: "IT@acme.example".into(),
    };
    // End users never see the code.
    let for_user = user(&app, "user_owner")
        .prepare_domain_verification(prepare.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(for_user.verification_code.is_empty());
    assert_eq!(
        for_user.domain.unwrap().affiliation_email_address,
        "it@acme.example"
    );
    let prepared = admin(&app)
        .prepare_domain_verification(prepare.clone())
        .await
        .unwrap()
        .into_inner();
    let code = prepared.verification_code.clone();
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    use orgs::domain::time::Clock;
    let ttl = prepared.expire_time.unwrap().seconds - app.clock.now().timestamp();
    assert!((599..=600).contains(&ttl), "{ttl}");
    let db = db(&app).await;
    let plain = orgs::store::fetch_i64(
        db.conn(),
        "SELECT COUNT(*) FROM domains WHERE code_hash = $1",
        orgs::values![code.clone()],
    )
    .await
    .unwrap();
    assert_eq!(plain, 0, "the code is stored hashed");
    db.close().await;

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let attempt = |code: &str| pb::AttemptDomainVerificationRequest {
        domain_id: dom.id.clone(),
        code: code.into(),
    };
    assert_status(
        user(&app, "user_owner")
            .attempt_domain_verification(attempt(wrong))
            .await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_INVALID",
    );
    let verified = user(&app, "user_owner")
        .attempt_domain_verification(attempt(&code))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert!(verified.verified && verified.verify_time.is_some());
    assert_status(
        admin(&app)
            .attempt_domain_verification(attempt(&code))
            .await,
        Code::FailedPrecondition,
        "DOMAIN_ALREADY_VERIFIED",
    );
    assert_status(
        admin(&app).prepare_domain_verification(prepare).await,
        Code::FailedPrecondition,
        "DOMAIN_ALREADY_VERIFIED",
    );

    // Five wrong attempts void the code, even the right one fails then.
    let second = domain(
        &app,
        &org.id,
        "second.example",
        pb::EnrollmentMode::ManualInvitation,
        false,
    )
    .await;
    let code = admin(&app)
        .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
            domain_id: second.id.clone(),
            affiliation_email_address: "it@second.example".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification_code;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let attempt = |code: &str| pb::AttemptDomainVerificationRequest {
        domain_id: second.id.clone(),
        code: code.into(),
    };
    for _ in 0..5 {
        assert_status(
            admin(&app)
                .attempt_domain_verification(attempt(wrong))
                .await,
            Code::FailedPrecondition,
            "VERIFICATION_CODE_INVALID",
        );
    }
    assert_status(
        admin(&app)
            .attempt_domain_verification(attempt(&code))
            .await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_EXPIRED",
    );

    // A code is valid ten minutes.
    let code = admin(&app)
        .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
            domain_id: second.id.clone(),
            affiliation_email_address: "it@second.example".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification_code;
    app.clock.advance(chrono::Duration::minutes(11));
    assert_status(
        admin(&app)
            .attempt_domain_verification(attempt(&code))
            .await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_EXPIRED",
    );
}

#[tokio::test]
async fn membership_requests_need_a_verified_suggestion_domain() {
    let app = TestApp::spawn().await;
    let org = org_with_cap(&app, "user_owner", 2).await;
    domain(
        &app,
        &org.id,
        "acme.example",
        pb::EnrollmentMode::AutomaticSuggestion,
        true,
    )
    .await;
    domain(
        &app,
        &org.id,
        "unverified.example",
        pb::EnrollmentMode::AutomaticSuggestion,
        false,
    )
    .await;
    domain(
        &app,
        &org.id,
        "manual.example",
        pb::EnrollmentMode::ManualInvitation,
        true,
    )
    .await;
    let request = |user_id: &str, email: &str| pb::CreateMembershipRequestRequest {
        organization_id: org.id.clone(),
        user_id: user_id.into(),
        email_address: email.into(),
        ..Default::default()
    };
    for email in [
        "x@unverified.example",
        "x@manual.example",
        "x@gmail.com",
        "x@sub.acme.example",
    ] {
        assert_status(
            user_with_email(&app, "user_x", email)
                .create_membership_request(request("user_x", email))
                .await,
            Code::FailedPrecondition,
            "DOMAIN_NOT_ELIGIBLE",
        );
    }
    assert_status(
        user_with_email(&app, "user_x", "y@acme.example")
            .create_membership_request(request("user_y", "y@acme.example"))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let first = user_with_email(&app, "user_x", "X@acme.example")
        .create_membership_request(request("user_x", "X@acme.example"))
        .await
        .unwrap()
        .into_inner()
        .membership_request
        .unwrap();
    assert!(first.id.starts_with("mrq_"));
    assert_eq!(first.email_address, "x@acme.example");
    assert_eq!(first.status, pb::MembershipRequestStatus::Pending as i32);
    assert_status(
        user_with_email(&app, "user_x", "x@acme.example")
            .create_membership_request(request("user_x", "x@acme.example"))
            .await,
        Code::AlreadyExists,
        "MEMBERSHIP_REQUEST_EXISTS",
    );
    let second = admin(&app)
        .create_membership_request(request("user_y", "y@acme.example"))
        .await
        .unwrap()
        .into_inner()
        .membership_request
        .unwrap();
    let third = admin(&app)
        .create_membership_request(request("user_z", "z@acme.example"))
        .await
        .unwrap()
        .into_inner()
        .membership_request
        .unwrap();

    let pending = user(&app, "user_owner")
        .list_membership_requests(pb::ListMembershipRequestsRequest {
            organization_id: org.id.clone(),
            status: pb::MembershipRequestStatus::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.total_size, 3);

    let accept = |id: &str, validate_only: bool| pb::AcceptMembershipRequestRequest {
        membership_request_id: id.into(),
        validate_only,
        ..Default::default()
    };
    let preview = user(&app, "user_owner")
        .accept_membership_request(accept(&first.id, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.membership.unwrap().role, "org:member");
    assert_eq!(
        members_count(&app, &org.id).await,
        1,
        "validate_only writes nothing"
    );
    let accepted = user(&app, "user_owner")
        .accept_membership_request(accept(&first.id, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        accepted.membership_request.unwrap().status,
        pb::MembershipRequestStatus::Accepted as i32
    );
    assert_eq!(accepted.membership.unwrap().role, "org:member");
    assert!(accepted.billing_impact.is_some());
    assert_status(
        user(&app, "user_owner")
            .accept_membership_request(accept(&first.id, false))
            .await,
        Code::FailedPrecondition,
        "MEMBERSHIP_REQUEST_NOT_PENDING",
    );
    // The cap of 2 is reached.
    assert_status(
        admin(&app)
            .accept_membership_request(accept(&second.id, false))
            .await,
        Code::FailedPrecondition,
        "MEMBERSHIP_LIMIT_REACHED",
    );
    let rejected = user(&app, "user_owner")
        .reject_membership_request(pb::RejectMembershipRequestRequest {
            membership_request_id: third.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .membership_request
        .unwrap();
    assert_eq!(
        rejected.status,
        pb::MembershipRequestStatus::Rejected as i32
    );
    assert_status(
        admin(&app)
            .reject_membership_request(pb::RejectMembershipRequestRequest {
                membership_request_id: third.id,
            })
            .await,
        Code::FailedPrecondition,
        "MEMBERSHIP_REQUEST_NOT_PENDING",
    );
    // A member cannot ask again.
    assert_status(
        user_with_email(&app, "user_x", "x@acme.example")
            .create_membership_request(request("user_x", "x@acme.example"))
            .await,
        Code::AlreadyExists,
        "MEMBERSHIP_EXISTS",
    );
}

#[tokio::test]
async fn resolve_onboarding_gathers_memberships_invitations_and_suggestions() {
    let app = TestApp::spawn().await;
    let auto = create_org(&app, "Auto", Some("user_owner")).await;
    let suggested = create_org(&app, "Suggested", Some("user_owner")).await;
    domain(
        &app,
        &auto.id,
        "corp.example",
        pb::EnrollmentMode::AutomaticInvitation,
        true,
    )
    .await;
    domain(
        &app,
        &suggested.id,
        "labs.example",
        pb::EnrollmentMode::AutomaticSuggestion,
        true,
    )
    .await;
    let app_invitation = invite(&app, "", "pat@corp.example").await;

    let resolve = |user_id: &str, email: &str| pb::ResolveOnboardingRequest {
        user_id: user_id.into(),
        email_address: email.into(),
    };
    let first = user_with_email(&app, "user_pat", "Pat@corp.example")
        .resolve_onboarding(resolve("user_pat", "Pat@corp.example"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.requires_organization);
    assert!(first.memberships.is_empty());
    assert!(first.suggestions.is_empty());
    assert_eq!(first.invitations.len(), 2, "{:?}", first.invitations);
    let automatic = first
        .invitations
        .iter()
        .find(|i| i.organization_id == auto.id)
        .unwrap()
        .clone();
    assert_eq!(automatic.role, "org:member");
    assert!(
        first
            .invitations
            .iter()
            .any(|i| i.id == app_invitation.invitation.as_ref().unwrap().id)
    );
    assert_eq!(get_org(&app, &auto.id).await.pending_invitations_count, 1);

    let again = user_with_email(&app, "user_pat", "pat@corp.example")
        .resolve_onboarding(resolve("user_pat", "pat@corp.example"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.invitations.len(), 2, "no second automatic invitation");
    assert_eq!(
        list_invitations(
            &app,
            &auto.id,
            pb::InvitationStatus::Unspecified,
            "pat@corp.example"
        )
        .await
        .total_size,
        1
    );

    // The automatic invitation has no token in anyone's hands: the onboarding
    // service accepts it by id; an end user may not.
    let by_id = pb::AcceptInvitationRequest {
        invitation_id: automatic.id.clone(),
        user_id: "user_pat".into(),
        email_address: "pat@corp.example".into(),
        ..Default::default()
    };
    assert_status(
        user_with_email(&app, "user_pat", "pat@corp.example")
            .accept_invitation(by_id.clone())
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    admin(&app).accept_invitation(by_id).await.unwrap();
    let after = admin(&app)
        .resolve_onboarding(resolve("user_pat", "pat@corp.example"))
        .await
        .unwrap()
        .into_inner();
    assert!(!after.requires_organization);
    assert_eq!(after.memberships.len(), 1);
    assert_eq!(after.memberships[0].organization_id, auto.id);
    assert_eq!(
        after.invitations.len(),
        1,
        "only the application invitation is pending"
    );
    assert_eq!(
        list_invitations(
            &app,
            &auto.id,
            pb::InvitationStatus::Unspecified,
            "pat@corp.example"
        )
        .await
        .total_size,
        1,
        "a member gets no new automatic invitation"
    );

    let labs = user_with_email(&app, "user_quinn", "quinn@labs.example")
        .resolve_onboarding(resolve("user_quinn", "quinn@labs.example"))
        .await
        .unwrap()
        .into_inner();
    assert!(labs.requires_organization);
    assert!(labs.invitations.is_empty());
    assert_eq!(labs.suggestions.len(), 1);
    assert_eq!(labs.suggestions[0].organization_id, suggested.id);
    assert_eq!(labs.suggestions[0].organization_slug, suggested.slug);
    assert_eq!(labs.suggestions[0].domain, "labs.example");

    // A revoked automatic invitation is not created again.
    let rita = admin(&app)
        .resolve_onboarding(resolve("user_rita", "rita@corp.example"))
        .await
        .unwrap()
        .into_inner();
    admin(&app)
        .revoke_invitation(pb::RevokeInvitationRequest {
            invitation_id: rita.invitations[0].id.clone(),
        })
        .await
        .unwrap();
    let rita = admin(&app)
        .resolve_onboarding(resolve("user_rita", "rita@corp.example"))
        .await
        .unwrap()
        .into_inner();
    assert!(rita.invitations.is_empty());

    assert_status(
        user_with_email(&app, "user_pat", "quinn@labs.example")
            .resolve_onboarding(resolve("user_quinn", "quinn@labs.example"))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_status(
        reader(&app)
            .resolve_onboarding(resolve("user_quinn", "quinn@labs.example"))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_onboarding_creates_the_automatic_invitation_once() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Auto", Some("user_owner")).await;
    domain(
        &app,
        &org.id,
        "corp.example",
        pb::EnrollmentMode::AutomaticInvitation,
        true,
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut client = user_with_email(&app, "user_sam", "sam@corp.example");
        tasks.push(tokio::spawn(async move {
            client
                .resolve_onboarding(pb::ResolveOnboardingRequest {
                    user_id: "user_sam".into(),
                    email_address: "sam@corp.example".into(),
                })
                .await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let response = task.await.unwrap().unwrap().into_inner();
        assert_eq!(response.invitations.len(), 1, "{:?}", response.invitations);
        ids.insert(response.invitations[0].id.clone());
    }
    assert_eq!(ids.len(), 1);
    let listed = list_invitations(&app, &org.id, pb::InvitationStatus::Unspecified, "").await;
    assert_eq!(listed.total_size, 1);
    assert_eq!(get_org(&app, &org.id).await.pending_invitations_count, 1);
}

#[tokio::test]
async fn every_change_is_in_the_audit_trail() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let created = invite(&app, &org.id, "tom@example.com").await;
    let revoked = invite(&app, &org.id, "una@example.com").await;
    admin(&app)
        .revoke_invitation(pb::RevokeInvitationRequest {
            invitation_id: revoked.invitation.unwrap().id,
        })
        .await
        .unwrap();
    user_with_email(&app, "user_tom", "tom@example.com")
        .accept_invitation(accept_request(
            &created.token,
            "user_tom",
            "tom@example.com",
        ))
        .await
        .unwrap();
    let dom = domain(
        &app,
        &org.id,
        "acme.example",
        pb::EnrollmentMode::AutomaticSuggestion,
        false,
    )
    .await;
    let code = admin(&app)
        .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
            domain_id: dom.id.clone(),
            affiliation_email_address: "it@acme.example".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .verification_code;
    admin(&app)
        .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
            domain_id: dom.id.clone(),
            code,
        })
        .await
        .unwrap();
    let mrq = admin(&app)
        .create_membership_request(pb::CreateMembershipRequestRequest {
            organization_id: org.id.clone(),
            user_id: "user_vic".into(),
            email_address: "vic@acme.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .membership_request
        .unwrap();
    admin(&app)
        .reject_membership_request(pb::RejectMembershipRequestRequest {
            membership_request_id: mrq.id,
        })
        .await
        .unwrap();
    admin(&app)
        .delete_domain(pb::DeleteDomainRequest { domain_id: dom.id })
        .await
        .unwrap();
    let events = app
        .admin()
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: org.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "CreateInvitation",
        "RevokeInvitation",
        "AcceptInvitation",
        "CreateDomain",
        "PrepareDomainVerification",
        "AttemptDomainVerification",
        "CreateMembershipRequest",
        "RejectMembershipRequest",
        "DeleteDomain",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let accept = events
        .iter()
        .find(|e| e.action == "AcceptInvitation")
        .unwrap();
    assert_eq!(accept.actor, "user_tom");
}

/// Whether a call got past authorization (it may still fail for other reasons).
fn allowed(result: &Result<(), Status>) -> bool {
    !matches!(result, Err(status) if matches!(status.code(), Code::PermissionDenied | Code::NotFound | Code::Unauthenticated))
}

/// Calls one organization-scoped RPC as `client` against fresh fixtures of
/// `org` (made by the onboarding service), ignoring the answer's content.
async fn call_rpc(
    app: &TestApp,
    client: &mut Invitations,
    rpc: &str,
    org: &str,
    n: usize,
) -> Result<(), Status> {
    let mut svc = admin(app);
    let fresh_invitation = |svc: &mut Invitations| {
        let mut svc = svc.clone();
        let org = org.to_string();
        async move {
            svc.create_invitation(invitation_request(
                &org,
                &format!("{rpc}{n}@fixture.example").to_lowercase(),
            ))
            .await
            .unwrap()
            .into_inner()
            .invitation
            .unwrap()
            .id
        }
    };
    let fresh_domain = |name: String| async move {
        domain(app, org, &name, pb::EnrollmentMode::ManualInvitation, false).await
    };
    let fresh_request = |svc: &mut Invitations| {
        let mut svc = svc.clone();
        let org = org.to_string();
        async move {
            svc.create_membership_request(pb::CreateMembershipRequestRequest {
                organization_id: org,
                user_id: format!("user_req_{rpc}_{n}"),
                email_address: format!("req{n}@suggest{n}.example"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .membership_request
            .unwrap()
            .id
        }
    };
    let result: Result<(), Status> = match rpc {
        "CreateInvitation" => client
            .create_invitation(invitation_request(org, &format!("new{n}@example.com")))
            .await
            .map(|_| ()),
        "CreateInvitations" => {
            let response = client
                .create_invitations(pb::CreateInvitationsRequest {
                    requests: vec![invitation_request(org, &format!("bulk{n}@example.com"))],
                })
                .await?
                .into_inner();
            match response.results[0].error.as_ref() {
                Some(error) => Err(Status::new(Code::from(error.code), error.message.clone())),
                None => Ok(()),
            }
        }
        "GetInvitation" => {
            let id = fresh_invitation(&mut svc).await;
            client
                .get_invitation(pb::GetInvitationRequest { invitation_id: id })
                .await
                .map(|_| ())
        }
        "ListInvitations" => client
            .list_invitations(pb::ListInvitationsRequest {
                organization_id: org.into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "RevokeInvitation" => {
            let id = fresh_invitation(&mut svc).await;
            client
                .revoke_invitation(pb::RevokeInvitationRequest { invitation_id: id })
                .await
                .map(|_| ())
        }
        "CreateDomain" => client
            .create_domain(pb::CreateDomainRequest {
                organization_id: org.into(),
                name: format!("created{n}.example"),
                enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "ListDomains" => client
            .list_domains(pb::ListDomainsRequest {
                organization_id: org.into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "UpdateDomain" => {
            let dom = fresh_domain(format!("updated{n}.example")).await;
            client
                .update_domain(pb::UpdateDomainRequest {
                    domain: Some(pb::Domain {
                        id: dom.id,
                        enrollment_mode: pb::EnrollmentMode::AutomaticSuggestion as i32,
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec!["enrollment_mode".into()],
                    }),
                })
                .await
                .map(|_| ())
        }
        "DeleteDomain" => {
            let dom = fresh_domain(format!("deleted{n}.example")).await;
            client
                .delete_domain(pb::DeleteDomainRequest { domain_id: dom.id })
                .await
                .map(|_| ())
        }
        "PrepareDomainVerification" => {
            let dom = fresh_domain(format!("prepared{n}.example")).await;
            client
                .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
                    domain_id: dom.id,
                    affiliation_email_address: format!("it@prepared{n}.example"),
                })
                .await
                .map(|_| ())
        }
        "AttemptDomainVerification" => {
            let dom = fresh_domain(format!("attempted{n}.example")).await;
            client
                .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
                    domain_id: dom.id,
                    code: "123456".into(),
                })
                .await
                .map(|_| ())
        }
        "ListMembershipRequests" => client
            .list_membership_requests(pb::ListMembershipRequestsRequest {
                organization_id: org.into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "AcceptMembershipRequest" => {
            let id = fresh_request(&mut svc).await;
            client
                .accept_membership_request(pb::AcceptMembershipRequestRequest {
                    membership_request_id: id,
                    ..Default::default()
                })
                .await
                .map(|_| ())
        }
        "RejectMembershipRequest" => {
            let id = fresh_request(&mut svc).await;
            client
                .reject_membership_request(pb::RejectMembershipRequestRequest {
                    membership_request_id: id,
                })
                .await
                .map(|_| ())
        }
        other => panic!("no call for {other}"),
    };
    result
}

const READS: &[&str] = &[
    "GetInvitation",
    "ListInvitations",
    "ListDomains",
    "ListMembershipRequests",
];
const WRITES: &[&str] = &[
    "CreateInvitation",
    "CreateInvitations",
    "RevokeInvitation",
    "CreateDomain",
    "UpdateDomain",
    "DeleteDomain",
    "PrepareDomainVerification",
    "AttemptDomainVerification",
    "AcceptMembershipRequest",
    "RejectMembershipRequest",
];

#[tokio::test]
async fn authorization_of_every_organization_rpc() {
    let app = TestApp::spawn().await;
    // (caller, expected per RPC: None = allowed, Some(code) = refused)
    let callers: Vec<(&str, Invitations)> = vec![
        ("outsider", user(&app, "user_outsider")),
        ("member", user(&app, "user_member")),
        ("org admin", user(&app, "user_owner")),
        ("orgs:admin", admin(&app)),
        ("orgs:read", reader(&app)),
    ];
    for (n, (name, mut client)) in callers.into_iter().enumerate() {
        // A fresh organization per caller keeps its domains under the limit.
        let org = create_org(&app, &format!("Matrix {n}"), Some("user_owner")).await;
        add_member(&app, &org.id, "user_member", "org:member").await;
        domain(
            &app,
            &org.id,
            &format!("suggest{n}.example"),
            pb::EnrollmentMode::AutomaticSuggestion,
            true,
        )
        .await;
        for rpc in READS.iter().chain(WRITES) {
            let result = call_rpc(&app, &mut client, rpc, &org.id, n).await;
            let is_read = READS.contains(rpc);
            let expected = match name {
                "outsider" => Some(Code::NotFound),
                // org:member holds org:sys_memberships:read only.
                "member" if matches!(*rpc, "GetInvitation" | "ListInvitations") => None,
                "member" => Some(Code::PermissionDenied),
                "orgs:read" if is_read => None,
                "orgs:read" => Some(Code::PermissionDenied),
                _ => None,
            };
            match expected {
                None => assert!(allowed(&result), "{name} {rpc}: {result:?}"),
                Some(code) => {
                    let status = result.expect_err(&format!("{name} {rpc} must be refused"));
                    assert_eq!(status.code(), code, "{name} {rpc}: {status:?}");
                }
            }
        }
    }

    // Self-service RPCs: the user itself or orgs:admin.
    let org = create_org(&app, "Self", Some("user_owner")).await;
    domain(
        &app,
        &org.id,
        "self.example",
        pb::EnrollmentMode::AutomaticSuggestion,
        true,
    )
    .await;
    for (name, mut client, user_id, expected) in [
        ("itself", user(&app, "user_self"), "user_self", None),
        (
            "another user",
            user(&app, "user_other"),
            "user_self2",
            Some(Code::PermissionDenied),
        ),
        ("orgs:admin", admin(&app), "user_self3", None),
        (
            "orgs:read",
            reader(&app),
            "user_self4",
            Some(Code::PermissionDenied),
        ),
    ] {
        let email = format!("{user_id}@self.example");
        let created = invite(&app, &org.id, &email).await;
        let results: Vec<Result<(), Status>> = vec![
            client
                .accept_invitation(accept_request(&created.token, user_id, &email))
                .await
                .map(|_| ()),
            client
                .create_membership_request(pb::CreateMembershipRequestRequest {
                    organization_id: org.id.clone(),
                    user_id: user_id.into(),
                    email_address: email.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            client
                .resolve_onboarding(pb::ResolveOnboardingRequest {
                    user_id: user_id.into(),
                    email_address: email.clone(),
                })
                .await
                .map(|_| ()),
        ];
        for (i, result) in results.into_iter().enumerate() {
            match expected {
                None => assert!(allowed(&result), "{name} #{i}: {result:?}"),
                Some(code) => assert_eq!(result.unwrap_err().code(), code, "{name} #{i}"),
            }
        }
    }
}
