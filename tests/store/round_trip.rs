//! Every entity, and every repository's write and read paths, on the
//! backend under test: what goes in comes back equal.

use super::*;
use orgs::domain::invitations::{EnrollmentMode, InvitationStatus, MembershipRequestStatus};
use orgs::domain::verification::VerificationStrategy;
use orgs::store::entity;
use orgs::store::repo::domains::{self, DomainRow};
use orgs::store::repo::invitations::{self, InvitationFilter, InvitationRow};
use orgs::store::repo::membership_requests::{self, MembershipRequestRow};
use orgs::store::repo::roles::{self, PermissionRow, RoleRecord};
use sea_orm::{ConnectionTrait, EntityTrait, IntoActiveModel, QueryOrder};

/// Inserts a whole model through its entity and finds it among the rows.
async fn entity_round_trip<E>(store: &Store, model: E::Model)
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel> + Clone + PartialEq + std::fmt::Debug,
{
    E::insert(model.clone().into_active_model())
        .exec_without_returning(store.conn())
        .await
        .expect("insert");
    let rows = E::find().all(store.conn()).await.expect("read back");
    assert!(rows.contains(&model), "{model:?} not in {rows:?}");
}

/// Each entity writes and reads every column of its table, NULLs,
/// booleans and 64-bit times included.
#[tokio::test]
async fn every_entity_round_trips() {
    use entity::*;
    let store = Store::fresh(2).await;
    entity_round_trip::<organizations::Entity>(&store, organization("org_e", 3)).await;
    entity_round_trip::<organizations::Entity>(
        &store,
        OrganizationRow {
            created_by: None,
            external_id: Some("crm-f".into()),
            ..organization("org_f", 0)
        },
    )
    .await;
    entity_round_trip::<roles::Entity>(
        &store,
        roles::Model {
            id: "role_e".into(),
            key: "org:e".into(),
            name: "E".into(),
            description: "a role".into(),
            built_in: true,
            create_time: NOW,
            update_time: NOW + 1,
            revision: 3,
        },
    )
    .await;
    entity_round_trip::<permissions::Entity>(
        &store,
        permissions::Model {
            id: "perm_e".into(),
            key: "org:e:do".into(),
            name: "Do".into(),
            description: String::new(),
            system: false,
            create_time: NOW,
        },
    )
    .await;
    entity_round_trip::<role_permissions::Entity>(
        &store,
        role_permissions::Model {
            role_key: "org:e".into(),
            permission_key: "org:e:do".into(),
        },
    )
    .await;
    entity_round_trip::<memberships::Entity>(&store, membership("org_e", "user_e", "org:e")).await;
    entity_round_trip::<events::Entity>(
        &store,
        events::Model {
            seq: 1,
            id: "evt_e".into(),
            action: "CreateOrganization".into(),
            actor: "svc".into(),
            on_behalf_of: "user_e".into(),
            organization_id: "org_e".into(),
            resource_id: "org_e".into(),
            request_id: "req".into(),
            audit: false,
            payload: r#"{"a":1}"#.into(),
            create_time: NOW,
            kind: "organization.created".into(),
        },
    )
    .await;
    entity_round_trip::<event_sequence::Entity>(
        &store,
        event_sequence::Model {
            id: 2,
            last_seq: i64::MAX,
        },
    )
    .await;
    entity_round_trip::<idempotency_keys::Entity>(
        &store,
        idempotency_keys::Model {
            principal: "svc".into(),
            request_id: "req".into(),
            method: "M".into(),
            fingerprint: "fp".into(),
            response: "{}".into(),
            create_time: NOW,
        },
    )
    .await;
    for (id, organization_id) in [("inv_e", Some("org_e")), ("inv_app", None)] {
        entity_round_trip::<invitations::Entity>(
            &store,
            invitations::Model {
                id: id.into(),
                organization_id: organization_id.map(str::to_string),
                email_address: format!("{id}@example.com"),
                role: "org:e".into(),
                status: "pending".into(),
                inviter_user_id: "user_e".into(),
                redirect_url: "https://example.com".into(),
                public_metadata: "{}".into(),
                private_metadata: "{}".into(),
                token_hash: format!("hash-{id}"),
                expire_time: NOW + 10,
                accepted_user_id: String::new(),
                create_time: NOW,
                update_time: NOW,
            },
        )
        .await;
    }
    entity_round_trip::<domains::Entity>(
        &store,
        domains::Model {
            id: "dom_e".into(),
            organization_id: "org_e".into(),
            name: "e.example".into(),
            enrollment_mode: "manual_invitation".into(),
            verified: true,
            affiliation_email_address: "a@e.example".into(),
            verify_time: Some(NOW),
            code_hash: None,
            code_expire_time: Some(NOW + 5),
            code_attempts: 2,
            create_time: NOW,
            update_time: NOW,
            revision: 1,
            verification_strategy: "dns_txt".into(),
            dns_token: Some("token".into()),
            locked_until: Some(NOW + 9),
        },
    )
    .await;
    entity_round_trip::<membership_requests::Entity>(
        &store,
        membership_requests::Model {
            id: "mrq_e".into(),
            organization_id: "org_e".into(),
            user_id: "user_r".into(),
            email_address: "r@e.example".into(),
            status: "pending".into(),
            create_time: NOW,
            update_time: NOW,
        },
    )
    .await;
    entity_round_trip::<billing_user_activity::Entity>(
        &store,
        billing_user_activity::Model {
            period: PERIOD.into(),
            user_id: "user_e".into(),
            first_occur_time: NOW,
            record_time: NOW + 1,
        },
    )
    .await;
    entity_round_trip::<billing_active_members::Entity>(
        &store,
        billing_active_members::Model {
            period: PERIOD.into(),
            organization_id: "org_gone".into(),
            user_id: "user_e".into(),
            create_time: NOW,
        },
    )
    .await;
    entity_round_trip::<billing_organization_usage::Entity>(
        &store,
        billing_organization_usage::Model {
            organization_id: "org_gone".into(),
            period: PERIOD.into(),
            active_member_count: 2,
            billable_since: Some(NOW),
            billable_order: None,
        },
    )
    .await;
    entity_round_trip::<billing_periods::Entity>(
        &store,
        billing_periods::Model {
            period: PERIOD.into(),
            monthly_active_users: 1,
            billable_organizations: 0,
            create_time: NOW,
        },
    )
    .await;
    entity_round_trip::<billing_totals::Entity>(
        &store,
        billing_totals::Model {
            id: 99,
            total_organizations: 7,
        },
    )
    .await;

    // The rows the migrations seed read back through the entities too.
    let admin = roles::Entity::find()
        .all(store.conn())
        .await
        .expect("roles")
        .into_iter()
        .find(|role| role.key == ADMIN_ROLE)
        .expect("built-in admin role");
    assert!(admin.built_in);
    let sequence = event_sequence::Entity::find_by_id(1)
        .one(store.conn())
        .await
        .expect("sequence")
        .expect("seeded");
    assert_eq!(sequence.last_seq, 0);
    let totals = billing_totals::Entity::find_by_id(1)
        .one(store.conn())
        .await
        .expect("totals")
        .expect("seeded");
    assert_eq!(totals.total_organizations, 0);
}

