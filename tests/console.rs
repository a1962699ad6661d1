//! The web console over a real socket, on SQLite and PostgreSQL: sign-in,
//! cookies and headers, CSRF, every page and action, and refusals equal to
//! those of the same call over gRPC.

mod common;

use common::console::{ConsoleClient, Page, admin_token, org_with_members, spawn_console};
use common::{TestApp, add_member, create_org, reason, record, token};
use orgs::proto::v1 as pb;
use reqwest::StatusCode;
use tonic::Status;

/// Asserts that a console page refused the way gRPC refused the same call:
/// the HTTP status of that code and the sentence of that reason.
#[track_caller]
fn assert_same_refusal(page: &Page, grpc: Status) {
    assert_eq!(
        page.status,
        orgs::console::http_status(&grpc),
        "{grpc:?}\n{}",
        page.body
    );
    let sentence = orgs::console::explanation(&reason(&grpc)).expect("a sentence");
    let escaped = sentence.replace('\'', "&#39;");
    assert!(
        page.body.contains(sentence) || page.body.contains(&escaped),
        "{sentence:?} not in:\n{}",
        page.body
    );
}

async fn membership(app: &TestApp, organization_id: &str, user_id: &str) -> Option<pb::Membership> {
    app.admin()
        .list_memberships(pb::ListMembershipsRequest {
            organization_id: organization_id.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("list memberships")
        .into_inner()
        .memberships
        .into_iter()
        .find(|m| m.user_id == user_id)
}

async fn organization(app: &TestApp, id: &str) -> Result<pb::Organization, Status> {
    app.admin()
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                id.into(),
            )),
        })
        .await
        .map(|r| r.into_inner().organization.expect("organization"))
}

fn expired_token(sub: &str) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: i64,
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub,
            exp: chrono::Utc::now().timestamp() - 3600,
        },
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()).expect("key"),
    )
    .expect("token")
}

