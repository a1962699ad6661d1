//! The authorization matrix: every RPC of the orgs services, called by each
//! kind of caller against a running server configured with an issuer and an
//! audience, answers the code the contract (API.md §1, §7.1) gives it.
//!
//! One row per RPC: its name, the 14 expected codes and a request builder
//! that names the resources of the row. Rows whose call consumes what it names
//! (deletes, accepts, revokes) build fresh resources for every cell; the others
//! share one world. The set of RPCs comes from the descriptor set, so a new RPC
//! without a row fails the test, naming it.
//!
//! Codes: `O` OK, `U` UNAUTHENTICATED, `P` PERMISSION_DENIED, `N` NOT_FOUND,
//! `A` ALREADY_EXISTS, `F` FAILED_PRECONDITION, `I` INVALID_ARGUMENT.
//! Columns, in order (spaces are ignored):
//! - bad tokens, each carrying `orgs:admin`: none, expired, wrong key,
//!   `alg: none`, without `iss` or without `aud`;
//! - end users: an outsider (in no organization), an `org:member`, a member
//!   whose custom role holds only `org:sys_memberships:manage`, the `org:admin`
//!   of another organization, the `org:admin` of the target organization;
//! - services: `orgs:read`, `orgs:admin`, `billing:read`, `billing:write`.
//!
//! Self-service calls (CheckPermission, AcceptInvitation, ...) name the caller
//! itself when it is an end user, so its column shows what it may do for
//! itself; services name another user.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::raw;
use common::{SECRET, TestApp, reason};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orgs::auth::token::{TokenRequest, mint_hs256};
use orgs::clients::{InvitationServiceClient, OrganizationServiceClient};
use orgs::proto::v1 as pb;
use prost::Message;
use prost_types::FieldMask;
use tonic::codegen::Bytes;
use tonic::transport::Channel;
use tonic::{Code, Status};

const ISSUER: &str = "https://id.matrix.example";
const AUDIENCE: &str = "orgs-matrix";
/// The verified domain of the target organization (automatic suggestion): the
/// end users' verified addresses are at it.
const DOMAIN: &str = "matrix-corp.com";
/// A custom role holding only `org:sys_memberships:manage`.
const MANAGER: &str = "org:matrix_manager";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    Expired,
    WrongKey,
    AlgNone,
    NoIssuerOrAudience,
    Outsider,
    Member,
    Manager,
    OtherAdmin,
    OrgAdmin,
    OrgsRead,
    OrgsAdmin,
    BillingRead,
    BillingWrite,
}

const COLUMNS: [Who; 14] = [
    Who::NoToken,
    Who::Expired,
    Who::WrongKey,
    Who::AlgNone,
    Who::NoIssuerOrAudience,
    Who::Outsider,
    Who::Member,
    Who::Manager,
    Who::OtherAdmin,
    Who::OrgAdmin,
    Who::OrgsRead,
    Who::OrgsAdmin,
    Who::BillingRead,
    Who::BillingWrite,
];

