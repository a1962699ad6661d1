//! Domains that cannot be guessed or squatted (API.md §7.2), through the
//! generated client against a real server, on SQLite or PostgreSQL
//! (`ORGS_TEST_DATABASE_URL`): per-domain limits that survive new codes,
//! codes stored as a keyed hash, unverified claims that coexist and expire,
//! one verified owner per name (also when two organizations verify at the
//! same moment), DNS TXT proofs against a real DNS server on 127.0.0.1, and
//! LookupDomain.

mod common;
#[path = "domains/dns_server.rs"]
mod dns_server;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use dns_server::{DnsServer, silent_resolver};
use orgs::proto::v1 as pb;
use prost_types::FieldMask;
use sha2::{Digest, Sha256};
use tokio::sync::Barrier;
use tonic::Code;
use tonic_types::StatusExt;

const ADMIN_SUB: &str = "svc-onboarding";

fn admin(app: &TestApp) -> Invitations {
    app.invitations(Some(token(ADMIN_SUB, "orgs:admin")))
}

fn user(app: &TestApp, sub: &str) -> Invitations {
    app.invitations(Some(token(sub, "")))
}

async fn db(app: &TestApp) -> orgs::store::Db {
    orgs::store::Db::connect(&app.database_url, 1)
        .await
        .unwrap()
}

async fn claim(
    app: &TestApp,
    organization_id: &str,
    name: &str,
    strategy: pb::DomainVerificationStrategy,
) -> Result<pb::Domain, tonic::Status> {
    admin(app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: organization_id.into(),
            name: name.into(),
            enrollment_mode: pb::EnrollmentMode::AutomaticSuggestion as i32,
            verification_strategy: strategy as i32,
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().domain.expect("domain"))
}

async fn claim_email(app: &TestApp, organization_id: &str, name: &str) -> pb::Domain {
    claim(
        app,
        organization_id,
        name,
        pb::DomainVerificationStrategy::Unspecified,
    )
    .await
    .expect("create domain")
}

async fn prepare(
    client: &mut Invitations,
    domain: &pb::Domain,
) -> Result<pb::PrepareDomainVerificationResponse, tonic::Status> {
    client
        .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
            domain_id: domain.id.clone(),
            affiliation_email_address: format!("it@{}", domain.name),
        })
        .await
        .map(|response| response.into_inner())
}

async fn attempt(
    client: &mut Invitations,
    domain_id: &str,
    code: &str,
) -> Result<pb::Domain, tonic::Status> {
    client
        .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
            domain_id: domain_id.into(),
            code: code.into(),
        })
        .await
        .map(|response| response.into_inner().domain.expect("domain"))
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