#[tokio::test]
async fn pages_need_a_session_and_bad_or_expired_tokens_are_refused() {
    let app = spawn_console(|_| {}).await;
    let mut client = ConsoleClient::new(&app);
    for path in ["/organizations", "/billing", "/organizations/org_x"] {
        let page = client.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/sign-in");
    }

    let page = client.sign_in_with("not-a-token").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    page.assert_contains("The token is not valid for this server");
    assert!(
        !client
            .cookies
            .keys()
            .any(|name| name.ends_with("orgs_console"))
    );

    let page = client.sign_in_with(&expired_token("user_old")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    page.assert_contains("The token has expired");
    assert!(
        !client
            .cookies
            .keys()
            .any(|name| name.ends_with("orgs_console"))
    );

    // A cookie holding an expired token is not a session, and is cleared.
    client
        .cookies
        .insert("orgs_console".into(), expired_token("user_old"));
    let page = client.get("/organizations").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/sign-in?expired=1");
    assert!(!client.cookies.contains_key("orgs_console"));

    let page = client.sign_in_with(&admin_token()).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/organizations");
    let page = client.get("/organizations").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("Signed in as <strong>user_operator</strong>");
}

#[tokio::test]
async fn cookies_are_strict_and_expire_with_the_token_and_headers_forbid_scripts() {
    let app = spawn_console(|_| {}).await;
    // Reached via localhost: no TLS, so no Secure (a browser would drop it).
    let mut local = ConsoleClient::new(&app);
    let page = local.sign_in_with(&admin_token()).await;
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("orgs_console="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let max_age: i64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|age| age.trim().parse().ok())
        .expect("Max-Age");
    assert!((3500..=3600).contains(&max_age), "{cookie}");

    // Reached under any other name: Secure, with the __Host- prefix.
    let mut remote = ConsoleClient::new(&app);
    remote.host = Some("console.example.com".into());
    let page = remote.sign_in_with(&admin_token()).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-orgs_console="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert_eq!(remote.get("/organizations").await.status, StatusCode::OK);

    let page = local.get("/organizations").await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("script-src") || !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert!(!page.body.contains("<script"), "{}", page.body);
    page.assert_contains("<html lang=\"en\">");

    // Sign-out clears the cookie; the session is gone.
    let csrf = page.csrf();
    let out = local.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("orgs_console=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(
        local.get("/organizations").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn forms_without_their_csrf_token_change_nothing() {
    let app = spawn_console(|_| {}).await;
    let org = org_with_members(&app, "Guarded").await;
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let mut other =
        ConsoleClient::signed_in(&app, &token("user_other_operator", "orgs:admin")).await;
    let foreign = other.csrf().await;
    let base = format!("/organizations/{}", org.id);
    let actions: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("{base}/rename"), vec![("name", "Hijacked")]),
        (
            format!("{base}/members/add"),
            vec![("user_id", "user_intruder"), ("role", "org:admin")],
        ),
        (
            format!("{base}/members/role"),
            vec![("user_id", "user_member"), ("role", "org:admin")],
        ),
        (
            format!("{base}/members/remove"),
            vec![("user_id", "user_member")],
        ),
        (format!("{base}/delete"), vec![]),
        (format!("{base}/deactivate"), vec![]),
        (
            format!("{base}/members/deactivate"),
            vec![("user_id", "user_member")],
        ),
    ];
    for (path, fields) in &actions {
        for csrf in [None, Some("00".repeat(32)), Some(foreign.clone())] {
            let mut sent: Vec<(&str, &str)> = fields.clone();
            sent.push(("confirm", "yes"));
            if let Some(csrf) = &csrf {
                sent.push(("csrf", csrf));
            }
            let page = client.post(path, &sent).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} {csrf:?}");
            page.assert_contains("nothing was changed");
        }
    }
    // Sign-out and sign-in check theirs too.
    assert_eq!(
        client.post("/sign-out", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(client.get("/organizations").await.status, StatusCode::OK);
    let mut fresh = ConsoleClient::new(&app);
    let page = fresh
        .post("/sign-in", &[("token", &admin_token()), ("csrf", &foreign)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    let after = organization(&app, &org.id).await.expect("still there");
    assert_eq!(after.name, "Guarded");
    assert_eq!(after.members_count, 2);
    assert_eq!(after.state, pb::OrganizationState::Active as i32);
    let member = membership(&app, &org.id, "user_member")
        .await
        .expect("member");
    assert_eq!(member.role, "org:member");
    assert_eq!(member.state, pb::MembershipState::Active as i32);
    assert!(membership(&app, &org.id, "user_intruder").await.is_none());
}

#[tokio::test]
async fn the_organizations_page_searches_pages_and_tells_what_is_billable() {
    let app = spawn_console(|_| {}).await;
    let billable = org_with_members(&app, "Acme Billable").await;
    record(&app, &["user_owner", "user_member"]).await;
    for n in 0..26 {
        create_org(&app, &format!("Paged {n:02}"), None).await;
    }
    let mut admin = ConsoleClient::signed_in(&app, &admin_token()).await;
    let first = admin.get("/organizations").await;
    assert_eq!(first.status, StatusCode::OK);
    first.assert_contains("27 organizations found.");
    first.assert_contains(&format!("href=\"/organizations/{}\"", billable.id));
    first.assert_contains("<strong>Billable</strong> since");
    first.assert_contains("Not billable · 0 active");
    let next = common::console::field_value(
        &first
            .body
            .replace("&amp;page_token=", "\" name=\"page_token\" value=\""),
        "page_token",
    )
    .expect("a next page link");
    let second = admin
        .get(&format!("/organizations?query=&user_id=&page_token={next}"))
        .await;
    assert_eq!(second.status, StatusCode::OK);
    second.assert_contains("Paged 25");
    assert!(!second.body.contains("Acme Billable"));

    let searched = admin.get("/organizations?query=acme").await;
    searched.assert_contains("1 organization found.");
    searched.assert_contains("Acme Billable");
    let by_member = admin.get("/organizations?user_id=user_member").await;
    by_member.assert_contains("1 organization found.");

    // orgs:read may list, not read billing: it says so instead of a number.
    let mut reader = ConsoleClient::signed_in(&app, &token("svc-reader", "orgs:read")).await;
    let page = reader.get("/organizations?query=acme").await;
    page.assert_contains("Your token may not read this organization's billing.");

    // A tampered page token is refused in words, as over gRPC.
    let page = admin.get("/organizations?page_token=forged").await;
    let grpc = app
        .admin()
        .list_organizations(pb::ListOrganizationsRequest {
            page_token: "forged".into(),
            ..Default::default()
        })
        .await
        .expect_err("forged token");
    assert_same_refusal(&page, grpc);
}

#[tokio::test]
async fn the_organization_page_shows_members_invitations_domains_and_audit() {
    let app = spawn_console(|_| {}).await;
    let org = org_with_members(&app, "Shown").await;
    app.invitations(Some(admin_token()))
        .create_invitation(pb::CreateInvitationRequest {
            organization_id: org.id.clone(),
            email_address: "invitee@shown.example".into(),
            ..Default::default()
        })
        .await
        .expect("invite");
    app.invitations(Some(admin_token()))
        .create_domain(pb::CreateDomainRequest {
            organization_id: org.id.clone(),
            name: "shown.example".into(),
            enrollment_mode: pb::EnrollmentMode::ManualInvitation as i32,
            ..Default::default()
        })
        .await
        .expect("domain");
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let page = client.get(&format!("/organizations/{}", org.id)).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("<h1>Shown</h1>");
    page.assert_contains("<code>user_owner</code>");
    page.assert_contains("<td>org:admin</td>");
    page.assert_contains("<code>user_member</code>");
    page.assert_contains("invitee@shown.example");
    page.assert_contains("shown.example");
    page.assert_contains("CreateMembership");
    page.assert_contains("Not billable · 0 active");
    page.assert_contains("<label for=\"new-user\">User id</label>");

    // An end user member without billing rights sees the page, the bill is
    // refused in words; an outsider gets gRPC's NOT_FOUND.
    let mut member = ConsoleClient::signed_in(&app, &token("user_member", "")).await;
    let page = member.get(&format!("/organizations/{}", org.id)).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("Your token may not read this organization's billing.");
    let mut outsider = ConsoleClient::signed_in(&app, &token("user_outsider", "")).await;
    let page = outsider.get(&format!("/organizations/{}", org.id)).await;
    let grpc = app
        .user("user_outsider")
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                org.id.clone(),
            )),
        })
        .await
        .expect_err("outsider");
    assert_same_refusal(&page, grpc);
    // billing:read may not read organizations: the same refusal as gRPC.
    let mut billing = ConsoleClient::signed_in(&app, &token("svc-finance", "billing:read")).await;
    let page = billing.get(&format!("/organizations/{}", org.id)).await;
    let grpc = app
        .orgs(Some(token("svc-finance", "billing:read")))
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                org.id.clone(),
            )),
        })
        .await
        .expect_err("billing:read");
    assert_same_refusal(&page, grpc);
}