impl Who {
    /// The end user's id, for end users.
    fn user(self) -> Option<&'static str> {
        Some(match self {
            Who::Outsider => "user_outsider",
            Who::Member => "user_member",
            Who::Manager => "user_manager",
            Who::OtherAdmin => "user_other_admin",
            Who::OrgAdmin => "user_owner",
            _ => return None,
        })
    }

    fn scope(self) -> Option<&'static str> {
        Some(match self {
            Who::OrgsRead => "orgs:read",
            Who::OrgsAdmin => "orgs:admin",
            Who::BillingRead => "billing:read",
            Who::BillingWrite => "billing:write",
            _ => return None,
        })
    }

    /// The tokens of the column: a call must answer the same with each.
    fn tokens(self) -> Vec<Option<String>> {
        let now = jsonwebtoken::get_current_timestamp();
        let admin = |claims: serde_json::Value, secret: &str| {
            let mut all = serde_json::json!({"sub": "svc-admin", "scope": "orgs:admin"});
            for (key, value) in claims.as_object().expect("claims").iter() {
                all[key] = value.clone();
            }
            Some(
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &all,
                    &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
                )
                .expect("encode"),
            )
        };
        let valid = serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600});
        match self {
            Who::NoToken => vec![None],
            Who::Expired => vec![admin(
                serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now - 3600}),
                SECRET,
            )],
            Who::WrongKey => vec![admin(valid, "another-secret-0123456789abcdef-0123")],
            Who::AlgNone => {
                use base64::Engine;
                let b64 = |v: &serde_json::Value| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                };
                let claims = serde_json::json!({
                    "sub": "svc-admin", "scope": "orgs:admin",
                    "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600,
                });
                let header = serde_json::json!({"alg": "none", "typ": "JWT"});
                vec![Some(format!("{}.{}.", b64(&header), b64(&claims)))]
            }
            Who::NoIssuerOrAudience => vec![
                admin(
                    serde_json::json!({"aud": AUDIENCE, "exp": now + 600}),
                    SECRET,
                ),
                admin(serde_json::json!({"iss": ISSUER, "exp": now + 600}), SECRET),
            ],
            _ => {
                let request = match (self.user(), self.scope()) {
                    (Some(user), _) => TokenRequest {
                        sub: user.into(),
                        email: Some(email_of(user)),
                        email_verified: true,
                        ..Default::default()
                    },
                    (None, scope) => TokenRequest {
                        sub: format!("svc-{}", scope.unwrap_or_default().replace(':', "-")),
                        scope: scope.map(str::to_string),
                        ..Default::default()
                    },
                };
                vec![Some(minted(request))]
            }
        }
    }
}

/// A token with the configured issuer and audience.
fn minted(request: TokenRequest) -> String {
    mint_hs256(
        SECRET,
        &TokenRequest {
            ttl_seconds: 600,
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..request
        },
    )
    .expect("mint")
}

fn email_of(user: &str) -> String {
    format!("{}@{DOMAIN}", user.trim_start_matches("user_"))
}

fn admin_token() -> String {
    minted(TokenRequest {
        sub: "svc-fixtures".into(),
        scope: Some("orgs:admin".into()),
        ..Default::default()
    })
}

fn parse_codes(codes: &str) -> Vec<Code> {
    codes
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'O' => Code::Ok,
            'U' => Code::Unauthenticated,
            'P' => Code::PermissionDenied,
            'N' => Code::NotFound,
            'A' => Code::AlreadyExists,
            'F' => Code::FailedPrecondition,
            'I' => Code::InvalidArgument,
            other => panic!("unknown code letter {other}"),
        })
        .collect()
}

fn letter(code: Code) -> char {
    match code {
        Code::Ok => 'O',
        Code::Unauthenticated => 'U',
        Code::PermissionDenied => 'P',
        Code::NotFound => 'N',
        Code::AlreadyExists => 'A',
        Code::FailedPrecondition => 'F',
        Code::InvalidArgument => 'I',
        _ => '?',
    }
}

/// What every row shares: the target organization `org` (`user_owner` its
/// `org:admin`, `user_member` an `org:member`, `user_manager` holding
/// [`MANAGER`], `user_victim` an `org:member`, [`DOMAIN`] verified for
/// automatic suggestion, one pending invitation) and another organization
/// whose `org:admin` is `user_other_admin`.
struct World {
    channel: Channel,
    org: String,
    domain_id: String,
    invitation_id: String,
    counter: AtomicUsize,
}

/// One cell: who calls, in the shared world.
#[derive(Clone)]
struct Cell {
    world: Arc<World>,
    who: Who,
}

type Built = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;

struct Row {
    rpc: &'static str,
    codes: &'static str,
    request: fn(Cell) -> Built,
}

fn row(rpc: &'static str, codes: &'static str, request: fn(Cell) -> Built) -> Row {
    Row {
        rpc,
        codes,
        request,
    }
}

fn enc(message: impl Message) -> Vec<u8> {
    message.encode_to_vec()
}

fn mask(path: &str) -> Option<FieldMask> {
    Some(FieldMask {
        paths: vec![path.into()],
    })
}

type Orgs = OrganizationServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, common::Bearer>,
>;
type Invitations = InvitationServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, common::Bearer>,
>;

impl World {
    fn orgs(&self) -> Orgs {
        OrganizationServiceClient::with_interceptor(
            self.channel.clone(),
            common::Bearer::new(admin_token()),
        )
    }

