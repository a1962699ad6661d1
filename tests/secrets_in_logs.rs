//! The real `orgs serve` process, logging everything (`RUST_LOG=trace`) in
//! both formats, runs a full flow: organizations, invitations with tokens and
//! links (replayed, in a batch, accepted, refused for the wrong address),
//! domain verification codes (prepared, tried wrong and right), page tokens,
//! a watch, and calls with bad bearer tokens. Stopped, its stdout and stderr
//! must hold none of the invitation tokens, the verification codes, the
//! bearer tokens or the HS256 secret.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Bearer, fresh_database_url};
use orgs::auth::token::{TokenRequest, mint_hs256};
use orgs::clients::{BillingServiceClient, InvitationServiceClient, OrganizationServiceClient};
use orgs::proto::v1 as pb;
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(30);

/// What must never be logged, with a name for the failure message.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(!value.is_empty(), "{what} is empty");
        self.0.push((what.to_string(), value.to_string()));
    }
}

/// Whether `code` (six digits) occurs in `log` as a value of its own, not as
/// part of a longer number, a time of day, a fraction of a second, a port or
/// a duration.
fn contains_code(log: &str, code: &str) -> bool {
    log.match_indices(code).any(|(at, _)| {
        let before = log[..at].chars().next_back();
        let after = log[at + code.len()..].chars().next();
        let number_before = before.is_some_and(|c| c.is_ascii_digit() || ".:-+".contains(c));
        let number_after = after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
        !number_before && !number_after
    })
}

fn mint(secret: &str, sub: &str, scope: &str, email: Option<&str>) -> String {
    mint_hs256(
        secret,
        &TokenRequest {
            sub: sub.into(),
            scope: Some(scope.into()),
            ttl_seconds: 600,
            email: email.map(str::to_string),
            email_verified: email.is_some(),
            ..Default::default()
        },
    )
    .expect("mint")
}

struct Flow {
    channel: Channel,
    secret: String,
    secrets: Secrets,
}

impl Flow {
    fn token(&mut self, sub: &str, scope: &str, email: Option<&str>) -> Bearer {
        let token = mint(&self.secret, sub, scope, email);
        self.secrets
            .add(&format!("the bearer token of {sub}"), &token);
        Bearer::new(token)
    }

