//! Keys from the identity provider (API.md §7.1): RS256/ES256 keys from a JWKS
//! served by a small HTTP server inside the test, chosen by `kid`, refetched
//! (rate-limited) for an unknown `kid`, kept when the provider fails; and a
//! PEM public key file re-read when it changes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orgs::config::AuthAlgorithm;
use tonic::Code;

/// How long a test waits for something that happens in the background.
const PATIENCE: Duration = Duration::from_secs(20);

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A signing key of the identity provider.
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    /// Its public half as a PEM SubjectPublicKeyInfo.
    public_pem: String,
}

impl SigningKey {
    /// A fresh P-256 key.
    fn es256(kid: &str) -> SigningKey {
        let pair = rcgen::KeyPair::generate().expect("generate key");
        SigningKey {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ec key"),
            public_pem: pair.public_key_pem(),
        }
    }

    /// The RSA key of the fixtures.
    fn rs256(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            key: EncodingKey::from_rsa_pem(
                &std::fs::read(fixture("rs256-private.pem")).expect("fixture"),
            )
            .expect("rsa key"),
            public_pem: std::fs::read_to_string(fixture("rs256-public.pem")).expect("fixture"),
        }
    }

    /// Its public JWK, as the provider publishes it.
    fn jwk(&self) -> serde_json::Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).expect("jwk");
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).expect("jwk json")
    }

    /// A token for `sub` signed by this key, naming `kid` in its header.
    fn token_naming(&self, kid: Option<&str>, sub: &str) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": sub, "exp": now() + 600}),
            &self.key,
        )
        .expect("sign")
    }

    fn token(&self, sub: &str) -> String {
        self.token_naming(Some(&self.kid), sub)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Answer {
    KeySet,
    ServerError,
    NotJson,
}

/// The identity provider's JWKS endpoint, counting the requests it gets.
#[derive(Clone)]
struct Provider {
    url: String,
    keys: Arc<Mutex<Vec<serde_json::Value>>>,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: &[&SigningKey]) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let provider = Provider {
            url: format!(
                "http://{}/.well-known/jwks.json",
                listener.local_addr().expect("addr")
            ),
            keys: Arc::new(Mutex::new(keys.iter().map(|key| key.jwk()).collect())),
            answer: Arc::new(Mutex::new(Answer::KeySet)),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let router = axum::Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .with_state(provider.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve jwks");
        });
        provider
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.keys.lock().expect("keys") = keys.iter().map(|key| key.jwk()).collect();
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("answer") = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn jwks(State(provider): State<Provider>) -> axum::response::Response {
    use axum::response::IntoResponse;
    provider.requests.fetch_add(1, Ordering::SeqCst);
    let answer = *provider.answer.lock().expect("answer");
    match answer {
        Answer::KeySet => {
            let keys = provider.keys.lock().expect("keys").clone();
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "keys": keys }).to_string(),
            )
                .into_response()
        }
        Answer::ServerError => http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Answer::NotJson => "<html>maintenance</html>".into_response(),
    }
}

/// A server taking its keys from `provider`.
async fn server_with_jwks(
    provider: &Provider,
    algorithm: AuthAlgorithm,
    refetch_interval_secs: u64,
    refresh_interval_secs: u64,
) -> TestApp {
    let url = provider.url.clone();
    TestApp::spawn_with(move |config| {
        config.auth.algorithm = algorithm;
        config.auth.hs256_secret = None;
        config.auth.jwks_url = Some(url);
        config.auth.jwks_refetch_interval_secs = refetch_interval_secs;
        config.auth.jwks_refresh_interval_secs = refresh_interval_secs;
    })
    .await
}