    fn invitations(&self) -> Invitations {
        InvitationServiceClient::with_interceptor(
            self.channel.clone(),
            common::Bearer::new(admin_token()),
        )
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.counter.fetch_add(1, Ordering::SeqCst))
    }

    async fn add_member(&self, org: &str, user: &str, role: &str) {
        self.orgs()
            .create_membership(pb::CreateMembershipRequest {
                organization_id: org.into(),
                user_id: user.into(),
                role: role.into(),
                ..Default::default()
            })
            .await
            .expect("add member");
    }

    /// A new organization with the target's members: `user_owner` its
    /// `org:admin`, `user_member` and `user_manager`.
    async fn organization(&self, created_by: &str) -> String {
        let org = self
            .orgs()
            .create_organization(pb::CreateOrganizationRequest {
                name: self.unique("Matrix "),
                created_by: created_by.into(),
                ..Default::default()
            })
            .await
            .expect("create organization")
            .into_inner()
            .organization
            .expect("organization")
            .id;
        if created_by == "user_owner" {
            self.add_member(&org, "user_member", "org:member").await;
            self.add_member(&org, "user_manager", MANAGER).await;
        }
        org
    }

    async fn invitation(&self, org: &str, email: &str) -> pb::CreateInvitationResponse {
        self.invitations()
            .create_invitation(pb::CreateInvitationRequest {
                organization_id: org.into(),
                email_address: email.into(),
                ..Default::default()
            })
            .await
            .expect("create invitation")
            .into_inner()
    }

    async fn domain(&self, org: &str, name: &str, verified: bool) -> String {
        self.invitations()
            .create_domain(pb::CreateDomainRequest {
                organization_id: org.into(),
                name: name.into(),
                enrollment_mode: pb::EnrollmentMode::AutomaticSuggestion as i32,
                verified,
                ..Default::default()
            })
            .await
            .expect("create domain")
            .into_inner()
            .domain
            .expect("domain")
            .id
    }

    /// A new organization like the target with an unverified domain of its own.
    async fn unverified_domain(&self) -> (String, String) {
        let org = self.organization("user_owner").await;
        let name = format!("{}.example.com", self.unique("claim"));
        let id = self.domain(&org, &name, false).await;
        (id, name)
    }

    /// A pending membership request of a new user to the target.
    async fn membership_request(&self) -> String {
        let user = self.unique("user_requester_");
        self.invitations()
            .create_membership_request(pb::CreateMembershipRequestRequest {
                organization_id: self.org.clone(),
                user_id: user.clone(),
                email_address: email_of(&user),
                ..Default::default()
            })
            .await
            .expect("create membership request")
            .into_inner()
            .membership_request
            .expect("membership request")
            .id
    }

    async fn role(&self) -> String {
        let key = self.unique("org:matrix_role");
        self.orgs()
            .create_role(pb::CreateRoleRequest {
                key: key.clone(),
                name: key.clone(),
                ..Default::default()
            })
            .await
            .expect("create role");
        key
    }

    async fn permission(&self) -> String {
        let key = format!("org:{}:use", self.unique("matrix_feature"));
        self.orgs()
            .create_permission(pb::CreatePermissionRequest {
                key: key.clone(),
                name: key.clone(),
                ..Default::default()
            })
            .await
            .expect("create permission");
        key
    }
}

impl Cell {
    fn org(&self) -> String {
        self.world.org.clone()
    }

    /// The user a self-service call is about: the caller itself when it is an
    /// end user, else a user of the target organization.
    fn me(&self) -> String {
        self.who.user().unwrap_or("user_member").to_string()
    }

    /// The user a self-service call for a new user is about: the caller itself
    /// when it is an end user, else a new user.
    fn me_or_new(&self) -> String {
        match self.who.user() {
            Some(user) => user.to_string(),
            None => self.world.unique("user_subject_"),
        }
    }
}