#[tokio::test]
async fn organizations_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    let row = store.organization("org_rt", 10).await;
    assert_eq!(
        organizations::get(conn, "org_rt").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        organizations::get_by_slug(conn, "org-rt").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        organizations::get_for_update(conn, "org_rt").await.unwrap(),
        Some(row.clone())
    );
    assert!(organizations::slug_taken(conn, "org-rt").await.unwrap());
    assert!(!organizations::slug_taken(conn, "org-other").await.unwrap());
    assert_eq!(
        organizations::count_created_by(conn, "user_creator")
            .await
            .unwrap(),
        1
    );
    let duplicate = organizations::insert(conn, &row)
        .await
        .expect_err("same id");
    assert!(store::is_unique_violation(&duplicate), "{duplicate}");

    let changed = OrganizationRow {
        name: "Renamed".into(),
        slug: "renamed".into(),
        max_allowed_memberships: 3,
        public_metadata: r#"{"k":"v"}"#.into(),
        update_time: NOW + 5,
        external_id: Some("crm-rt".into()),
        ..row.clone()
    };
    assert!(
        !organizations::update(conn, &changed, 2).await.unwrap(),
        "stale revision"
    );
    assert!(organizations::update(conn, &changed, 1).await.unwrap());
    let stored = organizations::get(conn, "org_rt").await.unwrap().unwrap();
    assert_eq!(
        stored,
        OrganizationRow {
            revision: 2,
            ..changed.clone()
        }
    );
    assert_eq!(stored.etag(), "\"r2\"");
    assert!(
        !organizations::update(conn, &changed, 1).await.unwrap(),
        "stale after update"
    );

    store.member("org_rt", "user_m", MEMBER_ROLE).await;
    let (found, role) =
        organizations::get_as_member(conn, organizations::KeyColumn::Slug, "renamed", "user_m")
            .await
            .unwrap()
            .expect("member");
    assert_eq!((found.id.as_str(), role.as_str()), ("org_rt", MEMBER_ROLE));
    assert!(
        organizations::get_as_member(conn, organizations::KeyColumn::Id, "org_rt", "user_x")
            .await
            .unwrap()
            .is_none()
    );

    assert!(organizations::delete(conn, "org_rt").await.unwrap());
    assert!(!organizations::delete(conn, "org_rt").await.unwrap());
    assert_eq!(organizations::get(conn, "org_rt").await.unwrap(), None);
    // Its memberships go with it.
    assert_eq!(
        memberships::get(conn, "org_rt", "user_m").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn organization_lists_page_by_keyset() {
    use organizations::{OrganizationFilter, OrganizationOrder};
    let store = Store::fresh(2).await;
    let conn = store.conn();
    for (i, name) in ["Beta_1", "alpha%", "Gamma", "beta_2"].iter().enumerate() {
        let row = OrganizationRow {
            name: name.to_string(),
            create_time: NOW + i as i64,
            ..organization(&format!("org_{i}"), 0)
        };
        organizations::insert(conn, &row).await.unwrap();
    }
    store.member("org_2", "user_l", MEMBER_ROLE).await;
    let names = |rows: Vec<OrganizationRow>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();

    let all = OrganizationFilter::default();
    let first = organizations::list(conn, &all, OrganizationOrder::Name, None, 2)
        .await
        .unwrap();
    assert_eq!(names(first.clone()), ["Beta_1", "Gamma"]);
    let after = OrganizationOrder::Name.key_of(&first[1].clone().into());
    let next = organizations::list(conn, &all, OrganizationOrder::Name, Some(&after), 2)
        .await
        .unwrap();
    assert_eq!(names(next), ["alpha%", "beta_2"]);
    let newest = organizations::list(conn, &all, OrganizationOrder::CreateTimeDesc, None, 3)
        .await
        .unwrap();
    let after = OrganizationOrder::CreateTimeDesc.key_of(&newest[2].clone().into());
    let rest = organizations::list(
        conn,
        &all,
        OrganizationOrder::CreateTimeDesc,
        Some(&after),
        3,
    )
    .await
    .unwrap();
    assert_eq!(names(rest), ["Beta_1"]);
    let busiest = organizations::list(conn, &all, OrganizationOrder::MembersCountDesc, None, 1)
        .await
        .unwrap();
    assert_eq!(names(busiest), ["Gamma"]);

    // `_` and `%` in a query are characters, not wildcards; case does not matter.
    let query = |q: &str| OrganizationFilter {
        query: Some(q.into()),
        member: None,
        state: None,
    };
    assert_eq!(
        organizations::count(conn, &query("BETA_")).await.unwrap(),
        2
    );
    assert_eq!(organizations::count(conn, &query("a%")).await.unwrap(), 1);
    assert_eq!(organizations::count(conn, &query("a_")).await.unwrap(), 2);
    let member = OrganizationFilter {
        query: None,
        member: Some(orgs::domain::ids::UserId::from_stored("user_l")),
        state: None,
    };
    assert_eq!(
        names(
            organizations::list(conn, &member, OrganizationOrder::CreateTime, None, 10)
                .await
                .unwrap()
        ),
        ["Gamma"]
    );
    assert_eq!(organizations::count(conn, &member).await.unwrap(), 1);
}

#[tokio::test]
async fn memberships_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    store.organization("org_m", 0).await;
    let admin = store.member("org_m", "user_a", ADMIN_ROLE).await;
    let member = store.member("org_m", "user_b", MEMBER_ROLE).await;
    assert_eq!(
        memberships::get(conn, "org_m", "user_a").await.unwrap(),
        Some(admin.clone())
    );
    let duplicate = memberships::insert(
        conn,
        &MembershipRow {
            id: "mem_other".into(),
            ..admin.clone()
        },
    )
    .await
    .expect_err("one membership per user");
    assert!(store::is_unique_violation(&duplicate), "{duplicate}");

    let (role, permissions) = memberships::role_and_permissions(conn, "org_m", "user_b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (role.as_str(), permissions),
        (MEMBER_ROLE, vec![MEMBERSHIPS_READ.to_string()])
    );
    assert_eq!(
        memberships::role_and_permissions(conn, "org_m", "user_x")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        memberships::count_with_permission(conn, "org_m", MEMBERSHIPS_MANAGE)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        memberships::count_with_permission(conn, "org_m", MEMBERSHIPS_READ)
            .await
            .unwrap(),
        2
    );

    let promoted = MembershipRow {
        role: ADMIN_ROLE.into(),
        update_time: NOW + 1,
        ..member.clone()
    };
    assert!(!memberships::update(conn, &promoted, 7).await.unwrap());
    assert!(memberships::update(conn, &promoted, 1).await.unwrap());
    assert_eq!(
        memberships::get(conn, "org_m", "user_b").await.unwrap(),
        Some(MembershipRow {
            revision: 2,
            ..promoted
        })
    );

    let filter = MembershipFilter {
        organization_id: Some(orgs::domain::ids::OrganizationId::from_stored("org_m")),
        ..Default::default()
    };
    let page = memberships::list(conn, &filter, None, 1).await.unwrap();
    let last = &page[0];
    let rest = memberships::list(conn, &filter, Some((last.create_time, last.id.clone())), 10)
        .await
        .unwrap();
    assert_eq!(page.len() + rest.len(), 2);
    assert_ne!(page[0].id, rest[0].id);
    let by_role = MembershipFilter {
        role: Some(orgs::domain::ids::RoleKey::from_stored(ADMIN_ROLE)),
        ..filter.clone()
    };
    assert_eq!(memberships::count(conn, &by_role).await.unwrap(), 2);

    assert!(memberships::delete(conn, &admin.id).await.unwrap());
    assert!(!memberships::delete(conn, &admin.id).await.unwrap());
    assert_eq!(memberships::count(conn, &filter).await.unwrap(), 1);
}

