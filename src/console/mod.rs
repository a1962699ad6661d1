//! The operators' web console: organizations, their members and the bill, in
//! a browser, served on its own listener (`ORGS_CONSOLE_LISTEN_ADDR`).
//!
//! The console holds no rights of its own. Every page and action calls the
//! same gRPC handlers in-process ([`rpc::call`]) with the caller the auth layer
//! would make from the signed-in token, so nothing in the console can do what
//! that token could not do over gRPC. Pages are rendered on the server
//! (maud: escaped by default), need no JavaScript, and every form carries a
//! CSRF token.

mod actions;
mod billing;
mod chart;
mod csrf;
mod errors;
mod lifecycle;
mod organization;
mod organizations;
mod page;
mod rpc;
mod session;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::auth::Verifier;
use crate::domain::keys::ServerKey;
use crate::domain::time::Clock;
use crate::grpc::{billing::BillingApi, invitation::InvitationApi, organization::OrganizationApi};
use crate::server::limits::LimitsLayer;

pub use csrf::CsrfKey;
pub use errors::{explanation, http_status};

/// The gRPC handlers the console calls: a set of its own, over the same use
/// cases as the served ones.
pub struct Services {
    pub organization: OrganizationApi,
    pub invitation: InvitationApi,
    pub billing: BillingApi,
}

/// What every page needs.
pub struct Console {
    services: Services,
    verifier: Arc<Verifier>,
    csrf: CsrfKey,
    trust_authorization_header: bool,
    clock: Arc<dyn Clock>,
    /// The gRPC listener's per-principal rate limits, shared.
    limits: LimitsLayer,
}

impl Console {
    pub fn new(
        services: Services,
        verifier: Arc<Verifier>,
        csrf_key: ServerKey,
        trust_authorization_header: bool,
        clock: Arc<dyn Clock>,
        limits: LimitsLayer,
    ) -> Self {
        Console {
            services,
            verifier,
            csrf: CsrfKey::new(csrf_key),
            trust_authorization_header,
            clock,
            limits,
        }
    }
}

/// The Content-Security-Policy of every response: no scripts at all, styles
/// and images from the console only, forms posted only to it, never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        page::STYLE,
    )
        .into_response()
}

async fn not_found() -> Response {
    page::respond(
        axum::http::StatusCode::NOT_FOUND,
        page::layout(
            "Not found",
            page::Area::SignIn,
            None,
            maud::html! {
                h1 { "Not found" }
                p { "The console has no such page. " a href="/organizations" { "Go to the organizations." } }
            },
        ),
    )
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/organizations") }))
        .route("/console.css", get(style))
        .route(
            "/sign-in",
            get(session::sign_in_form).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/organizations", get(organizations::list))
        .route("/organizations/{id}", get(organization::show))
        .route("/organizations/{id}/rename", post(actions::rename))
        .route("/organizations/{id}/delete", post(actions::delete))
        .route(
            "/organizations/{id}/deactivate",
            post(lifecycle::deactivate_organization),
        )
        .route(
            "/organizations/{id}/reactivate",
            post(lifecycle::reactivate_organization),
        )
        .route(
            "/organizations/{id}/members/deactivate",
            post(lifecycle::deactivate_membership),
        )
        .route(
            "/organizations/{id}/members/reactivate",
            post(lifecycle::reactivate_membership),
        )
        .route("/organizations/{id}/members/add", post(actions::add_member))
        .route(
            "/organizations/{id}/members/role",
            post(actions::change_role),
        )
        .route(
            "/organizations/{id}/members/remove",
            post(actions::remove_member),
        )
        .route("/billing", get(billing::show))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(Arc::new(console))
}

/// Serves the console on `listener` until `signal` completes.
pub async fn serve(
    listener: TcpListener,
    console: Console,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(console))
        .with_graceful_shutdown(signal)
        .await
}
