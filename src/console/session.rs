//! Sign-in, sign-out and the session.
//!
//! Sessions are stateless so any replica can serve them: the `HttpOnly`,
//! `SameSite=Strict` cookie carries the bearer token itself and expires with
//! it, and every request verifies it again with the server's `Verifier` (the
//! same keys, issuer and audience as gRPC). The cookie is `Secure`, with the
//! `__Host-` prefix, unless the console is reached via localhost. With
//! `ORGS_CONSOLE_TRUST_AUTHORIZATION_HEADER` an `Authorization: Bearer …` set
//! by an authenticating proxy is taken instead. The token is never logged.

use std::sync::Arc;

use axum::extract::{Form, FromRequestParts, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use cookie::{Cookie, SameSite};
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use super::errors::refusal;
use super::page::{Area, layout, respond};
use crate::auth::Principal;

const SESSION_COOKIE: &str = "orgs_console";
const SIGN_IN_COOKIE: &str = "orgs_console_sign_in";
/// The longest token a session cookie carries: browsers keep cookies of up to
/// 4096 bytes, name and attributes included.
const MAX_COOKIE_TOKEN_BYTES: usize = 3800;
/// How long a sign-in form stays usable.
const SIGN_IN_FORM_SECONDS: i64 = 3600;

/// A verified session: who is signed in and the token of its forms.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    token: String,
}

impl Session {
    /// Whether `sent` is this session's CSRF token; a refused form gets
    /// [`csrf_refused`].
    pub fn csrf_ok(&self, console: &Console, sent: &str) -> bool {
        console.csrf.check_session(&self.token, sent)
    }
}

/// The 403 page of a POST whose CSRF token is missing or wrong.
pub fn csrf_refused(session: Option<&Session>) -> Response {
    let area = if session.is_some() {
        Area::Organizations
    } else {
        Area::SignIn
    };
    respond(
        StatusCode::FORBIDDEN,
        layout(
            "Form refused",
            area,
            session,
            html! {
                h1 { "Form refused" }
                p role="alert" {
                    "The form's security token is missing or does not belong to this session, "
                    "so nothing was changed. Go back, reload the page and try again."
                }
            },
        ),
    )
}