#[tokio::test]
async fn roles_and_permissions_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    let permission = PermissionRow {
        id: "perm_custom".into(),
        key: "org:invoices:read".into(),
        name: "Read invoices".into(),
        description: "".into(),
        system: false,
        create_time: NOW,
    };
    roles::insert_permission(conn, &permission).await.unwrap();
    assert_eq!(
        roles::get_permission(conn, &permission.key).await.unwrap(),
        Some(permission.clone())
    );
    let known = roles::existing_permissions(conn, &[permission.key.clone(), "org:nope".into()])
        .await
        .unwrap();
    assert_eq!(known, vec![permission.key.clone()]);
    let role = RoleRecord {
        id: "role_billing".into(),
        key: "org:billing".into(),
        name: "Billing".into(),
        description: "Reads invoices".into(),
        built_in: false,
        create_time: NOW,
        update_time: NOW,
        revision: 1,
        permissions: vec![permission.key.clone(), MEMBERSHIPS_READ.into()],
    };
    roles::insert_role(conn, &role).await.unwrap();
    let mut sorted = role.clone();
    sorted.permissions.sort();
    assert_eq!(
        roles::get_role(conn, &role.key).await.unwrap(),
        Some(sorted.clone())
    );
    assert!(
        roles::grants(conn, &role.key, &permission.key)
            .await
            .unwrap()
    );
    assert!(
        roles::permission_in_use(conn, &permission.key)
            .await
            .unwrap()
    );
    assert!(!roles::role_in_use(conn, &role.key).await.unwrap());
    assert_eq!(roles::count_roles(conn).await.unwrap(), 3);
    let listed = roles::list_roles(conn, Some("org:admin"), 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["org:billing", "org:member"]
    );

    let narrowed = RoleRecord {
        name: "Invoices".into(),
        permissions: vec![permission.key.clone()],
        update_time: NOW + 1,
        ..role.clone()
    };
    assert!(!roles::update_role(conn, &narrowed, 9).await.unwrap());
    assert_eq!(
        roles::get_role(conn, &role.key).await.unwrap(),
        Some(sorted),
        "untouched"
    );
    assert!(roles::update_role(conn, &narrowed, 1).await.unwrap());
    assert_eq!(
        roles::get_role(conn, &role.key).await.unwrap(),
        Some(RoleRecord {
            revision: 2,
            ..narrowed
        })
    );

    store.organization("org_r", 0).await;
    store.member("org_r", "user_r", &role.key).await;
    assert!(roles::role_in_use(conn, &role.key).await.unwrap());
    // Only admins hold the manage permission, through their role.
    store.member("org_r", "user_admin", ADMIN_ROLE).await;
    assert!(roles::sole_managers_hold(conn, ADMIN_ROLE).await.unwrap());
    assert!(!roles::sole_managers_hold(conn, &role.key).await.unwrap());

    assert!(!roles::delete_permission(conn, "org:nope").await.unwrap());
    assert_eq!(roles::count_permissions(conn).await.unwrap(), 8);
    let page = roles::list_permissions(conn, Some("org:invoices:read"), 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
        ["org:sys_billing:read", "org:sys_domains:manage"]
    );
    memberships::delete(conn, "mem_org_r_user_r").await.unwrap();
    assert!(roles::delete_role(conn, &role.key).await.unwrap());
    assert_eq!(roles::get_role(conn, &role.key).await.unwrap(), None);
    assert!(
        !roles::permission_in_use(conn, &permission.key)
            .await
            .unwrap(),
        "grants went with the role"
    );
    assert!(
        roles::delete_permission(conn, &permission.key)
            .await
            .unwrap()
    );
}