    fn orgs(
        &mut self,
        sub: &str,
        scope: &str,
    ) -> OrganizationServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>
    {
        let bearer = self.token(sub, scope, None);
        OrganizationServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    fn invitations(
        &mut self,
        sub: &str,
        scope: &str,
        email: Option<&str>,
    ) -> InvitationServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>
    {
        let bearer = self.token(sub, scope, email);
        InvitationServiceClient::with_interceptor(self.channel.clone(), bearer)
    }

    fn invited(&mut self, what: &str, created: &pb::CreateInvitationResponse) {
        self.secrets.add(&format!("{what} token"), &created.token);
        self.secrets.add(&format!("{what} url"), &created.url);
    }

    async fn run(&mut self) {
        // An organization, created by its owner; a second one by orgs:admin.
        let org = self
            .orgs("user_owner", "")
            .create_organization(pb::CreateOrganizationRequest {
                name: "Logged Inc".into(),
                request_id: "create-org-1".into(),
                ..Default::default()
            })
            .await
            .expect("create organization")
            .into_inner()
            .organization
            .expect("organization");
        self.orgs("svc-admin", "orgs:admin")
            .create_organization(pb::CreateOrganizationRequest {
                name: "Logged Two".into(),
                ..Default::default()
            })
            .await
            .expect("create organization");

        // Invitations with links; a replay gets a new token.
        let invite = |email: &str| pb::CreateInvitationRequest {
            organization_id: org.id.clone(),
            email_address: email.into(),
            redirect_url: "https://app.example.com/join?from=mail".into(),
            request_id: format!("invite-{email}"),
            ..Default::default()
        };
        let mut owner = self.invitations("user_owner", "", None);
        let first = owner
            .create_invitation(invite("ann@example.com"))
            .await
            .expect("invite")
            .into_inner();
        self.invited("the first invitation's", &first);
        let replay = owner
            .create_invitation(invite("ann@example.com"))
            .await
            .expect("replayed invite")
            .into_inner();
        self.invited("the replayed invitation's", &replay);
        assert_ne!(first.token, replay.token);
        let batch = owner
            .create_invitations(pb::CreateInvitationsRequest {
                requests: vec![invite("bob@example.com"), invite("cy@example.com")],
            })
            .await
            .expect("batch")
            .into_inner();
        for result in &batch.results {
            self.secrets
                .add("a batch invitation's token", &result.token);
            self.secrets.add("a batch invitation's url", &result.url);
        }

        // Accepted with the replayed token; the first one is no more; the
        // wrong address is refused.
        self.invitations("user_ann", "", Some("ann@example.com"))
            .accept_invitation(pb::AcceptInvitationRequest {
                token: replay.token.clone(),
                user_id: "user_ann".into(),
                ..Default::default()
            })
            .await
            .expect("accept");
        let gone = self
            .invitations("user_ann", "", Some("ann@example.com"))
            .accept_invitation(pb::AcceptInvitationRequest {
                token: first.token.clone(),
                user_id: "user_ann".into(),
                ..Default::default()
            })
            .await
            .expect_err("the replaced token");
        assert_eq!(gone.code(), Code::NotFound);
        let mismatch = self
            .invitations("user_mallory", "", Some("mallory@example.com"))
            .accept_invitation(pb::AcceptInvitationRequest {
                token: batch.results[0].token.clone(),
                user_id: "user_mallory".into(),
                ..Default::default()
            })
            .await
            .expect_err("another address");
        assert_eq!(mismatch.code(), Code::PermissionDenied);

        // A domain verified with a code, after a wrong one.
        let mut admin = self.invitations("svc-admin", "orgs:admin", None);
        let domain = admin
            .create_domain(pb::CreateDomainRequest {
                organization_id: org.id.clone(),
                name: "logged-corp.com".into(),
                enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
                ..Default::default()
            })
            .await
            .expect("domain")
            .into_inner()
            .domain
            .expect("domain");
        let code = admin
            .prepare_domain_verification(pb::PrepareDomainVerificationRequest {
                domain_id: domain.id.clone(),
                affiliation_email_address: "it@logged-corp.com".into(),
            })
            .await
            .expect("prepare")
            .into_inner()
            .verification_code;
        assert_eq!(code.len(), 6, "{code}");
        self.secrets.add("the verification code", &code);
        let wrong = if code == "846219" { "846218" } else { "846219" };
        self.secrets.add("the wrong verification code", wrong);
        let mut owner = self.invitations("user_owner", "", None);
        owner
            .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
                domain_id: domain.id.clone(),
                code: wrong.into(),
            })
            .await
            .expect_err("a wrong code");
        owner
            .attempt_domain_verification(pb::AttemptDomainVerificationRequest {
                domain_id: domain.id.clone(),
                code: code.clone(),
            })
            .await
            .expect("the right code");