fn rows() -> Vec<Row> {
    vec![
        // ---- OrganizationService ----------------------------------------
        //                         none exp key alg iss | out mem man oth adm | read admin b:r b:w
        row("CreateOrganization", "UUUUU OOOOO POPP", |c| {
            Box::pin(async move {
                enc(pb::CreateOrganizationRequest {
                    name: c.world.unique("Created "),
                    ..Default::default()
                })
            })
        }),
        row("GetOrganization", "UUUUU NOONO OOPP", |c| {
            Box::pin(async move {
                enc(pb::GetOrganizationRequest {
                    lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                        c.org(),
                    )),
                })
            })
        }),
        row("BatchGetOrganizations", "UUUUU NOONO OOPP", |c| {
            Box::pin(async move {
                enc(pb::BatchGetOrganizationsRequest {
                    organization_ids: vec![c.org()],
                })
            })
        }),
        row("ListOrganizations", "UUUUU OOOOO OOPP", |_| {
            Box::pin(async move { enc(pb::ListOrganizationsRequest::default()) })
        }),
        row("UpdateOrganization", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                enc(pb::UpdateOrganizationRequest {
                    organization: Some(pb::Organization {
                        id: c.org(),
                        name: "Renamed".into(),
                        ..Default::default()
                    }),
                    update_mask: mask("name"),
                })
            })
        }),
        row("UpdateOrganizationMetadata", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                enc(pb::UpdateOrganizationMetadataRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        row("DeleteOrganization", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                enc(pb::DeleteOrganizationRequest {
                    organization_id: c.world.organization("user_owner").await,
                    ..Default::default()
                })
            })
        }),
        row("DeactivateOrganization", "UUUUU PPPPP POPP", |c| {
            Box::pin(async move {
                enc(pb::DeactivateOrganizationRequest {
                    organization_id: c.world.organization("user_owner").await,
                    ..Default::default()
                })
            })
        }),
        row("ReactivateOrganization", "UUUUU PPPPP POPP", |c| {
            Box::pin(async move {
                let org = c.world.organization("user_owner").await;
                c.world
                    .orgs()
                    .deactivate_organization(pb::DeactivateOrganizationRequest {
                        organization_id: org.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("deactivate organization");
                enc(pb::ReactivateOrganizationRequest {
                    organization_id: org,
                    ..Default::default()
                })
            })
        }),
        row("CreateMembership", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                enc(pb::CreateMembershipRequest {
                    organization_id: c.org(),
                    user_id: c.world.unique("user_new_"),
                    role: MANAGER.into(),
                    ..Default::default()
                })
            })
        }),
        row("ListMemberships", "UUUUU NOPNO OOPP", |c| {
            Box::pin(async move {
                enc(pb::ListMembershipsRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        row("UpdateMembership", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                enc(pb::UpdateMembershipRequest {
                    membership: Some(pb::Membership {
                        organization_id: c.org(),
                        user_id: "user_victim".into(),
                        role: MANAGER.into(),
                        ..Default::default()
                    }),
                    update_mask: mask("role"),
                })
            })
        }),
        row("DeleteMembership", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                let victim = c.world.unique("user_victim_");
                c.world.add_member(&c.org(), &victim, "org:member").await;
                enc(pb::DeleteMembershipRequest {
                    organization_id: c.org(),
                    user_id: victim,
                    ..Default::default()
                })
            })
        }),
        row("DeactivateMembership", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                let victim = c.world.unique("user_victim_");
                c.world.add_member(&c.org(), &victim, "org:member").await;
                enc(pb::DeactivateMembershipRequest {
                    organization_id: c.org(),
                    user_id: victim,
                    ..Default::default()
                })
            })
        }),
        row("ReactivateMembership", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                let victim = c.world.unique("user_victim_");
                c.world.add_member(&c.org(), &victim, "org:member").await;
                c.world
                    .orgs()
                    .deactivate_membership(pb::DeactivateMembershipRequest {
                        organization_id: c.org(),
                        user_id: victim.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("deactivate membership");
                enc(pb::ReactivateMembershipRequest {
                    organization_id: c.org(),
                    user_id: victim,
                    ..Default::default()
                })
            })
        }),
        row("CreateRole", "UUUUU PPPPP POPP", |c| {
            Box::pin(async move {
                let key = c.world.unique("org:matrix_new");
                enc(pb::CreateRoleRequest {
                    name: key.clone(),
                    key,
                    ..Default::default()
                })
            })
        }),
        row("GetRole", "UUUUU OOOOO OOOO", |_| {
            Box::pin(async move {
                enc(pb::GetRoleRequest {
                    key: MANAGER.into(),
                })
            })
        }),
        row("ListRoles", "UUUUU OOOOO OOOO", |_| {
            Box::pin(async move { enc(pb::ListRolesRequest::default()) })
        }),
        row("UpdateRole", "UUUUU PPPPP POPP", |_| {
            Box::pin(async move {
                enc(pb::UpdateRoleRequest {
                    role: Some(pb::Role {
                        key: MANAGER.into(),
                        name: "Manager".into(),
                        ..Default::default()
                    }),
                    update_mask: mask("name"),
                })
            })
        }),
        row("DeleteRole", "UUUUU PPPPP POPP", |c| {
            Box::pin(async move {
                enc(pb::DeleteRoleRequest {
                    key: c.world.role().await,
                })
            })
        }),
        row("CreatePermission", "UUUUU PPPPP POPP", |c| {
            Box::pin(async move {
                let key = format!("org:{}:use", c.world.unique("matrix_new"));
                enc(pb::CreatePermissionRequest {
                    name: key.clone(),
                    key,
                    ..Default::default()
                })
            })
        }),
        row("ListPermissions", "UUUUU OOOOO OOOO", |_| {
            Box::pin(async move { enc(pb::ListPermissionsRequest::default()) })
        }),
        row("DeletePermission", "UUUUU PPPPP POPP", |c| {
            Box::pin(async move {
                enc(pb::DeletePermissionRequest {
                    key: c.world.permission().await,
                })
            })
        }),
        row("CheckPermission", "UUUUU OOOOO OOPP", |c| {
            Box::pin(async move {
                enc(pb::CheckPermissionRequest {
                    organization_id: c.org(),
                    user_id: c.me(),
                    permission: "org:sys_memberships:read".into(),
                })
            })
        }),
        row("ListAuditEvents", "UUUUU NPPNO OOPP", |c| {
            Box::pin(async move {
                enc(pb::ListAuditEventsRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        // ---- InvitationService ------------------------------------------
        //                         none exp key alg iss | out mem man oth adm | read admin b:r b:w
        row("CreateInvitation", "UUUUU NPONO POPP", |c| {
            Box::pin(async move { enc(new_invitation(&c)) })
        }),
        row("CreateInvitations", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                enc(pb::CreateInvitationsRequest {
                    requests: vec![new_invitation(&c)],
                })
            })
        }),
        row("GetInvitation", "UUUUU NOPNO OOPP", |c| {
            Box::pin(async move {
                enc(pb::GetInvitationRequest {
                    invitation_id: c.world.invitation_id.clone(),
                })
            })
        }),
        row("ListInvitations", "UUUUU NOPNO OOPP", |c| {
            Box::pin(async move {
                enc(pb::ListInvitationsRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        row("RevokeInvitation", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                let email = format!("{}@invited.example.com", c.world.unique("revoked"));
                let created = c.world.invitation(&c.org(), &email).await;
                enc(pb::RevokeInvitationRequest {
                    invitation_id: created.invitation.expect("invitation").id,
                })
            })
        }),
        row("AcceptInvitation", "UUUUU OOOOO POPP", |c| {
            Box::pin(async move {
                // An invitation of the caller (or a new user) to a new,
                // empty organization.
                let user = c.me_or_new();
                let org = c.world.organization("").await;
                let created = c.world.invitation(&org, &email_of(&user)).await;
                enc(pb::AcceptInvitationRequest {
                    token: created.token,
                    user_id: user.clone(),
                    email_address: email_of(&user),
                    ..Default::default()
                })
            })
        }),
        row("CreateDomain", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                enc(pb::CreateDomainRequest {
                    organization_id: c.org(),
                    name: format!("{}.example.com", c.world.unique("created")),
                    enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                    ..Default::default()
                })
            })
        }),
        row("LookupDomain", "UUUUU PPPPP OOPP", |_| {
            Box::pin(async move {
                enc(pb::LookupDomainRequest {
                    name: DOMAIN.into(),
                })
            })
        }),
        row("ListDomains", "UUUUU NPPNO OOPP", |c| {
            Box::pin(async move {
                enc(pb::ListDomainsRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        row("UpdateDomain", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                enc(pb::UpdateDomainRequest {
                    domain: Some(pb::Domain {
                        id: c.world.domain_id.clone(),
                        enrollment_mode: pb::EnrollmentMode::AutomaticSuggestion as i32,
                        ..Default::default()
                    }),
                    update_mask: mask("enrollment_mode"),
                })
            })
        }),
        row("DeleteDomain", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                let (domain_id, _) = c.world.unverified_domain().await;
                enc(pb::DeleteDomainRequest { domain_id })
            })
        }),
        row("PrepareDomainVerification", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                let (domain_id, name) = c.world.unverified_domain().await;
                enc(pb::PrepareDomainVerificationRequest {
                    domain_id,
                    affiliation_email_address: format!("it@{name}"),
                })
            })
        }),
        row("AttemptDomainVerification", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                let (domain_id, name) = c.world.unverified_domain().await;
                let code = c
                    .world
                    .invitations()
                    .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
                        domain_id: domain_id.clone(),
                        affiliation_email_address: format!("it@{name}"),
                    })
                    .await
                    .expect("prepare verification")
                    .into_inner()
                    .verification_code;
                enc(pb::AttemptDomainVerificationRequest { domain_id, code })
            })
        }),
        // Members asking to join their own organization: ALREADY_EXISTS.
        row("CreateMembershipRequest", "UUUUU OAAOA POPP", |c| {
            Box::pin(async move {
                let user = c.me_or_new();
                enc(pb::CreateMembershipRequestRequest {
                    organization_id: c.org(),
                    email_address: email_of(&user),
                    user_id: user,
                    ..Default::default()
                })
            })
        }),
        row("ListMembershipRequests", "UUUUU NPONO OOPP", |c| {
            Box::pin(async move {
                enc(pb::ListMembershipRequestsRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        // Accepting gives the default role (org:member), above the manager's
        // own: ROLE_ABOVE_CALLER.
        row("AcceptMembershipRequest", "UUUUU NPPNO POPP", |c| {
            Box::pin(async move {
                enc(pb::AcceptMembershipRequestRequest {
                    membership_request_id: c.world.membership_request().await,
                    ..Default::default()
                })
            })
        }),
        row("RejectMembershipRequest", "UUUUU NPONO POPP", |c| {
            Box::pin(async move {
                enc(pb::RejectMembershipRequestRequest {
                    membership_request_id: c.world.membership_request().await,
                })
            })
        }),
        row("ResolveOnboarding", "UUUUU OOOOO POPP", |c| {
            Box::pin(async move {
                let user = c.me();
                enc(pb::ResolveOnboardingRequest {
                    email_address: email_of(&user),
                    user_id: user,
                })
            })
        }),
        // ---- BillingService ---------------------------------------------
        //                         none exp key alg iss | out mem man oth adm | read admin b:r b:w
        row("RecordActivity", "UUUUU PPPPP POPO", |c| {
            Box::pin(async move {
                enc(pb::RecordActivityRequest {
                    events: vec![pb::ActivityEvent {
                        user_id: c.me(),
                        ..Default::default()
                    }],
                })
            })
        }),
        row("GetOrganizationUsage", "UUUUU NPPNO POOP", |c| {
            Box::pin(async move {
                enc(pb::GetOrganizationUsageRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        row("GetBillingSummary", "UUUUU PPPPP POOP", |_| {
            Box::pin(async move { enc(pb::GetBillingSummaryRequest::default()) })
        }),
        row("ListBillableOrganizations", "UUUUU PPPPP POOP", |_| {
            Box::pin(async move { enc(pb::ListBillableOrganizationsRequest::default()) })
        }),
        row("ListCostDrivers", "UUUUU PPPPP POOP", |_| {
            Box::pin(async move { enc(pb::ListCostDriversRequest::default()) })
        }),
        row("WatchBillableOrganizations", "UUUUU PPPPP POOP", |_| {
            Box::pin(async move { enc(pb::WatchBillableOrganizationsRequest::default()) })
        }),
        // ---- EventService -------------------------------------------------
        //                         none exp key alg iss | out mem man oth adm | read admin b:r b:w
        row("ListEvents", "UUUUU NPPNO OOPP", |c| {
            Box::pin(async move {
                enc(pb::ListEventsRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
        row("WatchEvents", "UUUUU NPPNO OOPP", |c| {
            Box::pin(async move {
                enc(pb::WatchEventsRequest {
                    organization_id: c.org(),
                    ..Default::default()
                })
            })
        }),
    ]
}

/// An invitation to the target with the custom role, for a new address.
fn new_invitation(c: &Cell) -> pb::CreateInvitationRequest {
    pb::CreateInvitationRequest {
        organization_id: c.org(),
        email_address: format!("{}@invited.example.com", c.world.unique("invitee")),
        role: MANAGER.into(),
        ..Default::default()
    }
}

/// The code of one call. A batch answers OK with one result per item: the
/// item's error code is the cell's.
async fn call(
    channel: Channel,
    path: &str,
    streaming: bool,
    body: Vec<u8>,
    token: Option<&str>,
) -> Status {
    let body = Bytes::from(body);
    let answer = async {
        if streaming {
            return raw::server_streaming(channel, path, body, token)
                .await
                .map(|_| Status::ok(""));
        }
        let bytes = raw::unary(channel, path, body, token).await?;
        if path.ends_with("/CreateInvitations") {
            let response = pb::CreateInvitationsResponse::decode(bytes).expect("decode");
            if let Some(error) = response.results.into_iter().find_map(|r| r.error) {
                return Ok(Status::new(Code::from_i32(error.code), error.message));
            }
        }
        Ok(Status::ok(""))
    };
    match tokio::time::timeout(Duration::from_secs(20), answer).await {
        Ok(Ok(status)) | Ok(Err(status)) => status,
        Err(_) => Status::deadline_exceeded(format!("{path} did not answer")),
    }
}

async fn world(app: &TestApp) -> World {
    let world = World {
        channel: app.channel(),
        org: String::new(),
        domain_id: String::new(),
        invitation_id: String::new(),
        counter: AtomicUsize::new(0),
    };
    world
        .orgs()
        .create_role(pb::CreateRoleRequest {
            key: MANAGER.into(),
            name: "Manager".into(),
            permissions: vec!["org:sys_memberships:manage".into()],
            ..Default::default()
        })
        .await
        .expect("custom role");
    let org = world.organization("user_owner").await;
    world.add_member(&org, "user_victim", "org:member").await;
    world.organization("user_other_admin").await;
    let domain_id = world.domain(&org, DOMAIN, true).await;
    let invitation = world.invitation(&org, "shared@invited.example.com").await;
    World {
        org,
        domain_id,
        invitation_id: invitation.invitation.expect("invitation").id,
        ..world
    }
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_contract_says() {
    let app = TestApp::spawn_with(|config| {
        config.auth.issuer = Some(ISSUER.into());
        config.auth.audience = Some(AUDIENCE.into());
    })
    .await;
    let world = Arc::new(world(&app).await);
    let mut rows: BTreeMap<&str, Row> = rows().into_iter().map(|r| (r.rpc, r)).collect();

    let pool = prost_reflect::DescriptorPool::decode(orgs::proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    let mut table = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == "orgs.v1") {
        for method in service.methods() {
            let Some(row) = rows.remove(method.name()) else {
                missing.push(format!("{}/{}", service.name(), method.name()));
                continue;
            };
            let expected = parse_codes(row.codes);
            assert_eq!(expected.len(), COLUMNS.len(), "{}: 14 codes", row.rpc);
            let path = format!("/{}/{}", service.full_name(), method.name());
            let mut got = String::new();
            for (who, expected) in COLUMNS.iter().zip(&expected) {
                let cell = Cell {
                    world: world.clone(),
                    who: *who,
                };
                let mut answer = *expected;
                for token in who.tokens() {
                    let body = (row.request)(cell.clone()).await;
                    let status = call(
                        app.channel(),
                        &path,
                        method.is_server_streaming(),
                        body,
                        token.as_deref(),
                    )
                    .await;
                    if status.code() != *expected {
                        wrong.push(format!(
                            "{} as {who:?}: expected {expected:?}, got {:?} {} {:?}",
                            row.rpc,
                            status.code(),
                            reason(&status),
                            status.message()
                        ));
                        answer = status.code();
                    }
                }
                got.push(letter(answer));
            }
            table.push(format!("{:<28}{got}", row.rpc));
        }
    }
    println!("{}", table.join("\n"));
    assert!(
        missing.is_empty(),
        "RPCs without a row in the authorization matrix: {missing:?}"
    );
    assert!(
        rows.is_empty(),
        "rows for RPCs that are not in the descriptor set: {:?}",
        rows.keys().collect::<Vec<_>>()
    );
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    app.shutdown().await;
}
