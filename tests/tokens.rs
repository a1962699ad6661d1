//! Token verification (API.md §1 and §7.1): configured `iss`/`aud` are
//! required, `aud` may be an array, `nbf` is honoured, HS256 secrets are at
//! least 32 bytes, and the OIDC `email`/`email_verified` claims reach the
//! principal.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orgs::auth::Verifier;
use orgs::auth::token::{TokenRequest, mint_hs256};
use orgs::config::{AuthConfig, Secret};
use tonic::Code;

const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "orgs";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn signed(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("sign")
}

/// The configuration of a test server, with an issuer and an audience when asked.
fn auth_config(issuer_and_audience: bool) -> AuthConfig {
    let mut config = orgs::ServeConfig::for_tests("sqlite::memory:", SECRET).auth;
    if issuer_and_audience {
        config.issuer = Some(ISSUER.into());
        config.audience = Some(AUDIENCE.into());
    }
    config
}

async fn verifier(issuer_and_audience: bool) -> Verifier {
    Verifier::from_config(&auth_config(issuer_and_audience))
        .await
        .expect("verifier")
}

/// ListRoles needs nothing but a valid token, so its code tells whether the
/// token was accepted.
async fn list_roles(app: &TestApp, token: String) -> Code {
    match app
        .orgs(Some(token))
        .list_roles(orgs::proto::v1::ListRolesRequest::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn configured_issuer_and_audience_are_required_and_aud_may_be_an_array() {
    let app = TestApp::spawn_with(|config| {
        config.auth.issuer = Some(ISSUER.into());
        config.auth.audience = Some(AUDIENCE.into());
    })
    .await;
    let exp = now() + 600;
    let cases = [
        (
            "iss and aud",
            serde_json::json!({"sub": "user_t", "exp": exp, "iss": ISSUER, "aud": AUDIENCE}),
            Code::Ok,
        ),
        (
            "aud as an array naming us",
            serde_json::json!({"sub": "user_t", "exp": exp, "iss": ISSUER, "aud": ["billing", AUDIENCE]}),
            Code::Ok,
        ),
        (
            "aud as an array without us",
            serde_json::json!({"sub": "user_t", "exp": exp, "iss": ISSUER, "aud": ["billing", "crm"]}),
            Code::Unauthenticated,
        ),
        (
            "no iss",
            serde_json::json!({"sub": "user_t", "exp": exp, "aud": AUDIENCE}),
            Code::Unauthenticated,
        ),
        (
            "no aud",
            serde_json::json!({"sub": "user_t", "exp": exp, "iss": ISSUER}),
            Code::Unauthenticated,
        ),
        (
            "neither",
            serde_json::json!({"sub": "user_t", "exp": exp}),
            Code::Unauthenticated,
        ),
        (
            "another issuer",
            serde_json::json!({"sub": "user_t", "exp": exp, "iss": "https://other.example.com", "aud": AUDIENCE}),
            Code::Unauthenticated,
        ),
    ];
    for (case, claims, expected) in cases {
        assert_eq!(list_roles(&app, signed(claims)).await, expected, "{case}");
    }
}

#[tokio::test]
async fn without_configured_audience_an_array_aud_is_accepted() {
    let app = TestApp::spawn().await;
    let token = signed(serde_json::json!({"sub": "user_t", "exp": now() + 600, "aud": ["a", "b"]}));
    assert_eq!(list_roles(&app, token).await, Code::Ok);
}

#[tokio::test]
async fn not_before_is_honoured_with_the_leeway() {
    let app = TestApp::spawn().await;
    let future =
        signed(serde_json::json!({"sub": "user_t", "exp": now() + 7200, "nbf": now() + 3600}));
    let status = app
        .orgs(Some(future))
        .list_roles(orgs::proto::v1::ListRolesRequest::default())
        .await
        .expect_err("a token not valid yet");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "TOKEN_INVALID");
    // Within the 60 s leeway, as for `exp`.
    let almost =
        signed(serde_json::json!({"sub": "user_t", "exp": now() + 600, "nbf": now() + 30}));
    assert_eq!(list_roles(&app, almost).await, Code::Ok);
    let past = signed(serde_json::json!({"sub": "user_t", "exp": now() + 600, "nbf": now() - 10}));
    assert_eq!(list_roles(&app, past).await, Code::Ok);
}

#[tokio::test]
async fn short_hs256_secrets_refuse_to_start() {
    let mut config = auth_config(false);
    config.hs256_secret = Some(Secret("x".repeat(31)));
    let err = Verifier::from_config(&config)
        .await
        .expect_err("31 bytes must be refused")
        .to_string();
    assert!(err.contains("ORGS_AUTH_HS256_SECRET"), "{err}");
    assert!(err.contains("at least 32"), "{err}");
    assert!(
        !err.contains(&"x".repeat(31)),
        "the message must not quote the secret"
    );
    config.hs256_secret = Some(Secret("x".repeat(32)));
    Verifier::from_config(&config)
        .await
        .expect("32 bytes are enough");
    // The whole server refuses, before touching the database.
    let serve = orgs::ServeConfig::for_tests("sqlite::memory:", "short-secret-0123456789");
    let err = orgs::App::build(serve, std::sync::Arc::new(orgs::domain::time::SystemClock))
        .await
        .err()
        .expect("the server must refuse a short secret")
        .to_string();
    assert!(err.contains("at least 32"), "{err}");
}

#[tokio::test]
async fn email_claims_reach_the_principal() {
    let verifier = verifier(false).await;
    let exp = now() + 600;
    let cases = [
        (
            serde_json::json!({"sub": "user_e", "exp": exp, "email": " Ann@Example.COM ", "email_verified": true}),
            Some("ann@example.com"),
            true,
        ),
        (
            serde_json::json!({"sub": "user_e", "exp": exp, "email": "ann@example.com", "email_verified": "true"}),
            Some("ann@example.com"),
            true,
        ),
        (
            serde_json::json!({"sub": "user_e", "exp": exp, "email": "ann@example.com", "email_verified": false}),
            Some("ann@example.com"),
            false,
        ),
        (
            serde_json::json!({"sub": "user_e", "exp": exp, "email": "ann@example.com"}),
            Some("ann@example.com"),
            false,
        ),
        (
            serde_json::json!({"sub": "user_e", "exp": exp, "email": "not an address", "email_verified": true}),
            None,
            false,
        ),
        (
            serde_json::json!({"sub": "user_e", "exp": exp, "email_verified": true}),
            None,
            false,
        ),
    ];
    for (claims, email, verified) in cases {
        let principal = verifier
            .verify(&signed(claims.clone()))
            .await
            .unwrap_or_else(|err| panic!("{claims}: {err:?}"));
        assert_eq!(principal.email.as_deref(), email, "{claims}");
        assert_eq!(principal.email_verified, verified, "{claims}");
    }
}

#[tokio::test]
async fn minted_tokens_carry_email_issuer_and_audience() {
    let token = mint_hs256(
        SECRET,
        &TokenRequest {
            sub: "user_m".into(),
            ttl_seconds: 600,
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            email: Some("Mia@Example.com".into()),
            email_verified: true,
            ..Default::default()
        },
    )
    .expect("mint");
    let principal = verifier(true).await.verify(&token).await.expect("verify");
    assert_eq!(principal.sub, "user_m");
    assert_eq!(principal.email.as_deref(), Some("mia@example.com"));
    assert!(principal.email_verified);
}

#[tokio::test]
async fn the_token_command_mints_email_claims() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgs"))
        .args([
            "token",
            "--sub",
            "user_cli",
            "--email",
            "cli@example.com",
            "--email-verified",
            "--ttl",
            "10m",
        ])
        .env("ORGS_AUTH_HS256_SECRET", SECRET)
        .env("ORGS_AUTH_ISSUER", ISSUER)
        .env("ORGS_AUTH_AUDIENCE", AUDIENCE)
        .env_remove("ORGS_CONFIG_FILE")
        .output()
        .await
        .expect("run orgs token");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let principal = verifier(true)
        .await
        .verify(token.trim())
        .await
        .expect("verify");
    assert_eq!(principal.email.as_deref(), Some("cli@example.com"));
    assert!(principal.email_verified);
    // Without --email-verified the claim is absent, so not verified.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgs"))
        .args(["token", "--sub", "user_cli", "--email", "cli@example.com"])
        .env("ORGS_AUTH_HS256_SECRET", SECRET)
        .env_remove("ORGS_AUTH_ISSUER")
        .env_remove("ORGS_AUTH_AUDIENCE")
        .env_remove("ORGS_CONFIG_FILE")
        .output()
        .await
        .expect("run orgs token");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let principal = verifier(false)
        .await
        .verify(token.trim())
        .await
        .expect("verify");
    assert!(!principal.email_verified);
}