/// The code of a call that needs nothing but a valid token.
async fn call(app: &TestApp, token: String) -> Code {
    match app
        .orgs(Some(token))
        .list_roles(orgs::proto::v1::ListRolesRequest::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Waits until `condition` holds, failing after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn jwks_keys_are_chosen_by_kid_and_follow_a_rotation() {
    let old = SigningKey::es256("key-2026-11");
    let new = SigningKey::es256("key-2026-12");
    let provider = Provider::start(&[&old]).await;
    let app = server_with_jwks(&provider, AuthAlgorithm::Es256, 1, 3600).await;
    assert_eq!(provider.requests(), 1, "fetched once at start");
    // The same string before and after the rotation: a token that passed is
    // kept as verified, and must not outlive the key that verified it.
    let old_token = old.token("user_j");
    assert_eq!(call(&app, old_token.clone()).await, Code::Ok);
    assert_eq!(call(&app, old_token.clone()).await, Code::Ok, "again");

    // Refused without asking the provider: no kid, another algorithm, or a
    // signature that is not the named key's.
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(old.kid.clone());
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "user_j", "exp": now() + 600}),
            &EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
        )
        .expect("sign")
    };
    for (case, token) in [
        ("no kid", old.token_naming(None, "user_j")),
        ("HS256", hs256),
        (
            "signed by another key",
            new.token_naming(Some(&old.kid), "user_j"),
        ),
    ] {
        assert_eq!(call(&app, token).await, Code::Unauthenticated, "{case}");
    }
    assert_eq!(
        provider.requests(),
        1,
        "known kids and bad tokens cause no fetch"
    );

    // The provider publishes the new key and drops the old one: the first
    // token naming the new kid brings the new set.
    provider.publish(&[&new]);
    assert_eq!(call(&app, new.token("user_j")).await, Code::Ok);
    assert_eq!(provider.requests(), 2, "one refetch for the new kid");
    let status = app
        .orgs(Some(old_token))
        .list_roles(orgs::proto::v1::ListRolesRequest::default())
        .await
        .expect_err("the removed key no longer verifies");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "TOKEN_INVALID");
}

#[tokio::test]
async fn rs256_keys_come_from_the_jwks_too() {
    let key = SigningKey::rs256("rsa-1");
    let provider = Provider::start(&[&key]).await;
    let app = server_with_jwks(&provider, AuthAlgorithm::Rs256, 1, 3600).await;
    assert_eq!(call(&app, key.token("user_r")).await, Code::Ok);
    // The algorithm is pinned: an ES256 token is refused even when the set
    // also publishes its key.
    let ec = SigningKey::es256("ec-1");
    provider.publish(&[&key, &ec]);
    assert_eq!(call(&app, ec.token("user_r")).await, Code::Unauthenticated);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let key = SigningKey::es256("known");
    let provider = Provider::start(&[&key]).await;
    let app = server_with_jwks(&provider, AuthAlgorithm::Es256, 3600, 3600).await;
    let flood = (0..40).map(|i| {
        let token = key.token_naming(Some(&format!("made-up-{i}")), "user_f");
        let app = &app;
        async move { call(app, token).await }
    });
    for code in futures::future::join_all(flood).await {
        assert_eq!(code, Code::Unauthenticated);
    }
    assert_eq!(
        provider.requests(),
        2,
        "the start's fetch and one refetch, whatever the number of unknown kids"
    );
    // Within the interval even a real new key waits for the routine refresh.
    let added = SigningKey::es256("added");
    provider.publish(&[&key, &added]);
    assert_eq!(
        call(&app, added.token("user_f")).await,
        Code::Unauthenticated
    );
    assert_eq!(provider.requests(), 2);
    // Known keys keep working meanwhile.
    assert_eq!(call(&app, key.token("user_f")).await, Code::Ok);
}

#[tokio::test]
async fn a_failing_provider_keeps_the_last_keys() {
    let key = SigningKey::es256("kept");
    let provider = Provider::start(&[&key]).await;
    let app = server_with_jwks(&provider, AuthAlgorithm::Es256, 1, 1).await;
    assert_eq!(call(&app, key.token("user_k")).await, Code::Ok);
    for answer in [Answer::ServerError, Answer::NotJson] {
        provider.answer(answer);
        let before = provider.requests();
        // The routine refresh runs every second; two failed ones show the
        // server kept asking and got nothing usable.
        eventually("two failed refreshes", || async {
            provider.requests() >= before + 2
        })
        .await;
        assert_eq!(call(&app, key.token("user_k")).await, Code::Ok);
    }
    // An empty key set is no better than a failure.
    provider.answer(Answer::KeySet);
    provider.publish(&[]);
    let before = provider.requests();
    eventually("two empty refreshes", || async {
        provider.requests() >= before + 2
    })
    .await;
    assert_eq!(call(&app, key.token("user_k")).await, Code::Ok);
}