#[tokio::test]
async fn adding_a_member_previews_the_bill_before_anything_is_written() {
    let app = spawn_console(|config| config.billing.free_organizations = 0).await;
    let org = create_org(&app, "Growing", Some("user_owner")).await;
    record(&app, &["user_owner", "user_joiner"]).await;
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let csrf = client.csrf().await;
    let path = format!("/organizations/{}/members/add", org.id);
    let preview = client
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("user_id", "user_joiner"),
                ("role", "org:member"),
            ],
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    preview.assert_contains("makes the organization billable in");
    preview.assert_contains("adds USD 1.00 to this period");
    preview.assert_contains("<td class=\"number\">1</td><td class=\"number\">2</td>");
    assert!(
        membership(&app, &org.id, "user_joiner").await.is_none(),
        "a preview writes nothing"
    );

    let request_id = common::console::field_value(&preview.body, "request_id").expect("request id");
    assert!(request_id.starts_with("console-"));
    let confirm = [
        ("csrf", csrf.as_str()),
        ("confirm", "yes"),
        ("user_id", "user_joiner"),
        ("role", "org:member"),
        ("request_id", request_id.as_str()),
    ];
    let done = client.post(&path, &confirm).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location(),
        format!("/organizations/{}?done=member-added", org.id)
    );
    assert_eq!(
        membership(&app, &org.id, "user_joiner")
            .await
            .expect("added")
            .role,
        "org:member"
    );
    // The same confirmation sent twice adds once.
    assert_eq!(
        client.post(&path, &confirm).await.status,
        StatusCode::SEE_OTHER
    );
    let page = client.get(&done.location()).await;
    page.assert_contains("The member was added.");
    page.assert_contains("2 members.");

    // A preview the service refuses shows why, and offers no confirmation.
    let limited = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Small".into(),
            created_by: "user_owner".into(),
            max_allowed_memberships: 1,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("organization");
    let preview = client
        .post(
            &format!("/organizations/{}/members/add", limited.id),
            &[
                ("csrf", &csrf),
                ("user_id", "user_joiner"),
                ("role", "org:member"),
            ],
        )
        .await;
    preview.assert_contains("The organization has reached its maximum number of members.");
    assert!(!preview.body.contains("name=\"confirm\""));
    assert_eq!(preview.status, StatusCode::CONFLICT);
    // Bad input is named, as over gRPC.
    let preview = client
        .post(
            &path,
            &[("csrf", &csrf), ("user_id", ""), ("role", "org:member")],
        )
        .await;
    assert_eq!(preview.status, StatusCode::BAD_REQUEST);
    preview.assert_contains("<code>user_id</code>");
}