async fn list_names(app: &TestApp, organization_id: &str) -> (Vec<String>, i32) {
    let page = admin(app)
        .list_domains(pb::ListDomainsRequest {
            organization_id: organization_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (
        page.domains.into_iter().map(|d| d.name).collect(),
        page.total_size,
    )
}

/// Events of `kind` about `resource_id` in the log.
async fn events(app: &TestApp, kind: &str, resource_id: &str) -> i64 {
    let db = db(app).await;
    let count = orgs::store::fetch_i64(
        db.conn(),
        "SELECT COUNT(*) FROM events WHERE kind = $1 AND resource_id = $2",
        orgs::values![kind, resource_id],
    )
    .await
    .unwrap();
    db.close().await;
    count
}

/// Audit entries of an organization about `resource_id`.
async fn audit_entries(app: &TestApp, organization_id: &str, resource_id: &str) -> usize {
    app.admin()
        .list_audit_events(pb::ListAuditEventsRequest {
            organization_id: organization_id.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .into_iter()
        .filter(|event| event.resource_id == resource_id)
        .count()
}

#[tokio::test]
async fn guessing_is_stopped_by_the_lock_even_across_50_prepares() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Squatter", Some("user_attacker")).await;
    let dom = claim_email(&app, &org.id, "victim.example").await;
    let mut client = admin(&app);
    let mut wrong_codes = 0;
    let mut locked = 0;
    let mut last_code = String::new();
    for _ in 0..50 {
        // 13 minutes apart: never more than 5 prepares in an hour, and all
        // 50 rounds within 11 hours, inside the lock.
        app.clock.advance(chrono::Duration::minutes(13));
        match prepare(&mut client, &dom).await {
            Ok(prepared) => last_code = prepared.verification_code,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(reason(&status), "DOMAIN_VERIFICATION_LOCKED");
            }
        }
        for _ in 0..5 {
            let status = attempt(&mut client, &dom.id, wrong(&last_code))
                .await
                .expect_err("a wrong code never verifies");
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            match reason(&status).as_str() {
                "VERIFICATION_CODE_INVALID" => wrong_codes += 1,
                "DOMAIN_VERIFICATION_LOCKED" => locked += 1,
                other => panic!("unexpected reason {other}: {status:?}"),
            }
        }
    }
    assert_eq!(wrong_codes, 10, "10 guesses, then the lock");
    assert_eq!(locked, 240);
    // Even the right code of the last prepared round is refused while locked.
    assert_status(
        attempt(&mut client, &dom.id, &last_code).await,
        Code::FailedPrecondition,
        "DOMAIN_VERIFICATION_LOCKED",
    );
    // Each failed attempt is in the organization's audit trail.
    assert_eq!(audit_entries(&app, &org.id, &dom.id).await, 1 + 2 + 10);

    // 24 hours after the tenth failure the domain may be proved again.
    app.clock.advance(chrono::Duration::hours(14));
    let code = prepare(&mut client, &dom)
        .await
        .expect("unlocked")
        .verification_code;
    let verified = attempt(&mut client, &dom.id, &code).await.unwrap();
    assert!(verified.verified);
}

#[tokio::test]
async fn prepares_are_limited_per_domain_per_hour() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let dom = claim_email(&app, &org.id, "acme.example").await;
    let other = claim_email(&app, &org.id, "other.example").await;
    prepare(&mut admin(&app), &dom).await.unwrap();
    app.clock.advance(chrono::Duration::minutes(10));
    // Whoever calls: an end user's prepares count for the domain too.
    for _ in 0..2 {
        prepare(&mut user(&app, "user_owner"), &dom).await.unwrap();
        prepare(&mut admin(&app), &dom).await.unwrap();
    }
    let status = assert_status(
        prepare(&mut user(&app, "user_owner"), &dom).await,
        Code::ResourceExhausted,
        "VERIFICATION_PREPARE_LIMIT_REACHED",
    );
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert_eq!(
        retry,
        Duration::from_secs(50 * 60),
        "when the first leaves the hour"
    );
    // Another domain has its own budget.
    prepare(&mut admin(&app), &other).await.unwrap();
    app.clock.advance(chrono::Duration::minutes(50));
    let code = prepare(&mut admin(&app), &dom)
        .await
        .expect("an hour after the first")
        .verification_code;
    assert!(
        attempt(&mut admin(&app), &dom.id, &code)
            .await
            .unwrap()
            .verified
    );
}

#[tokio::test]
async fn codes_are_stored_as_a_keyed_hash() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let dom = claim_email(&app, &org.id, "acme.example").await;
    let code = prepare(&mut admin(&app), &dom)
        .await
        .unwrap()
        .verification_code;
    #[derive(sea_orm::FromQueryResult)]
    struct Stored {
        code_hash: Option<String>,
    }
    let db = db(&app).await;
    let stored: Vec<Stored> = orgs::store::fetch_all(
        db.conn(),
        "SELECT code_hash FROM domains WHERE id = $1",
        orgs::values![dom.id.clone()],
    )
    .await
    .unwrap();
    db.close().await;
    let stored = stored[0].code_hash.clone().expect("a code is outstanding");
    let sha = |input: String| hex::encode(Sha256::digest(input.as_bytes()));
    assert_eq!(stored.len(), 64);
    assert_ne!(stored, code, "not plain");
    assert_ne!(stored, sha(code.clone()), "not a plain SHA-256");
    assert_ne!(
        stored,
        sha(format!("{}:{code}", dom.id)),
        "not the old salted SHA-256"
    );
    assert!(
        attempt(&mut admin(&app), &dom.id, &code)
            .await
            .unwrap()
            .verified
    );
}