/// Whether the request reached the console via localhost, where a cookie
/// cannot be `Secure` because there is no TLS.
fn via_localhost(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A cookie's name: `__Host-` prefixed (Secure, Path=/, no Domain) except via
/// localhost.
fn cookie_name(base: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

fn make_cookie(base: &str, value: String, max_age: i64, secure: bool) -> HeaderValue {
    let cookie = Cookie::build((cookie_name(base, secure), value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age.max(0)))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of a cookie of the request.
fn read_cookie(headers: &HeaderMap, base: &str) -> Option<String> {
    let name = cookie_name(base, !via_localhost(headers));
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
        .filter(|value| !value.is_empty())
}

/// The bearer token an authenticating proxy set.
fn proxy_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Seconds until the token's `exp`. Read only after the token was verified,
/// so its claims can be trusted.
fn seconds_left(token: &str, now: i64) -> i64 {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|claims| claims.get("exp").and_then(serde_json::Value::as_i64))
        .unwrap_or(now);
    exp - now
}

fn system_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let from_proxy = console
            .trust_authorization_header
            .then(|| proxy_token(&parts.headers))
            .flatten();
        let (token, from_cookie) = match from_proxy {
            Some(token) => (token, false),
            None => match read_cookie(&parts.headers, SESSION_COOKIE) {
                Some(token) => (token, true),
                None => return Err(Redirect::to("/sign-in").into_response()),
            },
        };
        match console.verifier.verify(&token).await {
            Ok(principal) => Ok(Session {
                principal,
                csrf: console.csrf.for_session(&token),
                token,
            }),
            Err(_) if from_cookie => {
                // An expired or no longer valid session: forget it.
                let secure = !via_localhost(&parts.headers);
                let mut response = Redirect::to("/sign-in?expired=1").into_response();
                response.headers_mut().append(
                    header::SET_COOKIE,
                    make_cookie(SESSION_COOKIE, String::new(), 0, secure),
                );
                Err(response)
            }
            Err(err) => Err(respond(
                StatusCode::UNAUTHORIZED,
                layout(
                    "Not signed in",
                    Area::SignIn,
                    None,
                    html! {
                        h1 { "Not signed in" }
                        p { "The token your proxy sent was refused." }
                        (refusal(&tonic::Status::from(err)))
                    },
                ),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    expired: Option<String>,
}

/// The sign-in page with its form, and a fresh nonce cookie binding the form.
fn sign_in_page(
    console: &Console,
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<Markup>,
) -> Response {
    let secure = !via_localhost(headers);
    let nonce = crate::domain::keys::ServerKey::generate();
    let csrf = console.csrf.for_sign_in(&nonce);
    let page = layout(
        "Sign in",
        Area::SignIn,
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(message) = message { (message) }
            p {
                "Paste a bearer token (a JWT) that this server accepts. The console can do "
                "exactly what the token may do over gRPC, and nothing more."
            }
            form.stack method="post" action="/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { "Bearer token" }
                textarea id="token" name="token" rows="6" required autocomplete="off" spellcheck="false" {}
                button type="submit" { "Sign in" }
            }
            @if console.trust_authorization_header {
                p.hint { "An authenticating proxy may also sign you in by setting the Authorization header." }
            }
        },
    );
    let mut response = respond(status, page);
    response.headers_mut().append(
        header::SET_COOKIE,
        make_cookie(SIGN_IN_COOKIE, nonce, SIGN_IN_FORM_SECONDS, secure),
    );
    response
}

pub async fn sign_in_form(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Response {
    let message = query.expired.is_some().then(|| {
        html! { p.notice role="status" { "Your session has ended: the token expired or is no longer valid. Sign in again." } }
    });
    sign_in_page(&console, &headers, StatusCode::OK, message)
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

pub async fn sign_in(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let nonce = read_cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if !console.csrf.check_sign_in(&nonce, &form.csrf) {
        return csrf_refused(None);
    }
    let token = form.token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    if token.len() > MAX_COOKIE_TOKEN_BYTES {
        let message = html! {
            p.refusal role="alert" {
                "This token is " (token.len()) " bytes long, too long for a browser to keep in a "
                "cookie (at most " (MAX_COOKIE_TOKEN_BYTES) "). Sign in through an "
                "authenticating proxy instead (ORGS_CONSOLE_TRUST_AUTHORIZATION_HEADER)."
            }
        };
        return sign_in_page(&console, &headers, StatusCode::BAD_REQUEST, Some(message));
    }
    if let Err(err) = console.verifier.verify(token).await {
        let message = html! {
            (refusal(&tonic::Status::from(err)))
        };
        return sign_in_page(&console, &headers, StatusCode::UNAUTHORIZED, Some(message));
    }
    let secure = !via_localhost(&headers);
    let mut response = Redirect::to("/organizations").into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        make_cookie(
            SESSION_COOKIE,
            token.to_string(),
            seconds_left(token, system_now()),
            secure,
        ),
    );
    cookies.append(
        header::SET_COOKIE,
        make_cookie(SIGN_IN_COOKIE, String::new(), 0, secure),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    State(console): State<Arc<Console>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !session.csrf_ok(&console, &form.csrf) {
        return csrf_refused(Some(&session));
    }
    let secure = !via_localhost(&headers);
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        make_cookie(SESSION_COOKIE, String::new(), 0, secure),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_is_told_from_other_hosts() {
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            via_localhost(&headers)
        };
        assert!(with_host("localhost:8080"));
        assert!(with_host("127.0.0.1:8080"));
        assert!(with_host("[::1]:8080"));
        assert!(!with_host("console.example.com"));
        assert!(!with_host("localhost.example.com"));
        assert!(!with_host("10.0.0.1:8080"));
        assert!(!via_localhost(&HeaderMap::new()));
    }

    #[test]
    fn cookies_expire_with_the_token() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1100}"#);
        assert_eq!(seconds_left(&format!("h.{claims}.s"), 1000), 100);
        assert_eq!(seconds_left("garbage", 1000), 0);
        let value = make_cookie(SESSION_COOKIE, "t".into(), 100, true);
        let text = value.to_str().unwrap();
        for part in [
            "__Host-orgs_console=t",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=100",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}