fn invitation(
    id: &str,
    organization_id: Option<&str>,
    email: &str,
    create_time: i64,
) -> InvitationRow {
    InvitationRow {
        id: id.into(),
        organization_id: organization_id.map(str::to_string),
        email_address: email.into(),
        role: MEMBER_ROLE.into(),
        status: "pending".into(),
        inviter_user_id: "user_a".into(),
        redirect_url: "".into(),
        public_metadata: "{}".into(),
        private_metadata: "{}".into(),
        expire_time: NOW + 100,
        accepted_user_id: "".into(),
        create_time,
        update_time: create_time,
    }
}

#[tokio::test]
async fn invitations_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    store.organization("org_i", 0).await;
    let first = invitation("inv_1", Some("org_i"), "a@x.example", NOW);
    invitations::insert(conn, &first, "hash-1").await.unwrap();
    let app = invitation("inv_app", None, "a@x.example", NOW + 1);
    invitations::insert(conn, &app, "hash-app").await.unwrap();
    assert_eq!(
        invitations::get(conn, "inv_1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        invitations::get_by_token_hash(conn, "hash-app")
            .await
            .unwrap(),
        Some(app.clone())
    );
    let second = invitations::insert(
        conn,
        &invitation("inv_2", Some("org_i"), "a@x.example", NOW),
        "hash-2",
    )
    .await
    .expect_err("one pending invitation per address");
    assert!(store::is_unique_violation(&second), "{second}");

    assert_eq!(
        invitations::find_pending(conn, Some("org_i"), "a@x.example", NOW)
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        invitations::find_pending(conn, None, "a@x.example", NOW)
            .await
            .unwrap(),
        Some(app.clone())
    );
    assert_eq!(
        invitations::pending_for_email(conn, "a@x.example", NOW)
            .await
            .unwrap(),
        vec![app.clone(), first.clone()]
    );
    invitations::refresh_pending_count(conn, "org_i", NOW)
        .await
        .unwrap();
    assert_eq!(
        organizations::get(conn, "org_i")
            .await
            .unwrap()
            .unwrap()
            .pending_invitations_count,
        1
    );

    // Past its expiry it reads as expired, and the sweep stores it so.
    let later = NOW + 100;
    let pending = InvitationFilter {
        organization_id: Some(orgs::domain::ids::OrganizationId::from_stored("org_i")),
        status: Some(InvitationStatus::Pending),
        email_address: None,
    };
    let expired = InvitationFilter {
        status: Some(InvitationStatus::Expired),
        ..pending.clone()
    };
    assert_eq!(invitations::count(conn, &pending, NOW).await.unwrap(), 1);
    assert_eq!(invitations::count(conn, &expired, later).await.unwrap(), 1);
    assert!(
        !invitations::transition_from_pending(
            conn,
            "inv_1",
            InvitationStatus::Accepted,
            "user_b",
            later
        )
        .await
        .unwrap()
    );
    assert_eq!(
        invitations::sweep_expired(conn, Some("org_i"), Some("a@x.example"), later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        invitations::get(conn, "inv_1")
            .await
            .unwrap()
            .unwrap()
            .status,
        "expired"
    );
    assert_eq!(invitations::count(conn, &expired, later).await.unwrap(), 1);
    invitations::refresh_pending_count(conn, "org_i", later)
        .await
        .unwrap();
    assert_eq!(
        organizations::get(conn, "org_i")
            .await
            .unwrap()
            .unwrap()
            .pending_invitations_count,
        0
    );

    // A fresh invitation to the same address, accepted once.
    let third = invitation("inv_3", Some("org_i"), "a@x.example", NOW + 2);
    invitations::insert(conn, &third, "hash-3").await.unwrap();
    assert!(
        invitations::transition_from_pending(
            conn,
            "inv_3",
            InvitationStatus::Accepted,
            "user_b",
            NOW
        )
        .await
        .unwrap()
    );
    assert!(
        !invitations::transition_from_pending(conn, "inv_3", InvitationStatus::Revoked, "", NOW)
            .await
            .unwrap()
    );
    let accepted = invitations::get(conn, "inv_3").await.unwrap().unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.accepted_user_id.as_str()),
        ("accepted", "user_b")
    );
    assert!(
        !invitations::email_is_member(conn, "org_i", "a@x.example")
            .await
            .unwrap()
    );
    store.member("org_i", "user_b", MEMBER_ROLE).await;
    assert!(
        invitations::email_is_member(conn, "org_i", "a@x.example")
            .await
            .unwrap()
    );
    assert!(
        !invitations::was_revoked(conn, "org_i", "a@x.example")
            .await
            .unwrap()
    );

    let all = InvitationFilter {
        organization_id: Some(orgs::domain::ids::OrganizationId::from_stored("org_i")),
        status: None,
        email_address: Some(
            orgs::domain::types::Email::parse("email_address", "a@x.example").unwrap(),
        ),
    };
    let page = invitations::list(conn, &all, NOW, None, 1).await.unwrap();
    assert_eq!(page, vec![accepted]);
    let rest = invitations::list(
        conn,
        &all,
        NOW,
        Some((page[0].create_time, page[0].id.clone())),
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        rest.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["inv_1"]
    );
    let apps = InvitationFilter::default();
    assert_eq!(invitations::count(conn, &apps, NOW).await.unwrap(), 1);
}