#[tokio::test]
async fn unverified_claims_coexist_until_one_is_verified() {
    let app = TestApp::spawn().await;
    let real = create_org(&app, "BigCorp", Some("user_real")).await;
    let squatter = create_org(&app, "Squatter", Some("user_squatter")).await;
    let other = create_org(&app, "Other", Some("user_other")).await;
    let squatted = claim_email(&app, &squatter.id, "bigcorp.example").await;
    let other_claim = claim_email(&app, &other.id, "bigcorp.example").await;
    let mine = claim_email(&app, &real.id, "bigcorp.example").await;
    assert_status(
        claim(
            &app,
            &real.id,
            "BigCorp.example",
            pb::DomainVerificationStrategy::EmailCode,
        )
        .await,
        Code::AlreadyExists,
        "DOMAIN_EXISTS",
    );
    // Unverified claims are not ownership: nobody is steered anywhere.
    let onboarding = admin(&app)
        .resolve_onboarding(pb::ResolveOnboardingRequest {
            user_id: "user_new".into(),
            email_address: "new@bigcorp.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(onboarding.suggestions.is_empty());
    assert_status(
        app.invitations(Some(token("svc-reporting", "orgs:read")))
            .lookup_domain(pb::LookupDomainRequest {
                name: "bigcorp.example".into(),
            })
            .await,
        Code::NotFound,
        "DOMAIN_NOT_FOUND",
    );

    let code = prepare(&mut admin(&app), &mine)
        .await
        .unwrap()
        .verification_code;
    let verified = attempt(&mut user(&app, "user_real"), &mine.id, &code)
        .await
        .unwrap();
    assert!(verified.verified);
    // The other claims are gone, each with an event and an audit entry in its
    // organization.
    for (org, gone) in [(&squatter, &squatted), (&other, &other_claim)] {
        assert_eq!(list_names(&app, &org.id).await, (vec![], 0));
        assert_eq!(events(&app, "domain.deleted", &gone.id).await, 1);
        assert_eq!(
            audit_entries(&app, &org.id, &gone.id).await,
            2,
            "created, removed"
        );
        assert_status(
            prepare(&mut admin(&app), gone).await,
            Code::NotFound,
            "DOMAIN_NOT_FOUND",
        );
    }
    // A verified name is the owner's alone.
    assert_status(
        claim(
            &app,
            &squatter.id,
            "bigcorp.example",
            pb::DomainVerificationStrategy::DnsTxt,
        )
        .await,
        Code::AlreadyExists,
        "DOMAIN_EXISTS",
    );
    let onboarding = admin(&app)
        .resolve_onboarding(pb::ResolveOnboardingRequest {
            user_id: "user_new".into(),
            email_address: "new@bigcorp.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let suggested: Vec<_> = onboarding
        .suggestions
        .iter()
        .map(|s| s.organization_id.clone())
        .collect();
    assert_eq!(suggested, vec![real.id.clone()]);

    // LookupDomain: the verified domain and its owner.
    for mut client in [
        admin(&app),
        app.invitations(Some(token("svc-reporting", "orgs:read"))),
    ] {
        let found = client
            .lookup_domain(pb::LookupDomainRequest {
                name: " BigCorp.Example. ".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.domain.unwrap().id, mine.id);
        assert_eq!(found.organization.unwrap().id, real.id);
    }
    assert_status(
        user(&app, "user_real")
            .lookup_domain(pb::LookupDomainRequest {
                name: "bigcorp.example".into(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_invalid(
        admin(&app)
            .lookup_domain(pb::LookupDomainRequest {
                name: "not a domain".into(),
            })
            .await,
        "name",
    );

    // A domain created verified by the platform removes claims the same way.
    let early = claim_email(&app, &squatter.id, "second.example").await;
    let created = admin(&app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: real.id.clone(),
            name: "second.example".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            verified: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert!(created.verified);
    assert_eq!(events(&app, "domain.deleted", &early.id).await, 1);
    assert_eq!(list_names(&app, &squatter.id).await, (vec![], 0));
}

#[tokio::test]
async fn two_organizations_verifying_one_name_at_once_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let first = create_org(&app, "First", Some("user_first")).await;
    let second = create_org(&app, "Second", Some("user_second")).await;
    for round in 0..4 {
        let name = format!("race{round}.example");
        let mut racers = Vec::new();
        for org in [&first, &second] {
            let dom = claim_email(&app, &org.id, &name).await;
            let code = prepare(&mut admin(&app), &dom)
                .await
                .unwrap()
                .verification_code;
            racers.push((dom.id, code));
        }
        let barrier = Arc::new(Barrier::new(racers.len()));
        let tasks: Vec<_> = racers
            .into_iter()
            .map(|(id, code)| {
                let barrier = barrier.clone();
                let mut client = admin(&app);
                tokio::spawn(async move {
                    barrier.wait().await;
                    attempt(&mut client, &id, &code).await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(domain) => {
                    assert!(domain.verified);
                    won += 1;
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                    assert_eq!(reason(&status), "DOMAIN_EXISTS");
                }
            }
        }
        assert_eq!(won, 1, "round {round}");
        let db = db(&app).await;
        let rows = orgs::store::fetch_i64(
            db.conn(),
            "SELECT COUNT(*) FROM domains WHERE name = $1",
            orgs::values![name.clone()],
        )
        .await
        .unwrap();
        db.close().await;
        assert_eq!(rows, 1, "the loser's claim is removed");
    }
}

#[tokio::test]
async fn unverified_claims_expire() {
    let app = TestApp::spawn_with(|config| config.domains.claim_ttl_days = 7).await;
    let early = create_org(&app, "Early", Some("user_early")).await;
    let late = create_org(&app, "Late", Some("user_late")).await;
    let stale = claim_email(&app, &early.id, "stale.example").await;
    let kept = admin(&app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: early.id.clone(),
            name: "kept.example".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            verified: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    for i in 0..8 {
        claim_email(&app, &early.id, &format!("d{i}.example")).await;
    }
    assert_status(
        claim(
            &app,
            &early.id,
            "full.example",
            pb::DomainVerificationStrategy::EmailCode,
        )
        .await,
        Code::FailedPrecondition,
        "DOMAIN_LIMIT_REACHED",
    );
    app.clock.advance(chrono::Duration::days(6));
    assert_eq!(list_names(&app, &early.id).await.1, 10, "not expired yet");
    app.clock.advance(chrono::Duration::days(1));

    // Expired: not listed, not counted, not usable.
    assert_eq!(
        list_names(&app, &early.id).await,
        (vec!["kept.example".to_string()], 1)
    );
    assert_status(
        prepare(&mut admin(&app), &stale).await,
        Code::NotFound,
        "DOMAIN_NOT_FOUND",
    );
    assert!(kept.verified);
    // Another organization claims the name: the expired claim is removed.
    let fresh = claim_email(&app, &late.id, "stale.example").await;
    assert_eq!(events(&app, "domain.deleted", &stale.id).await, 1);
    // The organization that let it expire may claim it again, and more.
    claim_email(&app, &early.id, "stale.example").await;
    claim_email(&app, &early.id, "full.example").await;
    assert_eq!(list_names(&app, &early.id).await.1, 3);
    let code = prepare(&mut admin(&app), &fresh)
        .await
        .unwrap()
        .verification_code;
    assert!(
        attempt(&mut admin(&app), &fresh.id, &code)
            .await
            .unwrap()
            .verified
    );
}

#[tokio::test]
async fn strategy_is_chosen_at_create_and_updated_while_unverified() {
    let app = TestApp::spawn().await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let dom = claim_email(&app, &org.id, "acme.example").await;
    assert_eq!(
        dom.verification_strategy,
        pb::DomainVerificationStrategy::EmailCode as i32
    );
    let mask = |paths: &[&str]| {
        Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    };
    let updated = user(&app, "user_owner")
        .update_domain(pb::UpdateDomainRequest {
            domain: Some(pb::Domain {
                id: dom.id.clone(),
                verification_strategy: pb::DomainVerificationStrategy::DnsTxt as i32,
                ..Default::default()
            }),
            update_mask: mask(&["verification_strategy"]),
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(
        updated.verification_strategy,
        pb::DomainVerificationStrategy::DnsTxt as i32
    );
    assert_eq!(
        updated.enrollment_mode, dom.enrollment_mode,
        "not in the mask"
    );
    assert_invalid(
        user(&app, "user_owner")
            .update_domain(pb::UpdateDomainRequest {
                domain: Some(pb::Domain {
                    id: dom.id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["verification_strategy"]),
            })
            .await,
        "domain.verification_strategy",
    );
    assert_invalid(
        admin(&app)
            .create_domain(pb::CreateDomainRequest {
                organization_id: org.id.clone(),
                name: "y.example".into(),
                enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                verification_strategy: 7,
                ..Default::default()
            })
            .await,
        "verification_strategy",
    );
    let verified = admin(&app)
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.id.clone(),
            name: "verified.example".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            verified: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_status(
        admin(&app)
            .update_domain(pb::UpdateDomainRequest {
                domain: Some(pb::Domain {
                    id: verified.id.clone(),
                    verification_strategy: pb::DomainVerificationStrategy::DnsTxt as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["verification_strategy"]),
            })
            .await,
        Code::FailedPrecondition,
        "DOMAIN_ALREADY_VERIFIED",
    );
    // The email strategy needs an address; a DNS domain takes no code.
    assert_invalid(
        admin(&app)
            .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
                domain_id: claim_email(&app, &org.id, "mail.example").await.id,
                affiliation_email_address: String::new(),
            })
            .await,
        "affiliation_email_address",
    );
    assert_invalid(attempt(&mut admin(&app), &dom.id, "123456").await, "code");
}

#[tokio::test]
async fn dns_txt_verification_against_a_real_dns_server() {
    let dns = DnsServer::start("test.").await;
    let app = TestApp::spawn_with(|config| config.domains.dns_resolver = Some(dns.addr)).await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let mut owner = user(&app, "user_owner");
    let dom = owner
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.id.clone(),
            name: "acme.test".into(),
            enrollment_mode: pb::EnrollmentMode::AutomaticInvitation as i32,
            verification_strategy: pb::DomainVerificationStrategy::DnsTxt as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_status(
        attempt(&mut owner, &dom.id, "").await,
        Code::FailedPrecondition,
        "DNS_CHALLENGE_NOT_PREPARED",
    );
    // End users see the record to publish; no address is needed.
    let prepared = owner
        .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
            domain_id: dom.id.clone(),
            affiliation_email_address: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prepared.dns_record_name, "_orgs-challenge.acme.test");
    assert_eq!(prepared.dns_record_value.len(), 43);
    assert!(prepared.verification_code.is_empty() && prepared.expire_time.is_none());
    let again = prepare(&mut admin(&app), &dom).await.unwrap();
    assert_eq!(
        again.dns_record_value, prepared.dns_record_value,
        "stable until verified"
    );

    // No record (NXDOMAIN), then a wrong one: not found, counted, audited.
    assert_status(
        attempt(&mut owner, &dom.id, "").await,
        Code::FailedPrecondition,
        "DNS_RECORD_NOT_FOUND",
    );
    dns.publish_txt("_orgs-challenge.acme.test", "someone-elses-value")
        .await;
    assert_status(
        attempt(&mut owner, &dom.id, "").await,
        Code::FailedPrecondition,
        "DNS_RECORD_NOT_FOUND",
    );
    assert_eq!(audit_entries(&app, &org.id, &dom.id).await, 1 + 1 + 1 + 2);

    // The right value, next to the wrong one: verified.
    dns.publish_txt("_orgs-challenge.acme.test", &prepared.dns_record_value)
        .await;
    let verified = attempt(&mut owner, &dom.id, "").await.unwrap();
    assert!(verified.verified);
    assert_eq!(
        verified.verification_strategy,
        pb::DomainVerificationStrategy::DnsTxt as i32
    );
    assert_status(
        attempt(&mut owner, &dom.id, "").await,
        Code::FailedPrecondition,
        "DOMAIN_ALREADY_VERIFIED",
    );
}

#[tokio::test]
async fn dns_failures_count_toward_the_lock() {
    let dns = DnsServer::start("test.").await;
    let app = TestApp::spawn_with(|config| config.domains.dns_resolver = Some(dns.addr)).await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let dom = claim(
        &app,
        &org.id,
        "locked.test",
        pb::DomainVerificationStrategy::DnsTxt,
    )
    .await
    .unwrap();
    let value = prepare(&mut admin(&app), &dom)
        .await
        .unwrap()
        .dns_record_value;
    for _ in 0..10 {
        assert_status(
            attempt(&mut admin(&app), &dom.id, "").await,
            Code::FailedPrecondition,
            "DNS_RECORD_NOT_FOUND",
        );
    }
    dns.publish_txt("_orgs-challenge.locked.test", &value).await;
    assert_status(
        attempt(&mut admin(&app), &dom.id, "").await,
        Code::FailedPrecondition,
        "DOMAIN_VERIFICATION_LOCKED",
    );
    app.clock.advance(chrono::Duration::hours(24));
    assert!(
        attempt(&mut admin(&app), &dom.id, "")
            .await
            .unwrap()
            .verified
    );
}

#[tokio::test]
async fn a_dns_resolver_that_does_not_answer_is_unavailable() {
    let (addr, _socket) = silent_resolver().await;
    let app = TestApp::spawn_with(|config| {
        config.domains.dns_resolver = Some(addr);
        config.domains.dns_timeout_ms = 300;
    })
    .await;
    let org = create_org(&app, "Acme", Some("user_owner")).await;
    let dom = claim(
        &app,
        &org.id,
        "silent.test",
        pb::DomainVerificationStrategy::DnsTxt,
    )
    .await
    .unwrap();
    prepare(&mut admin(&app), &dom).await.unwrap();
    // The client waits far longer than the DNS timeout: a hang would end in
    // DEADLINE_EXCEEDED, not in UNAVAILABLE.
    let mut request = tonic::Request::new(pb::AttemptDomainVerificationRequest {
        domain_id: dom.id.clone(),
        code: String::new(),
    });
    request.set_timeout(Duration::from_secs(20));
    assert_status(
        admin(&app).attempt_domain_verification(request).await,
        Code::Unavailable,
        "DNS_RESOLVER_UNAVAILABLE",
    );
    // Not a failed attempt: nothing counted, nothing audited.
    assert_eq!(audit_entries(&app, &org.id, &dom.id).await, 2);
    let db = db(&app).await;
    let failures = orgs::store::fetch_i64(
        db.conn(),
        "SELECT COUNT(*) FROM domain_verification_attempts WHERE kind = 'failure'",
        vec![],
    )
    .await
    .unwrap();
    db.close().await;
    assert_eq!(failures, 0);
}
