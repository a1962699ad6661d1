//! A console client over a real socket: an HTTP client that keeps the
//! console's cookies by hand, reads the CSRF token of each page's forms, and
//! the seeding the console tests share.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

use super::{TestApp, add_member, create_org, token};
use orgs::proto::v1 as pb;

/// Spawns a server with the console on an ephemeral port.
pub async fn spawn_console(configure: impl FnOnce(&mut orgs::ServeConfig)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.console.listen_addr = Some("127.0.0.1:0".parse().expect("addr"));
        configure(config);
    })
    .await
}

/// One answer of the console.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        field_value(&self.body, "csrf").unwrap_or_default()
    }

    /// Where a redirect points.
    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    #[track_caller]
    pub fn assert_contains(&self, text: &str) {
        assert!(self.body.contains(text), "{text:?} not in:\n{}", self.body);
    }
}

/// The `value` of the first input named `name`.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(
        html[start..start + end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

/// A browser-like client: cookies kept by hand, redirects not followed.
pub struct ConsoleClient {
    http: reqwest::Client,
    base: String,
    pub cookies: BTreeMap<String, String>,
    /// Sent as `Host`, to look like a console reached under another name.
    pub host: Option<String>,
    /// Sent as `Authorization`, as an authenticating proxy would.
    pub authorization: Option<String>,
}

impl ConsoleClient {
    pub fn new(app: &TestApp) -> Self {
        let addr = app.console_addr.expect("the console listens");
        orgs::tls::install_crypto_provider();
        ConsoleClient {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            base: format!("http://{addr}"),
            cookies: BTreeMap::new(),
            host: None,
            authorization: None,
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.insert("cookie", HeaderValue::from_str(&cookie).expect("cookie"));
        }
        if let Some(host) = &self.host {
            headers.insert("host", HeaderValue::from_str(host).expect("host"));
        }
        if let Some(authorization) = &self.authorization {
            headers.insert(
                "authorization",
                HeaderValue::from_str(authorization).expect("authorization"),
            );
        }
        headers
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        let page = Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        };
        for set in page.set_cookies() {
            let pair = set.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .headers(self.headers())
            .send()
            .await
            .expect("GET");
        self.finish(response).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .headers(self.headers())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        self.finish(response).await
    }

    /// Signs in with `bearer` through the sign-in form; the answer of the POST.
    pub async fn sign_in_with(&mut self, bearer: &str) -> Page {
        let form = self.get("/sign-in").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.csrf();
        self.post("/sign-in", &[("csrf", &csrf), ("token", bearer)])
            .await
    }

    /// A client signed in with `bearer`.
    pub async fn signed_in(app: &TestApp, bearer: &str) -> Self {
        let mut client = ConsoleClient::new(app);
        let page = client.sign_in_with(bearer).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        client
    }

    /// The CSRF token of this session's forms, read from a page.
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/organizations").await;
        page.csrf()
    }
}

/// A token of the platform administrators.
pub fn admin_token() -> String {
    token("user_operator", "orgs:admin")
}

/// An organization with an admin and a member, as `orgs:admin`.
pub async fn org_with_members(app: &TestApp, name: &str) -> pb::Organization {
    let organization = create_org(app, name, Some("user_owner")).await;
    add_member(app, &organization.id, "user_member", "org:member").await;
    organization
}