        // Page tokens.
        let mut orgs = self.orgs("svc-admin", "orgs:admin");
        let page = orgs
            .list_organizations(pb::ListOrganizationsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("first page")
            .into_inner();
        assert!(!page.next_page_token.is_empty());
        orgs.list_organizations(pb::ListOrganizationsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .expect("second page");

        // A watch, opened and left.
        let bearer = self.token("svc-billing", "billing:read", None);
        let mut watch = BillingServiceClient::with_interceptor(self.channel.clone(), bearer)
            .watch_billable_organizations(pb::WatchBillableOrganizationsRequest {
                send_initial_state: true,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        tokio::time::timeout(PATIENCE, watch.message())
            .await
            .expect("a first message in time")
            .expect("a message");
        drop(watch);

        // Failed logins: signed with another key, and expired.
        let forged = mint(
            "another-secret-0123456789abcdef-0123456789",
            "user_owner",
            "orgs:admin",
            None,
        );
        self.secrets.add("the forged bearer token", &forged);
        let refused =
            OrganizationServiceClient::with_interceptor(self.channel.clone(), Bearer::new(forged))
                .list_organizations(pb::ListOrganizationsRequest::default())
                .await
                .expect_err("a token with another key");
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
}

/// Runs the flow against `orgs serve` with `format` and answers everything the
/// process wrote, stdout then stderr, with what must not be in it.
async fn logs_of_a_flow(format: &str) -> (String, Secrets) {
    let secret = format!("log-scan-{}-secret-value", ulid::Ulid::new());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgs"))
        .arg("serve")
        .env("ORGS_DATABASE_URL", fresh_database_url().await)
        .env("ORGS_AUTH_HS256_SECRET", &secret)
        .env("ORGS_LISTEN_ADDR", "127.0.0.1:0")
        .env("ORGS_METRICS_LISTEN_ADDR", "127.0.0.1:0")
        .env("ORGS_SHUTDOWN_GRACE_PERIOD", "1")
        .env("ORGS_LOG_FORMAT", format)
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start orgs serve");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (seen, mut listening) = tokio::sync::watch::channel(String::new());
    let out = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&chunk[..n]);
                    let _ = seen.send(String::from_utf8_lossy(&all).into_owned());
                }
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let err = tokio::spawn(async move {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all).await;
        String::from_utf8_lossy(&all).into_owned()
    });
    let addr: SocketAddr = tokio::time::timeout(PATIENCE, async {
        loop {
            let found = {
                let log = listening.borrow_and_update();
                log.lines()
                    .find(|line| line.contains("serving gRPC"))
                    .and_then(|line| {
                        let at = line.find("127.0.0.1:")?;
                        let rest = &line[at..];
                        let end = rest
                            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                            .unwrap_or(rest.len());
                        rest[..end].parse().ok()
                    })
            };
            if let Some(addr) = found {
                break addr;
            }
            listening
                .changed()
                .await
                .expect("orgs serve logs where it listens");
        }
    })
    .await
    .expect("orgs serve listens in time");

    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut flow = Flow {
        channel,
        secret: secret.clone(),
        secrets: Secrets::default(),
    };
    flow.run().await;
    drop(flow.channel);
    flow.secrets.add("the HS256 secret", &secret);

    let pid = child.id().expect("running");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("orgs serve stops in time")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");
    let stdout = out.await.expect("stdout");
    let stderr = err.await.expect("stderr");
    (format!("{stdout}\n{stderr}"), flow.secrets)
}

async fn scan(format: &str) {
    let (log, secrets) = logs_of_a_flow(format).await;
    // The flow was logged, in detail: the scan looks at something.
    assert!(
        log.contains("AcceptInvitation"),
        "{format}: calls are logged"
    );
    assert!(log.lines().count() > 100, "{format}: trace logs are on");
    let mut found = Vec::new();
    for (what, value) in &secrets.0 {
        let present = if value.len() == 6 && value.chars().all(|c| c.is_ascii_digit()) {
            contains_code(&log, value)
        } else {
            log.contains(value.as_str())
        };
        if present {
            let line = log.lines().find(|line| line.contains(value.as_str()));
            found.push(format!("{what}: {}", line.unwrap_or_default()));
        }
    }
    assert!(
        found.is_empty(),
        "{format} logs ({} lines) hold secrets:\n{}",
        log.lines().count(),
        found.join("\n")
    );
}

#[tokio::test]
async fn no_secret_in_text_logs() {
    scan("text").await;
}

#[tokio::test]
async fn no_secret_in_json_logs() {
    scan("json").await;
}

#[test]
fn codes_are_found_only_as_values_of_their_own() {
    assert!(contains_code(r#"code="123456""#, "123456"));
    assert!(contains_code("code: 123456 tried", "123456"));
    assert!(!contains_code("2026-12-01T07:11:44.123456Z", "123456"));
    assert!(!contains_code("addr=127.0.0.1:123456", "123456"));
    assert!(!contains_code("n=91234567", "123456"));
    assert!(!contains_code("busy=123456ms", "123456"));
}