#[tokio::test]
async fn a_refresh_that_brings_the_same_keys_keeps_the_verified_tokens() {
    let key = SigningKey::es256("steady");
    let provider = Provider::start(&[&key]).await;
    let jwks = orgs::auth::jwks::Jwks::start(
        &provider.url,
        Algorithm::ES256,
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .await
    .expect("the key set");
    let started = jwks.generation();
    // The same keys, served again by the routine refresh: the verified-token
    // cache, which keys its entries by this generation, stays as it was.
    let before = provider.requests();
    eventually("two refreshes", || async {
        provider.requests() >= before + 2
    })
    .await;
    assert_eq!(jwks.generation(), started);
    // A key added is a new set.
    let added = SigningKey::es256("added");
    provider.publish(&[&key, &added]);
    eventually("the added key", || async { jwks.generation() > started }).await;
    assert!(jwks.key("added").await.is_some());
    assert!(jwks.key("steady").await.is_some());
}

#[tokio::test]
async fn the_server_needs_a_usable_jwks_url_to_start() {
    let build = |configure: Box<dyn FnOnce(&mut orgs::ServeConfig)>| async move {
        let mut config = orgs::ServeConfig::for_tests("sqlite::memory:", SECRET);
        config.auth.algorithm = AuthAlgorithm::Es256;
        config.auth.hs256_secret = None;
        configure(&mut config);
        orgs::App::build(config, Arc::new(orgs::domain::time::SystemClock))
            .await
            .err()
            .map(|err| format!("{err:#}"))
    };
    // Nothing listens on the port of a listener that was just closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let unreachable = build(Box::new(move |config| {
        config.auth.jwks_url = Some(format!("http://{closed}/jwks.json"));
    }))
    .await
    .expect("an unreachable provider at start stops the start");
    assert!(unreachable.contains("ORGS_AUTH_JWKS_URL"), "{unreachable}");
    let plain_http = build(Box::new(|config| {
        config.auth.jwks_url = Some("http://id.example.com/jwks.json".into());
    }))
    .await
    .expect("http to another host is refused");
    assert!(plain_http.contains("https://"), "{plain_http}");
    let both = build(Box::new(|config| {
        config.auth.jwks_url = Some("https://id.example.com/jwks.json".into());
        config.auth.public_key_file = Some(fixture("es256-public.pem"));
    }))
    .await
    .expect("a key file and a JWKS at once is ambiguous");
    assert!(both.contains("not both"), "{both}");
    let hs256 = build(Box::new(|config| {
        config.auth.algorithm = AuthAlgorithm::Hs256;
        config.auth.hs256_secret = Some(orgs::config::Secret(SECRET.into()));
        config.auth.jwks_url = Some("https://id.example.com/jwks.json".into());
    }))
    .await
    .expect("a JWKS holds no HS256 keys");
    assert!(hs256.contains("ORGS_AUTH_ALGORITHM"), "{hs256}");
}

/// Replaces `path` the way a mounted Secret changes: a new file renamed over it.
fn replace_file(path: &Path, contents: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, contents).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

#[tokio::test]
async fn a_changed_public_key_file_is_reloaded() {
    let dir = std::env::temp_dir().join(format!("orgs-keys-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("public-key.pem");
    let old = SigningKey::es256("unused");
    let new = SigningKey::es256("unused");
    std::fs::write(&path, &old.public_pem).expect("write key");
    let key_file = path.clone();
    let app = TestApp::spawn_with(move |config| {
        config.auth.algorithm = AuthAlgorithm::Es256;
        config.auth.hs256_secret = None;
        config.auth.public_key_file = Some(key_file);
        config.auth.public_key_reload_interval_secs = 1;
    })
    .await;
    // The same string before and after the change: a token kept as verified
    // must not outlive the key that verified it.
    let old_token = old.token("user_p");
    assert_eq!(call(&app, old_token.clone()).await, Code::Ok);
    assert_eq!(call(&app, old_token.clone()).await, Code::Ok, "again");
    assert_eq!(call(&app, new.token("user_p")).await, Code::Unauthenticated);

    replace_file(&path, &new.public_pem);
    eventually("the new key is in use", || async {
        call(&app, new.token("user_p")).await == Code::Ok
    })
    .await;
    assert_eq!(call(&app, old_token).await, Code::Unauthenticated);

    // A file that holds no key (half written, or a mistake) keeps the key in
    // use; the next good one is taken.
    replace_file(
        &path,
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(call(&app, new.token("user_p")).await, Code::Ok);
    replace_file(&path, &old.public_pem);
    eventually("the old key is back", || async {
        call(&app, old.token("user_p")).await == Code::Ok
    })
    .await;
    app.shutdown().await;
    std::fs::remove_dir_all(&dir).expect("clean up");
}