#[tokio::test]
async fn rename_role_remove_and_delete_confirm_first_and_say_what_the_bill_keeps() {
    let app = spawn_console(|_| {}).await;
    let org = org_with_members(&app, "Changing").await;
    add_member(&app, &org.id, "user_third", "org:member").await;
    record(&app, &["user_owner", "user_member"]).await;
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let page = client.get(&format!("/organizations/{}", org.id)).await;
    let csrf = page.csrf();
    let etag = common::console::field_value(&page.body, "etag").expect("etag");
    let base = format!("/organizations/{}", org.id);

    let preview = client
        .post(
            &format!("{base}/rename"),
            &[("csrf", &csrf), ("etag", &etag), ("name", "Changed")],
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK);
    preview.assert_contains("Renaming does not change the bill.");
    assert_eq!(organization(&app, &org.id).await.unwrap().name, "Changing");
    let done = client
        .post(
            &format!("{base}/rename"),
            &[
                ("csrf", &csrf),
                ("etag", &etag),
                ("name", "Changed"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(done.location(), format!("{base}?done=renamed"));
    assert_eq!(organization(&app, &org.id).await.unwrap().name, "Changed");
    // The old etag is stale now: refused as over gRPC, nothing changed.
    let stale = client
        .post(
            &format!("{base}/rename"),
            &[
                ("csrf", &csrf),
                ("etag", &etag),
                ("name", "Stale"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    stale.assert_contains("Someone changed this since the page was loaded.");
    assert_eq!(organization(&app, &org.id).await.unwrap().name, "Changed");

    let role = [
        ("csrf", csrf.as_str()),
        ("user_id", "user_member"),
        ("role", "org:admin"),
    ];
    let preview = client.post(&format!("{base}/members/role"), &role).await;
    preview.assert_contains("A role does not change the bill");
    preview.assert_contains("billable status accrues within a period");
    assert_eq!(
        membership(&app, &org.id, "user_member").await.unwrap().role,
        "org:member"
    );
    let mut confirmed = role.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = client
        .post(&format!("{base}/members/role"), &confirmed)
        .await;
    assert_eq!(done.location(), format!("{base}?done=role-changed"));
    assert_eq!(
        membership(&app, &org.id, "user_member").await.unwrap().role,
        "org:admin"
    );

    let remove = [("csrf", csrf.as_str()), ("user_id", "user_member")];
    let preview = client
        .post(&format!("{base}/members/remove"), &remove)
        .await;
    preview.assert_contains("Removing a member does not lower this period's bill");
    assert!(membership(&app, &org.id, "user_member").await.is_some());
    let mut confirmed = remove.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = client
        .post(&format!("{base}/members/remove"), &confirmed)
        .await;
    assert_eq!(done.location(), format!("{base}?done=member-removed"));
    assert!(membership(&app, &org.id, "user_member").await.is_none());
    // The last admin cannot go: the service's rule, in words.
    let last = client
        .post(
            &format!("{base}/members/remove"),
            &[
                ("csrf", &csrf),
                ("user_id", "user_owner"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.body);
    last.assert_contains("without a member who can manage members");

    let preview = client
        .post(&format!("{base}/delete"), &[("csrf", &csrf)])
        .await;
    preview.assert_contains("Deleting the organization does not lower this period's bill");
    preview.assert_contains("Its billing history stays.");
    assert!(organization(&app, &org.id).await.is_ok());
    let done = client
        .post(
            &format!("{base}/delete"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.location(), "/organizations?done=deleted");
    assert!(organization(&app, &org.id).await.is_err());
    client
        .get("/organizations?done=deleted")
        .await
        .assert_contains("The organization was deleted.");
}

#[tokio::test]
async fn deactivate_and_reactivate_preview_the_bill_before_anything_is_written() {
    let app = spawn_console(|config| config.billing.free_organizations = 0).await;
    let org = org_with_members(&app, "Resting").await;
    add_member(&app, &org.id, "user_third", "org:member").await;
    record(&app, &["user_owner", "user_member"]).await;
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let base = format!("/organizations/{}", org.id);
    let page = client.get(&base).await;
    page.assert_contains("<span class=\"badge active\">Active</span>");
    page.assert_contains("Deactivate this organization…");
    let csrf = page.csrf();
    let state = |o: &pb::Organization| o.state;

    // Deactivating the organization: the preview writes nothing.
    let preview = client
        .post(&format!("{base}/deactivate"), &[("csrf", &csrf)])
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    preview.assert_contains("Billing impact in");
    preview.assert_contains("deactivating the organization does not change this period");
    preview.assert_contains("Deactivating the organization does not lower this period's bill");
    preview.assert_contains("name=\"confirm\"");
    assert_eq!(
        state(&organization(&app, &org.id).await.unwrap()),
        pb::OrganizationState::Active as i32,
        "a preview writes nothing"
    );
    let done = client
        .post(
            &format!("{base}/deactivate"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), format!("{base}?done=deactivated"));
    let after = organization(&app, &org.id).await.unwrap();
    assert_eq!(state(&after), pb::OrganizationState::Deactivated as i32);
    let page = client.get(&done.location()).await;
    page.assert_contains("The organization was deactivated.");
    page.assert_contains("<span class=\"badge deactivated\">Deactivated</span> since <time");
    page.assert_contains("Reactivate this organization…");

    // Listed with its state, and found by the state filter.
    let list = client.get("/organizations?state=deactivated").await;
    list.assert_contains("Resting");
    list.assert_contains("badge deactivated");
    let list = client.get("/organizations?state=active").await;
    assert!(!list.body.contains("Resting"), "{}", list.body);

    // A deactivated organization refuses changes, in the words of gRPC.
    let page = client
        .post(
            &format!("{base}/rename"),
            &[("csrf", &csrf), ("name", "Busy"), ("confirm", "yes")],
        )
        .await;
    let refused = app
        .admin()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: org.id.clone(),
                name: "Busy".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .expect_err("deactivated");
    assert_same_refusal(&page, refused);

    // Reactivating it: the preview writes nothing either.
    let preview = client
        .post(&format!("{base}/reactivate"), &[("csrf", &csrf)])
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    preview.assert_contains("Billing impact in");
    preview.assert_contains("count toward its bill again");
    assert_eq!(
        state(&organization(&app, &org.id).await.unwrap()),
        pb::OrganizationState::Deactivated as i32
    );
    let done = client
        .post(
            &format!("{base}/reactivate"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.location(), format!("{base}?done=reactivated"));
    assert_eq!(
        state(&organization(&app, &org.id).await.unwrap()),
        pb::OrganizationState::Active as i32
    );

    // One membership: deactivated, then reactivated, each confirmed first.
    let member_state = |m: Option<pb::Membership>| m.expect("member").state;
    let page = client.get(&base).await;
    page.assert_contains("Deactivate<span class=\"visually-hidden\"> user_member</span>…");
    let deactivate = [("csrf", csrf.as_str()), ("user_id", "user_member")];
    let preview = client
        .post(&format!("{base}/members/deactivate"), &deactivate)
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    preview.assert_contains("Billing impact in");
    preview.assert_contains("Deactivating a membership does not lower this period's bill");
    assert_eq!(
        member_state(membership(&app, &org.id, "user_member").await),
        pb::MembershipState::Active as i32
    );
    let mut confirmed = deactivate.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = client
        .post(&format!("{base}/members/deactivate"), &confirmed)
        .await;
    assert_eq!(
        done.location(),
        format!("{base}?done=membership-deactivated")
    );
    assert_eq!(
        member_state(membership(&app, &org.id, "user_member").await),
        pb::MembershipState::Deactivated as i32
    );
    let page = client.get(&done.location()).await;
    page.assert_contains("The membership was deactivated.");
    page.assert_contains("Reactivate<span class=\"visually-hidden\"> user_member</span>…");

    let reactivate = [("csrf", csrf.as_str()), ("user_id", "user_member")];
    let preview = client
        .post(&format!("{base}/members/reactivate"), &reactivate)
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    preview.assert_contains("Billing impact in");
    assert_eq!(
        member_state(membership(&app, &org.id, "user_member").await),
        pb::MembershipState::Deactivated as i32
    );
    let mut confirmed = reactivate.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = client
        .post(&format!("{base}/members/reactivate"), &confirmed)
        .await;
    assert_eq!(
        done.location(),
        format!("{base}?done=membership-reactivated")
    );
    assert_eq!(
        member_state(membership(&app, &org.id, "user_member").await),
        pb::MembershipState::Active as i32
    );

    // A preview the service refuses says why and offers nothing to confirm:
    // the last active admin cannot be deactivated while others remain.
    let preview = client
        .post(
            &format!("{base}/members/deactivate"),
            &[("csrf", &csrf), ("user_id", "user_owner")],
        )
        .await;
    assert_eq!(preview.status, StatusCode::CONFLICT, "{}", preview.body);
    preview.assert_contains("without a member who can manage members");
    assert!(!preview.body.contains("name=\"confirm\""));
    assert_eq!(
        member_state(membership(&app, &org.id, "user_owner").await),
        pb::MembershipState::Active as i32
    );
}

#[tokio::test]
async fn tokens_without_rights_meet_the_refusals_of_grpc() {
    let app = spawn_console(|_| {}).await;
    let org = org_with_members(&app, "Protected").await;
    let base = format!("/organizations/{}", org.id);
    for (bearer, who) in [
        (token("svc-reader", "orgs:read"), "orgs:read"),
        (token("user_outsider", ""), "outsider"),
        (token("user_member", ""), "member"),
    ] {
        let mut client = ConsoleClient::signed_in(&app, &bearer).await;
        let csrf = client.csrf().await;
        let grpc = app.orgs(Some(bearer.clone()));

        let page = client
            .post(
                &format!("{base}/rename"),
                &[("csrf", &csrf), ("name", "Taken"), ("confirm", "yes")],
            )
            .await;
        let refused = grpc
            .clone()
            .update_organization(pb::UpdateOrganizationRequest {
                organization: Some(pb::Organization {
                    id: org.id.clone(),
                    name: "Taken".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
            })
            .await
            .expect_err(who);
        assert_same_refusal(&page, refused);

        let page = client
            .post(
                &format!("{base}/members/add"),
                &[
                    ("csrf", &csrf),
                    ("user_id", "user_new"),
                    ("role", "org:member"),
                    ("confirm", "yes"),
                ],
            )
            .await;
        let refused = grpc
            .clone()
            .create_membership(pb::CreateMembershipRequest {
                organization_id: org.id.clone(),
                user_id: "user_new".into(),
                role: "org:member".into(),
                ..Default::default()
            })
            .await
            .expect_err(who);
        assert_same_refusal(&page, refused);

        let page = client
            .post(
                &format!("{base}/delete"),
                &[("csrf", &csrf), ("confirm", "yes")],
            )
            .await;
        let refused = grpc
            .clone()
            .delete_organization(pb::DeleteOrganizationRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            })
            .await
            .expect_err(who);
        assert_same_refusal(&page, refused);

        let page = client
            .post(
                &format!("{base}/deactivate"),
                &[("csrf", &csrf), ("confirm", "yes")],
            )
            .await;
        let refused = grpc
            .clone()
            .deactivate_organization(pb::DeactivateOrganizationRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            })
            .await
            .expect_err(who);
        assert_same_refusal(&page, refused);

        // The preview meets the same refusal, and offers nothing to confirm.
        for confirm in ["", "yes"] {
            let page = client
                .post(
                    &format!("{base}/members/deactivate"),
                    &[
                        ("csrf", &csrf),
                        ("user_id", "user_owner"),
                        ("confirm", confirm),
                    ],
                )
                .await;
            let refused = grpc
                .clone()
                .deactivate_membership(pb::DeactivateMembershipRequest {
                    organization_id: org.id.clone(),
                    user_id: "user_owner".into(),
                    validate_only: confirm.is_empty(),
                    ..Default::default()
                })
                .await
                .expect_err(who);
            assert_same_refusal(&page, refused);
            assert!(!page.body.contains("name=\"confirm\""), "{who}");
        }

        let page = client.get("/billing").await;
        let refused = app
            .billing(Some(bearer.clone()))
            .get_billing_summary(pb::GetBillingSummaryRequest::default())
            .await
            .expect_err(who);
        assert_same_refusal(&page, refused);
    }
    let after = organization(&app, &org.id).await.expect("not deleted");
    assert_eq!(after.name, "Protected");
    assert_eq!(after.state, pb::OrganizationState::Active as i32);
    assert_eq!(
        membership(&app, &org.id, "user_owner").await.unwrap().state,
        pb::MembershipState::Active as i32
    );
    assert!(membership(&app, &org.id, "user_new").await.is_none());
}

#[tokio::test]
async fn hostile_names_are_escaped_everywhere() {
    let app = spawn_console(|_| {}).await;
    let hostile = "<script>alert(1)</script>\"'&";
    let org = create_org(&app, hostile, Some("user_owner")).await;
    add_member(&app, &org.id, "user_member", "org:member").await;
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let csrf = client.csrf().await;
    let pages = [
        client.get("/organizations").await,
        client.get(&format!("/organizations/{}", org.id)).await,
        client
            .post(
                &format!("/organizations/{}/delete", org.id),
                &[("csrf", &csrf)],
            )
            .await,
        client
            .post(
                &format!("/organizations/{}/rename", org.id),
                &[("csrf", &csrf), ("name", "<img src=x onerror=alert(2)>")],
            )
            .await,
    ];
    for page in &pages {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        page.assert_contains("&lt;script&gt;alert(1)&lt;/script&gt;");
    }
    // A hostile search is escaped too.
    let page = client
        .get("/organizations?query=%22%3E%3Cscript%3Ex%3C%2Fscript%3E")
        .await;
    assert!(!page.body.contains("<script>x"), "{}", page.body);
}

#[tokio::test]
async fn the_billing_page_shows_the_summary_the_chart_and_the_cost_drivers() {
    let app = spawn_console(|config| {
        config.billing.free_organizations = 1;
        config.billing.budget = 1_000;
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let org = create_org(
            &app,
            &format!("Client {n}"),
            Some(&format!("user_client_{n}")),
        )
        .await;
        add_member(&app, &org.id, "user_everywhere", "org:admin").await;
        ids.push(org.id);
    }
    let clients: Vec<String> = (0..5).map(|n| format!("user_client_{n}")).collect();
    let mut active: Vec<&str> = clients.iter().map(String::as_str).collect();
    active.push("user_everywhere");
    record(&app, &active).await;

    for bearer in [admin_token(), token("svc-finance", "billing:read")] {
        let mut client = ConsoleClient::signed_in(&app, &bearer).await;
        let page = client.get("/billing").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page.assert_contains("<dt>Billable organizations</dt><dd>5</dd>");
        page.assert_contains("<dt>Free of charge</dt><dd>1</dd>");
        page.assert_contains("<dt>Charged</dt><dd>4</dd>");
        page.assert_contains("USD 4.00");
        page.assert_contains("<dt>Budget</dt><dd class=\"amount\">USD 10.00</dd>");
        page.assert_contains("<dt>Projected amount due</dt>");
        page.assert_contains(
            "<svg class=\"chart\" role=\"img\" aria-labelledby=\"chart-title chart-desc\"",
        );
        page.assert_contains("<desc id=\"chart-desc\">");
        page.assert_contains("5 by the end of the last day shown");
        page.assert_contains("<th scope=\"col\">Became billable</th>");
        page.assert_contains("<code>user_everywhere</code>");
        page.assert_contains("href=\"/organizations?user_id=user_everywhere\"");
        for id in &ids {
            page.assert_contains(&format!("href=\"/organizations/{id}\""));
        }
    }
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let page = client.get("/billing?min_organizations=6").await;
    page.assert_contains("No user is an active member of that many billable organizations.");
    let page = client.get("/billing?period=2026-13").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    page.assert_contains("<code>period</code>");
    let page = client.get("/organizations?user_id=user_everywhere").await;
    page.assert_contains("5 organizations found.");
}

#[tokio::test]
async fn a_trusted_proxy_header_signs_in_and_the_console_stops_with_the_server() {
    let app = spawn_console(|config| config.console.trust_authorization_header = true).await;
    let org = org_with_members(&app, "Proxied").await;
    let mut client = ConsoleClient::new(&app);
    client.authorization = Some(format!("Bearer {}", admin_token()));
    let page = client.get(&format!("/organizations/{}", org.id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    let done = client
        .post(
            &format!("/organizations/{}/rename", org.id),
            &[
                ("csrf", &csrf),
                ("name", "Proxied Renamed"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    // Still no form without its token.
    let refused = client
        .post(
            &format!("/organizations/{}/delete", org.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    client.authorization = Some("Bearer nonsense".into());
    let page = client.get("/organizations").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    page.assert_contains("The token is not valid for this server");

    let addr = app.console_addr.expect("console");
    app.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the console still listens"
    );
}

#[tokio::test]
async fn without_an_address_there_is_no_console() {
    let app = TestApp::spawn().await;
    assert!(app.console_addr.is_none());
}

#[tokio::test]
async fn the_console_meets_the_per_principal_rate_limit_of_grpc() {
    let app = spawn_console(|config| config.limits.reads_per_second = 1).await;
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let page = client.get("/organizations").await;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            page.assert_contains("Too many requests with this token.");
        }
        statuses.push(page.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Another principal is unaffected.
    let mut other =
        ConsoleClient::signed_in(&app, &token("user_other_operator", "orgs:admin")).await;
    assert_eq!(other.get("/organizations").await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_pages_and_oversized_tokens_are_answered_in_words() {
    let app = spawn_console(|_| {}).await;
    let mut client = ConsoleClient::new(&app);
    let page = client.get("/no-such-page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    page.assert_contains("The console has no such page.");
    let huge = "x".repeat(5000);
    let page = client.sign_in_with(&huge).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    page.assert_contains("too long for a browser to keep in a cookie");
}

/// Every visible input, select and textarea of a page has a label, and the
/// headings do not skip a level.
#[track_caller]
fn assert_accessible(page: &Page) {
    let html = &page.body;
    for tag in ["<input ", "<select ", "<textarea "] {
        for (at, _) in html.match_indices(tag) {
            let end = html[at..].find('>').map(|e| at + e).expect("tag end");
            let element = &html[at..end];
            if element.contains("type=\"hidden\"") {
                continue;
            }
            let id = element
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no id on {element}"));
            assert!(
                html.contains(&format!("<label for=\"{id}\"")),
                "no label for {element}"
            );
        }
    }
    let mut previous = 0;
    for (at, _) in html.match_indices("<h") {
        let Some(level) = html[at + 2..].chars().next().and_then(|c| c.to_digit(10)) else {
            continue;
        };
        assert!(level <= previous + 1, "h{level} after h{previous}");
        previous = level;
    }
    assert!(html.contains("<html lang=\"en\">"));
}

#[tokio::test]
async fn every_page_labels_its_inputs_and_orders_its_headings() {
    let app = spawn_console(|_| {}).await;
    let org = org_with_members(&app, "Readable").await;
    record(&app, &["user_owner", "user_member"]).await;
    let mut client = ConsoleClient::new(&app);
    assert_accessible(&client.get("/sign-in").await);
    let mut client = ConsoleClient::signed_in(&app, &admin_token()).await;
    let csrf = client.csrf().await;
    let base = format!("/organizations/{}", org.id);
    let pages = [
        client.get("/organizations").await,
        client.get(&base).await,
        client.get("/billing").await,
        client
            .post(
                &format!("{base}/members/add"),
                &[
                    ("csrf", &csrf),
                    ("user_id", "user_new"),
                    ("role", "org:member"),
                ],
            )
            .await,
        client
            .post(&format!("{base}/delete"), &[("csrf", &csrf)])
            .await,
        client.get("/organizations/org_missing").await,
    ];
    for page in &pages {
        assert_accessible(page);
    }
}