#[tokio::test]
async fn domains_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    store.organization("org_d", 0).await;
    let row = DomainRow {
        id: "dom_1".into(),
        organization_id: "org_d".into(),
        name: "d.example".into(),
        enrollment_mode: EnrollmentMode::ManualInvitation.as_str().into(),
        verified: false,
        affiliation_email_address: "".into(),
        verify_time: None,
        create_time: NOW,
        update_time: NOW,
        revision: 1,
        verification_strategy: "email_code".into(),
    };
    domains::insert(conn, &row).await.unwrap();
    assert_eq!(
        domains::get(conn, "dom_1").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        domains::get_for_update(conn, "dom_1").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        domains::claim_of(conn, "org_d", "d.example").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        domains::verified_named(conn, "d.example").await.unwrap(),
        None
    );
    assert_eq!(domains::count(conn, "org_d", NOW - 1).await.unwrap(), 1);
    assert_eq!(
        domains::count(conn, "org_d", NOW).await.unwrap(),
        0,
        "expired"
    );
    let code = domains::get_code(conn, "dom_1").await.unwrap().unwrap();
    assert_eq!(
        (code.code_hash, code.code_expire_time, code.code_attempts),
        (None, None, 0)
    );

    let mode = EnrollmentMode::AutomaticInvitation;
    assert!(
        !domains::update_settings(
            conn,
            "dom_1",
            mode,
            VerificationStrategy::EmailCode,
            NOW + 1,
            5
        )
        .await
        .unwrap()
    );
    assert!(
        domains::update_settings(
            conn,
            "dom_1",
            mode,
            VerificationStrategy::EmailCode,
            NOW + 1,
            1
        )
        .await
        .unwrap()
    );
    domains::set_code(
        conn,
        "dom_1",
        "it@d.example",
        "code-hash",
        NOW + 60,
        NOW + 2,
    )
    .await
    .unwrap();
    let code = domains::get_code(conn, "dom_1").await.unwrap().unwrap();
    assert_eq!(
        (
            code.code_hash.as_deref(),
            code.code_expire_time,
            code.code_attempts
        ),
        (Some("code-hash"), Some(NOW + 60), 0)
    );
    assert!(
        !domains::record_wrong_attempt(conn, "dom_1", 2)
            .await
            .unwrap()
    );
    assert!(
        domains::record_wrong_attempt(conn, "dom_1", 2)
            .await
            .unwrap(),
        "voided at the limit"
    );
    let code = domains::get_code(conn, "dom_1").await.unwrap().unwrap();
    assert_eq!(
        (code.code_hash, code.code_expire_time, code.code_attempts),
        (None, None, 2)
    );
    assert_eq!(
        domains::verified_by_name(conn, "d.example", mode)
            .await
            .unwrap(),
        None
    );

    domains::mark_verified(conn, "dom_1", NOW + 3)
        .await
        .unwrap();
    let verified = domains::get(conn, "dom_1").await.unwrap().unwrap();
    assert_eq!(
        verified,
        DomainRow {
            enrollment_mode: mode.as_str().into(),
            verified: true,
            affiliation_email_address: "it@d.example".into(),
            verify_time: Some(NOW + 3),
            update_time: NOW + 3,
            revision: 4,
            ..row.clone()
        }
    );
    assert_eq!(
        domains::verified_by_name(conn, "d.example", mode)
            .await
            .unwrap(),
        Some(verified.clone())
    );
    assert_eq!(
        domains::list(conn, "org_d", NOW + 100, None, 10)
            .await
            .unwrap(),
        vec![verified.clone()],
        "a verified domain never expires"
    );
    assert!(
        domains::list(conn, "org_d", NOW, Some("d.example".into()), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Another organization may claim the name unverified, but the database
    // refuses a second verified domain of it.
    store.organization("org_d2", 0).await;
    let claim = DomainRow {
        id: "dom_2".into(),
        organization_id: "org_d2".into(),
        ..row.clone()
    };
    domains::insert(conn, &claim).await.unwrap();
    assert_eq!(
        domains::other_claims_for_update(conn, "d.example", "dom_1")
            .await
            .unwrap(),
        vec![claim.clone()]
    );
    assert_eq!(
        domains::expired_claims(conn, "org_x", "d.example", NOW)
            .await
            .unwrap(),
        vec![claim.clone()]
    );
    let err = domains::mark_verified(conn, "dom_2", NOW + 4)
        .await
        .unwrap_err();
    assert!(store::is_unique_violation(&err), "{err:?}");
    let twice = domains::insert(
        conn,
        &DomainRow {
            id: "dom_3".into(),
            ..claim.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(
        store::is_unique_violation(&twice),
        "one claim per organization and name: {twice:?}"
    );

    // Attempts: counted after a time, pruned, and gone with their domain.
    use orgs::domain::verification::AttemptKind;
    use orgs::store::repo::domain_attempts;
    for time in [NOW, NOW + 1, NOW + 2] {
        domain_attempts::record(conn, "dom_2", AttemptKind::Failure, time)
            .await
            .unwrap();
    }
    domain_attempts::record(conn, "dom_2", AttemptKind::Prepare, NOW + 1)
        .await
        .unwrap();
    assert_eq!(
        domain_attempts::since(conn, "dom_2", AttemptKind::Failure, NOW)
            .await
            .unwrap(),
        (2, Some(NOW + 1))
    );
    assert_eq!(
        domain_attempts::since(conn, "dom_2", AttemptKind::Prepare, NOW + 1)
            .await
            .unwrap(),
        (0, None)
    );
    assert_eq!(
        domain_attempts::prune(conn, "dom_2", NOW + 1)
            .await
            .unwrap(),
        3
    );
    domains::lock(conn, "dom_2", NOW + 50).await.unwrap();
    assert_eq!(
        domains::get_code(conn, "dom_2")
            .await
            .unwrap()
            .unwrap()
            .locked_until,
        Some(NOW + 50)
    );
    assert!(domains::delete(conn, "dom_2").await.unwrap());
    assert_eq!(
        domain_attempts::since(conn, "dom_2", AttemptKind::Failure, 0)
            .await
            .unwrap(),
        (0, None),
        "attempts cascade with their domain"
    );

    assert!(domains::delete(conn, "dom_1").await.unwrap());
    assert!(!domains::delete(conn, "dom_1").await.unwrap());
}

#[tokio::test]
async fn membership_requests_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    store.organization("org_q", 0).await;
    let request = MembershipRequestRow {
        id: "mrq_1".into(),
        organization_id: "org_q".into(),
        user_id: "user_q".into(),
        email_address: "q@q.example".into(),
        status: "pending".into(),
        create_time: NOW,
        update_time: NOW,
    };
    membership_requests::insert(conn, &request).await.unwrap();
    assert_eq!(
        membership_requests::get(conn, "mrq_1").await.unwrap(),
        Some(request.clone())
    );
    assert!(
        membership_requests::has_pending(conn, "org_q", "user_q")
            .await
            .unwrap()
    );
    let again = membership_requests::insert(
        conn,
        &MembershipRequestRow {
            id: "mrq_2".into(),
            ..request.clone()
        },
    )
    .await
    .expect_err("one pending request per user");
    assert!(store::is_unique_violation(&again), "{again}");

    assert!(
        membership_requests::decide(conn, "mrq_1", MembershipRequestStatus::Rejected, NOW + 1)
            .await
            .unwrap()
    );
    assert!(
        !membership_requests::decide(conn, "mrq_1", MembershipRequestStatus::Accepted, NOW + 2)
            .await
            .unwrap()
    );
    let decided = membership_requests::get(conn, "mrq_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decided.status(), MembershipRequestStatus::Rejected);
    assert!(
        !membership_requests::has_pending(conn, "org_q", "user_q")
            .await
            .unwrap()
    );

    membership_requests::insert(
        conn,
        &MembershipRequestRow {
            id: "mrq_2".into(),
            create_time: NOW + 5,
            ..request.clone()
        },
    )
    .await
    .unwrap();
    let pending = Some(MembershipRequestStatus::Pending);
    assert_eq!(
        membership_requests::count(conn, "org_q", pending)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        membership_requests::count(conn, "org_q", None)
            .await
            .unwrap(),
        2
    );
    let page = membership_requests::list(conn, "org_q", None, None, 1)
        .await
        .unwrap();
    assert_eq!(page[0].id, "mrq_2");
    let rest = membership_requests::list(
        conn,
        "org_q",
        None,
        Some((page[0].create_time, page[0].id.clone())),
        5,
    )
    .await
    .unwrap();
    assert_eq!(rest, vec![decided]);
}

#[tokio::test]
async fn idempotency_keys_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    idempotency::claim(conn, "svc", "r1", "CreateOrganization", "fp1", NOW)
        .await
        .unwrap();
    idempotency::claim(conn, "svc", "r2", "CreateOrganization", "fp2", NOW + 10)
        .await
        .unwrap();
    let claim = idempotency::get(conn, "svc", "r1", NOW - 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            claim.method.as_str(),
            claim.fingerprint.as_str(),
            claim.response.as_str()
        ),
        ("CreateOrganization", "fp1", "")
    );
    assert_eq!(
        idempotency::get(conn, "svc", "r1", NOW).await.unwrap(),
        None,
        "made at the cutoff: expired"
    );
    idempotency::store_response(conn, "svc", "r1", "answer")
        .await
        .unwrap();
    assert_eq!(
        idempotency::get(conn, "svc", "r1", 0)
            .await
            .unwrap()
            .unwrap()
            .response,
        "answer"
    );

    idempotency::delete_expired_claim(conn, "svc", "r2", NOW)
        .await
        .unwrap();
    assert!(
        idempotency::get(conn, "svc", "r2", 0)
            .await
            .unwrap()
            .is_some(),
        "younger than the cutoff"
    );
    idempotency::delete_expired_claim(conn, "svc", "r1", NOW)
        .await
        .unwrap();
    assert_eq!(idempotency::get(conn, "svc", "r1", 0).await.unwrap(), None);
    assert_eq!(idempotency::purge(conn, NOW + 10).await.unwrap(), 1);
    assert_eq!(idempotency::get(conn, "svc", "r2", 0).await.unwrap(), None);
}

#[tokio::test]
async fn billing_round_trip() {
    let store = Store::fresh(2).await;
    let conn = store.conn();
    let users: Vec<String> = ["user_1", "user_2", "user_3"].map(String::from).to_vec();
    store.organization("org_b", 0).await;
    store.member("org_b", "user_1", MEMBER_ROLE).await;
    store.member("org_b", "user_2", MEMBER_ROLE).await;

    let rows: Vec<(String, String, i64)> = users
        .iter()
        .map(|u| (PERIOD.into(), u.clone(), NOW))
        .collect();
    assert_eq!(
        billing::insert_activity(conn, &rows[..2], NOW)
            .await
            .unwrap()
            .len(),
        2
    );
    let inserted = billing::insert_activity(conn, &rows, NOW).await.unwrap();
    assert_eq!(inserted, vec![(PERIOD.to_string(), "user_3".to_string())]);
    let mut known = billing::known_active(conn, PERIOD, &users).await.unwrap();
    known.sort();
    assert_eq!(known, users);
    assert!(billing::is_active(conn, PERIOD, "user_1").await.unwrap());
    assert!(!billing::is_active(conn, "2025-11", "user_1").await.unwrap());
    // Another period: first activities with their locks in one statement,
    // then the memberships of those users made active members in one.
    let other: Vec<(String, String, i64)> = users
        .iter()
        .map(|u| ("2025-11".into(), u.clone(), NOW))
        .collect();
    let mut first = billing::insert_activity_and_lock_users(conn, &other, NOW)
        .await
        .unwrap();
    first.sort();
    let pairs: Vec<(String, String)> = users
        .iter()
        .map(|u| ("2025-11".into(), u.clone()))
        .collect();
    assert_eq!(first, pairs);
    assert!(
        billing::insert_activity_and_lock_users(conn, &other, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    let mut activated = billing::activate_memberships(conn, &pairs, NOW)
        .await
        .unwrap();
    activated.sort();
    assert_eq!(
        activated,
        [
            ("2025-11".to_string(), "org_b".to_string()),
            ("2025-11".into(), "org_b".into())
        ]
    );
    assert!(
        billing::activate_memberships(conn, &pairs, NOW)
            .await
            .unwrap()
            .is_empty()
    );

    let members: Vec<(String, String, String)> = ["user_1", "user_2"]
        .iter()
        .map(|u| (PERIOD.into(), "org_b".into(), u.to_string()))
        .collect();
    assert_eq!(
        billing::insert_active_members(conn, &members, NOW)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        billing::insert_active_members(conn, &members, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    let organizations = ["org_b".to_string(), "org_none".to_string()];
    let first = billing_members::first_active_members(conn, PERIOD, &organizations, 1)
        .await
        .unwrap();
    assert_eq!(
        first.into_iter().collect::<Vec<_>>(),
        [("org_b".to_string(), vec!["user_1".to_string()])],
        "the first by user id, none for an organization without any"
    );
    let all = billing_members::first_active_members(conn, PERIOD, &organizations, 10)
        .await
        .unwrap();
    assert_eq!(all["org_b"], ["user_1", "user_2"]);
    assert_eq!(
        billing_members::active_member_page(conn, PERIOD, "org_b", None, 1)
            .await
            .unwrap(),
        ["user_1"]
    );
    assert_eq!(
        billing_members::active_member_page(conn, PERIOD, "org_b", Some("user_1"), 10)
            .await
            .unwrap(),
        ["user_2"]
    );

    let after = billing::add_to_usage(
        conn,
        &[
            ("org_b".into(), PERIOD.into(), 1),
            ("org_c".into(), PERIOD.into(), 1),
        ],
    )
    .await
    .unwrap();
    assert_eq!(after.len(), 2);
    let after = billing::add_to_usage(conn, &[("org_b".into(), PERIOD.into(), 1)])
        .await
        .unwrap();
    assert_eq!(after[0].active_member_count, 2);
    assert!(billing::has_history(conn, "org_c").await.unwrap());
    assert!(
        !billing::mark_billable(conn, "org_c", PERIOD, 2, NOW)
            .await
            .unwrap(),
        "below the threshold"
    );
    assert!(
        billing::mark_billable(conn, "org_b", PERIOD, 2, NOW)
            .await
            .unwrap()
    );
    billing::set_billable_order(conn, "org_b", PERIOD, 1)
        .await
        .unwrap();
    assert_eq!(
        billing::usage(conn, "org_b", PERIOD).await.unwrap(),
        Some(billing::UsageRow {
            organization_id: "org_b".into(),
            period: PERIOD.into(),
            active_member_count: 2,
            billable_since: Some(NOW),
            billable_order: Some(1),
        })
    );
    assert_eq!(
        billing::billable_page(conn, PERIOD, 0, 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        billing::billable_page(conn, PERIOD, 1, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        billing::billable_page(conn, PERIOD, 0, 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing past the upper bound"
    );

    assert_eq!(
        billing::period_totals(conn, PERIOD).await.unwrap(),
        Default::default()
    );
    // Before its period exists, the one-statement count writes nothing.
    assert!(
        !billing::add_users_to_existing_period(conn, PERIOD, 5)
            .await
            .unwrap()
    );
    assert_eq!(
        billing::period_totals(conn, PERIOD).await.unwrap(),
        Default::default()
    );
    assert!(billing::ensure_period(conn, PERIOD, NOW).await.unwrap());
    assert!(!billing::ensure_period(conn, PERIOD, NOW).await.unwrap());
    assert!(
        billing::add_users_to_existing_period(conn, PERIOD, 1)
            .await
            .unwrap()
    );
    billing::add_period_users(conn, PERIOD, 2).await.unwrap();
    assert_eq!(billing::add_billable(conn, PERIOD, 1).await.unwrap(), 1);
    let totals = billing::period_totals(conn, PERIOD).await.unwrap();
    assert_eq!(
        (totals.monthly_active_users, totals.billable_organizations),
        (3, 1)
    );
    // Users counted on several rows add up.
    for _ in 0..40 {
        billing::add_period_users(conn, PERIOD, 2).await.unwrap();
    }
    billing::add_period_users(conn, PERIOD, 0).await.unwrap();
    let totals = billing::period_totals(conn, PERIOD).await.unwrap();
    assert_eq!(
        (totals.monthly_active_users, totals.billable_organizations),
        (83, 1)
    );

    // user_1 and user_2 hold up org_b (2 active members, threshold 2).
    let drivers = billing::cost_drivers(conn, PERIOD, 2, 1, None, 10)
        .await
        .unwrap();
    assert_eq!(
        drivers
            .iter()
            .map(|d| (
                d.user_id.as_str(),
                d.billable_organization_count,
                d.sole_cause_count
            ))
            .collect::<Vec<_>>(),
        [("user_1", 1, 1), ("user_2", 1, 1)]
    );
    let next = billing::cost_drivers(conn, PERIOD, 2, 1, Some((1, "user_1".into())), 10)
        .await
        .unwrap();
    assert_eq!(next, drivers[1..]);
    assert_eq!(
        billing::count_cost_drivers(conn, PERIOD, 2, 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        billing::count_cost_drivers(conn, PERIOD, 2, 2)
            .await
            .unwrap(),
        0
    );

    assert_eq!(billing::total_organizations(conn).await.unwrap(), 0);
    billing::add_to_total_organizations(conn, 2).await.unwrap();
    billing::add_to_total_organizations(conn, -1).await.unwrap();
    assert_eq!(billing::total_organizations(conn).await.unwrap(), 1);
}

/// Events written at positions from the sequence (PostgreSQL) keep every
/// column, and take their positions in the order they were listed, also
/// past the values one statement binds.
#[tokio::test]
async fn sequenced_events_keep_their_columns_and_order_past_one_statement() {
    use orgs::domain::events::EventKind;
    use orgs::events::{NewEvent, horizon, reader};
    let store = Store::fresh(2).await;
    if !store.postgres() {
        // SQLite numbers events in its one writer.
        return;
    }
    let events: Vec<NewEvent> = (0..2_345)
        .map(|n| NewEvent {
            kind: Some(EventKind::OrganizationUpdated),
            action: "UpdateOrganization".into(),
            actor: format!("user_{n}"),
            on_behalf_of: String::new(),
            organization_id: "org_s".into(),
            resource_id: "org_s".into(),
            request_id: format!("req_{n}"),
            audit: n % 2 == 0,
            payload: serde_json::json!({ "n": n, "quote": "it's \"fine\"" }),
            create_time: NOW + n,
        })
        .collect();
    let txn = store.db.begin().await.expect("begin");
    horizon::append(&txn, &events).await.expect("append");
    txn.commit().await.expect("commit");
    let payloads = horizon::payloads_after(store.conn(), EventKind::OrganizationUpdated, 0)
        .await
        .expect("payloads");
    let expected: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
    assert_eq!(payloads, expected);
    let rows = entity::events::Entity::find()
        .order_by_asc(entity::events::Column::Seq)
        .all(store.conn())
        .await
        .expect("rows");
    let requests: Vec<String> = rows.iter().map(|row| row.request_id.clone()).collect();
    let listed: Vec<String> = events.iter().map(|e| e.request_id.clone()).collect();
    assert_eq!(requests, listed);
    let head = reader::head(store.conn()).await.expect("head");
    assert_eq!(head, rows.last().expect("rows").seq);
    let row = rows
        .iter()
        .find(|row| row.request_id == "req_7")
        .expect("event 7");
    assert_eq!(
        (
            row.kind.as_str(),
            row.action.as_str(),
            row.actor.as_str(),
            row.organization_id.as_str(),
            row.resource_id.as_str(),
            row.audit,
            row.create_time,
        ),
        (
            "organization.updated",
            "UpdateOrganization",
            "user_7",
            "org_s",
            "org_s",
            false,
            NOW + 7
        )
    );
    assert!(row.id.starts_with("evt_"), "{}", row.id);
}

fn one_event(request_id: &str) -> orgs::events::NewEvent {
    orgs::events::NewEvent {
        kind: Some(orgs::domain::events::EventKind::OrganizationUpdated),
        action: "UpdateOrganization".into(),
        actor: "user_h".into(),
        on_behalf_of: String::new(),
        organization_id: "org_h".into(),
        resource_id: "org_h".into(),
        request_id: request_id.into(),
        audit: true,
        payload: serde_json::json!({}),
        create_time: NOW,
    }
}

async fn positions(store: &Store) -> Vec<(i64, String)> {
    entity::events::Entity::find()
        .order_by_asc(entity::events::Column::Seq)
        .all(store.conn())
        .await
        .expect("events")
        .into_iter()
        .map(|row| (row.seq, row.request_id))
        .collect()
}

/// PostgreSQL: a change that took a position and has not committed holds
/// the head of the log below it, though a later position committed; once it
/// ends, the head passes both, and the events read in position order.
#[tokio::test]
async fn an_open_change_holds_the_head_below_its_position() {
    use orgs::events::{horizon, reader};
    let store = Store::fresh(4).await;
    if !store.postgres() {
        return;
    }
    let first = store.db.begin().await.expect("begin");
    horizon::append(&first, &[one_event("first")])
        .await
        .expect("first takes its position");
    let second = store.db.begin().await.expect("begin");
    horizon::append(&second, &[one_event("second")])
        .await
        .expect("second takes a larger one");
    second.commit().await.expect("second commits first");
    let committed = positions(&store).await;
    assert_eq!(committed.len(), 1);

    let head = {
        let conn = store.conn().clone();
        tokio::spawn(async move { reader::head(&conn).await })
    };
    // A head found now would be the second's position, with the first's
    // event, below it, still to commit.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !head.is_finished(),
        "the head passed a position still in flight"
    );
    first.commit().await.expect("first commits");
    let head = head.await.expect("task").expect("head");
    let log = positions(&store).await;
    let order: Vec<&str> = log.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(order, ["first", "second"]);
    assert_eq!(head, log[1].0);
}

/// PostgreSQL: a change in flight that is the newest transaction of the
/// cluster holds the head back too. A snapshot does not list it (it lists
/// only transactions older than the newest one that ended), so a horizon
/// found from the snapshot's list alone passed its position, and a watch
/// reading up to it skipped its event for good. Ten rounds: each runs into
/// that case unless another transaction of the cluster ends in between.
#[tokio::test]
async fn the_newest_change_in_flight_holds_the_head_below_its_position() {
    use orgs::events::horizon::{self, Reach};
    let store = Store::fresh(4).await;
    if !store.postgres() {
        return;
    }
    for round in 0..10 {
        let open = store.db.begin().await.expect("begin");
        horizon::append(&open, &[one_event(&format!("open {round}"))])
            .await
            .expect("takes its position");
        let reach = horizon::reach(store.conn(), Some(std::time::Duration::from_millis(30)))
            .await
            .expect("reach");
        let taken = last_position_in(&open).await;
        assert!(
            matches!(reach, Reach::HeldBelow(position) if position >= taken),
            "round {round}: {reach:?} with the position {taken} in flight"
        );
        open.commit().await.expect("commit");
        let Reach::Horizon(head) = horizon::reach(store.conn(), None).await.expect("reach") else {
            panic!("no transaction is in flight any more");
        };
        assert_eq!(head, taken);
    }
}

/// The last position the transaction `txn` wrote.
async fn last_position_in(txn: &sea_orm::DatabaseTransaction) -> i64 {
    use sea_orm::QuerySelect;
    entity::events::Entity::find()
        .select_only()
        .column(entity::events::Column::Seq)
        .order_by_desc(entity::events::Column::Seq)
        .into_tuple::<i64>()
        .one(txn)
        .await
        .expect("read")
        .expect("an event")
}

/// PostgreSQL: during a rolling upgrade a replica of an earlier version
/// still stages its events in `pending_events`; they go straight into the
/// log, at positions from the sequence.
#[tokio::test]
async fn events_staged_by_an_earlier_version_reach_the_log() {
    use orgs::events::horizon;
    let store = Store::fresh(2).await;
    if !store.postgres() {
        return;
    }
    let txn = store.db.begin().await.expect("begin");
    horizon::append(&txn, &[one_event("new")])
        .await
        .expect("new");
    txn.commit().await.expect("commit");
    store
        .conn()
        .execute_unprepared(
            "INSERT INTO pending_events (id, kind, action, actor, on_behalf_of, organization_id, \
             resource_id, request_id, audit, payload, create_time) VALUES ('evt_old', \
             'organization.updated', 'UpdateOrganization', 'user_o', '', 'org_o', 'org_o', \
             'old', true, '{}', 1)",
        )
        .await
        .expect("an earlier version stages");
    let log = positions(&store).await;
    let order: Vec<&str> = log.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(order, ["new", "old"]);
    assert_eq!(
        entity::pending_events::Entity::find()
            .all(store.conn())
            .await
            .expect("pending")
            .len(),
        0
    );
}

/// PostgreSQL: a transaction left open in another database of the cluster
/// holds nothing back: the wait for the transactions in flight narrows to
/// this database's.
#[tokio::test]
async fn an_open_transaction_of_another_database_holds_nothing_back() {
    use orgs::events::{horizon, reader};
    let store = Store::fresh(2).await;
    if !store.postgres() {
        return;
    }
    let other = Db::connect(&common::fresh_database_url().await, 1)
        .await
        .expect("connect to another database");
    let open = other.begin().await.expect("begin");
    open.execute_unprepared("SELECT pg_current_xact_id()")
        .await
        .expect("a transaction with an id, left open");
    let txn = store.db.begin().await.expect("begin");
    horizon::append(&txn, &[one_event("here")])
        .await
        .expect("append");
    txn.commit().await.expect("commit");
    let head = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        reader::head(store.conn()),
    )
    .await
    .expect("the head is found while the other database's transaction is open")
    .expect("head");
    assert_eq!(head, positions(&store).await[0].0);
    open.rollback().await.expect("release");
}
