//! The store's own suite, below the server: the repository functions that
//! hold invariants, each raced by concurrent transactions, and a round trip
//! of every entity and repository. The same tests run on SQLite (a file with
//! a pool of separate connections, write transactions begun with `BEGIN
//! IMMEDIATE` as the service does) and, when ORGS_TEST_DATABASE_URL names a
//! server, on PostgreSQL; each test gets a fresh database.

mod common;
// Entities against the schema, and round trips of every entity and
// repository; their files sit in tests/store/ (a file directly in tests/
// would be a test target of its own).
#[path = "store/migration.rs"]
mod migration;
#[path = "store/round_trip.rs"]
mod round_trip;
#[path = "store/schema.rs"]
mod schema;

use std::collections::BTreeSet;
use std::sync::Arc;

use orgs::domain::roles::{ADMIN_ROLE, MEMBER_ROLE, MEMBERSHIPS_MANAGE, MEMBERSHIPS_READ};
use orgs::store::repo::billing;
use orgs::store::repo::billing_members;
use orgs::store::repo::idempotency;
use orgs::store::repo::memberships::{self, MembershipFilter, MembershipRow};
use orgs::store::repo::organizations::{self, OrganizationRow};
use orgs::store::{self, Db};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend};
use tokio::sync::Barrier;

mod fixtures {
    //! Rows to start from.

    use super::*;

    pub const NOW: i64 = 1_764_547_200_000_000;
    pub const PERIOD: &str = "2025-12";

    pub fn organization(id: &str, max_allowed_memberships: i32) -> OrganizationRow {
        OrganizationRow {
            id: id.to_string(),
            name: format!("Organization {id}"),
            slug: id.replace('_', "-"),
            created_by: Some("user_creator".to_string()),
            max_allowed_memberships,
            members_count: 0,
            pending_invitations_count: 0,
            public_metadata: r#"{"plan":"team"}"#.to_string(),
            private_metadata: "{}".to_string(),
            create_time: NOW,
            update_time: NOW,
            revision: 1,
            external_id: None,
            deactivate_time: None,
        }
    }

    pub fn membership(organization_id: &str, user_id: &str, role: &str) -> MembershipRow {
        MembershipRow {
            id: format!("mem_{organization_id}_{user_id}"),
            organization_id: organization_id.to_string(),
            user_id: user_id.to_string(),
            role: role.to_string(),
            public_metadata: "{}".to_string(),
            private_metadata: r#"{"note":"x"}"#.to_string(),
            create_time: NOW,
            update_time: NOW,
            revision: 1,
            deactivate_time: None,
        }
    }
}

use fixtures::*;

/// A fresh, migrated database and a pool of `connections` to it.
struct Store {
    db: Db,
}

impl Store {
    async fn fresh(connections: u32) -> Store {
        let url = common::fresh_database_url().await;
        let db = Db::connect(&url, connections).await.expect("connect");
        db.migrate().await.expect("migrate");
        Store { db }
    }

    fn conn(&self) -> &DatabaseConnection {
        self.db.conn()
    }

    fn postgres(&self) -> bool {
        self.db.backend() == DbBackend::Postgres
    }

    async fn organization(&self, id: &str, max_allowed_memberships: i32) -> OrganizationRow {
        let row = organization(id, max_allowed_memberships);
        organizations::insert(self.conn(), &row)
            .await
            .expect("insert organization");
        row
    }

    /// Adds a member the way the service does: a place, then the row.
    async fn member(&self, organization_id: &str, user_id: &str, role: &str) -> MembershipRow {
        let txn = self.db.begin().await.expect("begin");
        assert!(
            organizations::take_membership_place(&txn, organization_id)
                .await
                .expect("take place")
        );
        let row = membership(organization_id, user_id, role);
        memberships::insert(&txn, &row)
            .await
            .expect("insert membership");
        txn.commit().await.expect("commit");
        row
    }
}

/// Begins a write transaction as the service does, together with the other
/// racers. On PostgreSQL every racer begins and then meets the others at the
/// barrier, so the statements that follow overlap. On SQLite `BEGIN IMMEDIATE`
/// is itself where writers queue for the database lock, so there the racers
/// meet first and then all ask for it at once.
async fn begin_together(store: &Store, barrier: &Barrier) -> DatabaseTransaction {
    if store.postgres() {
        let txn = store.db.begin().await.expect("begin");
        barrier.wait().await;
        txn
    } else {
        barrier.wait().await;
        store.db.begin().await.expect("begin")
    }
}

/// Runs `racers` copies of `race` at once, each with its index, and returns
/// their results in index order. The store's pool needs a connection per
/// racer, as every racer holds one from the barrier on.
async fn race<T, F, Fut>(store: &Arc<Store>, racers: usize, race: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<Store>, Arc<Barrier>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(racers));
    let tasks: Vec<_> = (0..racers)
        .map(|i| tokio::spawn(race(store.clone(), barrier.clone(), i)))
        .collect();
    let mut results = Vec::with_capacity(racers);
    for task in tasks {
        results.push(task.await.expect("racer panicked"));
    }
    results
}

// --- Invariants under concurrency -------------------------------------------

/// 20 transactions race for the places of an organization capped at 5: the
/// conditional UPDATE admits exactly 5, and the counter and rows agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_cap_holds_under_racing_transactions() {
    // A connection per racer: on PostgreSQL each holds one open from the
    // barrier until it commits.
    let store = Arc::new(Store::fresh(20).await);
    store.organization("org_capped", 5).await;

    let took = race(&store, 20, |store, barrier, i| async move {
        let txn = begin_together(&store, &barrier).await;
        let took = organizations::take_membership_place(&txn, "org_capped")
            .await
            .expect("take place");
        if took {
            let row = membership("org_capped", &format!("user_{i:02}"), MEMBER_ROLE);
            memberships::insert(&txn, &row).await.expect("insert");
        }
        txn.commit().await.expect("commit");
        took
    })
    .await;

    assert_eq!(took.iter().filter(|took| **took).count(), 5, "{took:?}");
    let stored = organizations::get(store.conn(), "org_capped")
        .await
        .expect("get")
        .expect("organization");
    assert_eq!(stored.members_count, 5);
    let filter = MembershipFilter {
        organization_id: Some(orgs::domain::ids::OrganizationId::from_stored("org_capped")),
        ..Default::default()
    };
    assert_eq!(
        memberships::count(store.conn(), &filter)
            .await
            .expect("count"),
        5
    );

    // A place given back is a place another member can take, once.
    organizations::release_membership_place(store.conn(), "org_capped")
        .await
        .expect("release");
    assert!(
        organizations::take_membership_place(store.conn(), "org_capped")
            .await
            .expect("take")
    );
    assert!(
        !organizations::take_membership_place(store.conn(), "org_capped")
            .await
            .expect("take")
    );
}

/// An organization without a cap (0) takes every member.
#[tokio::test]
async fn member_cap_zero_means_no_limit() {
    let store = Store::fresh(2).await;
    store.organization("org_open", 0).await;
    for _ in 0..30 {
        assert!(
            organizations::take_membership_place(store.conn(), "org_open")
                .await
                .expect("take")
        );
    }
    let stored = organizations::get(store.conn(), "org_open")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(stored.members_count, 30);
}

/// Two managers remove each other at once. Each transaction locks the
/// organization row (`get_for_update`) and then counts the managers, as the
/// service's last-admin guard does: the second sees the first's removal, so
/// exactly one passes and a manager remains. Repeated over several
/// organizations to give the race many chances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_manager_survives_two_racing_removals() {
    let store = Arc::new(Store::fresh(6).await);
    for round in 0..8 {
        let organization_id = format!("org_round_{round}");
        store.organization(&organization_id, 0).await;
        let managers = [
            store.member(&organization_id, "user_a", ADMIN_ROLE).await,
            store.member(&organization_id, "user_b", ADMIN_ROLE).await,
        ];
        store.member(&organization_id, "user_c", MEMBER_ROLE).await;
        let managers = Arc::new(managers);

        let removed = race(&store, 2, |store, barrier, i| {
            let managers = managers.clone();
            async move {
                let target = &managers[i];
                let txn = begin_together(&store, &barrier).await;
                organizations::get_for_update(&txn, &target.organization_id)
                    .await
                    .expect("lock")
                    .expect("organization");
                let holders = memberships::count_with_permission(
                    &txn,
                    &target.organization_id,
                    MEMBERSHIPS_MANAGE,
                )
                .await
                .expect("count managers");
                if holders <= 1 {
                    txn.rollback().await.expect("rollback");
                    return false;
                }
                assert!(memberships::delete(&txn, &target.id).await.expect("delete"));
                organizations::release_membership_place(&txn, &target.organization_id)
                    .await
                    .expect("release");
                txn.commit().await.expect("commit");
                true
            }
        })
        .await;

        assert_eq!(
            removed.iter().filter(|r| **r).count(),
            1,
            "round {round}: {removed:?}"
        );
        let left =
            memberships::count_with_permission(store.conn(), &organization_id, MEMBERSHIPS_MANAGE)
                .await
                .expect("count");
        assert_eq!(left, 1, "round {round}");
        let stored = organizations::get(store.conn(), &organization_id)
            .await
            .expect("get")
            .expect("organization");
        assert_eq!(stored.members_count, 2, "round {round}");
    }
}

/// Six users become active in one organization at once, each in its own
/// transaction that follows the service's counter path (first activity,
/// active member, usage counter, transition, period totals). Every racer
/// asks `mark_billable` regardless of what it read, so only the statement's
/// own condition keeps the transition single: exactly one records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn billable_transition_is_recorded_once() {
    let store = Arc::new(Store::fresh(8).await);
    let threshold = 2;

    let became = race(&store, 6, move |store, barrier, i| async move {
        let user = format!("user_{i}");
        let txn = begin_together(&store, &barrier).await;
        billing::lock_users(&txn, std::slice::from_ref(&user))
            .await
            .expect("lock");
        let new_users = billing::insert_activity(&txn, &[(PERIOD.into(), user.clone(), NOW)], NOW)
            .await
            .expect("activity");
        let new_members = billing::insert_active_members(
            &txn,
            &[(PERIOD.into(), "org_busy".into(), user.clone())],
            NOW,
        )
        .await
        .expect("active member");
        let after = billing::add_to_usage(
            &txn,
            &[("org_busy".into(), PERIOD.into(), new_members.len() as i64)],
        )
        .await
        .expect("usage");
        assert_eq!(after.len(), 1);
        let became = billing::mark_billable(&txn, "org_busy", PERIOD, threshold, NOW)
            .await
            .expect("mark");
        billing::ensure_period(&txn, PERIOD, NOW)
            .await
            .expect("period");
        billing::add_period_users(&txn, PERIOD, new_users.len() as i64)
            .await
            .expect("users");
        if became {
            billing::add_billable(&txn, PERIOD, 1)
                .await
                .expect("billable");
        }
        txn.commit().await.expect("commit");
        became
    })
    .await;

    assert_eq!(became.iter().filter(|b| **b).count(), 1, "{became:?}");
    let usage = billing::usage(store.conn(), "org_busy", PERIOD)
        .await
        .expect("usage")
        .expect("counters");
    assert_eq!(usage.active_member_count, 6);
    assert_eq!(usage.billable_since, Some(NOW));
    let totals = billing::period_totals(store.conn(), PERIOD)
        .await
        .expect("totals");
    assert_eq!(totals.monthly_active_users, 6);
    assert_eq!(totals.billable_organizations, 1);
    // Recorded already: asking again records nothing.
    assert!(
        !billing::mark_billable(store.conn(), "org_busy", PERIOD, threshold, NOW)
            .await
            .expect("mark")
    );
}

/// PostgreSQL: a first activity finds its period's row without waiting for
/// a change that holds it (an organization turning billable holds it until
/// its commit), and both changes count. SQLite has one writer: nothing there
/// waits for a row.
#[tokio::test]
async fn a_first_activity_does_not_wait_for_a_held_period_row() {
    let store = Store::fresh(4).await;
    if !store.postgres() {
        return;
    }
    assert!(
        billing::ensure_period(store.conn(), PERIOD, NOW)
            .await
            .expect("period")
    );
    let holder = store.db.begin().await.expect("begin");
    assert_eq!(
        billing::add_billable(&holder, PERIOD, 1)
            .await
            .expect("billable"),
        1
    );
    let other = store.db.begin().await.expect("begin");
    let patience = std::time::Duration::from_secs(10);
    let created = tokio::time::timeout(patience, billing::ensure_period(&other, PERIOD, NOW))
        .await
        .expect("the period's row is found without waiting for its holder")
        .expect("period");
    assert!(!created, "the period existed");
    billing::add_period_users(&other, PERIOD, 3)
        .await
        .expect("users");
    other.commit().await.expect("commit");
    holder.commit().await.expect("commit");
    let totals = billing::period_totals(store.conn(), PERIOD)
        .await
        .expect("totals");
    assert_eq!(totals.monthly_active_users, 3);
    assert_eq!(totals.billable_organizations, 1);
}

/// One user's first activity reported by six replicas at once: the inserts
/// decide, so exactly one sees the user as new and as a new active member,
/// and the counters move once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_activity_is_counted_once() {
    let store = Arc::new(Store::fresh(8).await);

    let counted = race(&store, 6, |store, barrier, i| async move {
        let user = "user_shared".to_string();
        let txn = begin_together(&store, &barrier).await;
        billing::lock_users(&txn, std::slice::from_ref(&user))
            .await
            .expect("lock");
        let new_users =
            billing::insert_activity(&txn, &[(PERIOD.into(), user.clone(), NOW + i as i64)], NOW)
                .await
                .expect("activity");
        let new_members =
            billing::insert_active_members(&txn, &[(PERIOD.into(), "org_one".into(), user)], NOW)
                .await
                .expect("active member");
        billing::add_to_usage(
            &txn,
            &[("org_one".into(), PERIOD.into(), new_members.len() as i64)],
        )
        .await
        .expect("usage");
        txn.commit().await.expect("commit");
        (new_users, new_members)
    })
    .await;

    let new_users: Vec<_> = counted
        .iter()
        .flat_map(|(users, _)| users.clone())
        .collect();
    let new_members: Vec<_> = counted
        .iter()
        .flat_map(|(_, members)| members.clone())
        .collect();
    assert_eq!(
        new_users,
        vec![(PERIOD.to_string(), "user_shared".to_string())]
    );
    assert_eq!(
        new_members,
        vec![(PERIOD.to_string(), "org_one".to_string())]
    );
    let usage = billing::usage(store.conn(), "org_one", PERIOD)
        .await
        .expect("usage")
        .expect("counters");
    assert_eq!(usage.active_member_count, 1);
    assert!(
        billing::is_active(store.conn(), PERIOD, "user_shared")
            .await
            .expect("active")
    );
}

/// What one user's first activities leave behind, table by table.
async fn billing_state(
    store: &Store,
) -> (
    Vec<orgs::store::entity::billing_user_activity::Model>,
    Vec<orgs::store::entity::billing_active_members::Model>,
    Vec<orgs::store::entity::billing_organization_usage::Model>,
    Vec<(i64, i64)>,
) {
    use orgs::store::entity::{
        billing_active_members, billing_organization_usage, billing_user_activity,
    };
    use sea_orm::{EntityTrait, QueryOrder};
    let activity = billing_user_activity::Entity::find()
        .order_by_asc(billing_user_activity::Column::Period)
        .order_by_asc(billing_user_activity::Column::UserId)
        .all(store.conn())
        .await
        .expect("activity");
    let members = billing_active_members::Entity::find()
        .order_by_asc(billing_active_members::Column::Period)
        .order_by_asc(billing_active_members::Column::OrganizationId)
        .order_by_asc(billing_active_members::Column::UserId)
        .all(store.conn())
        .await
        .expect("active members");
    let usage = billing_organization_usage::Entity::find()
        .order_by_asc(billing_organization_usage::Column::OrganizationId)
        .order_by_asc(billing_organization_usage::Column::Period)
        .all(store.conn())
        .await
        .expect("usage");
    let mut totals = Vec::new();
    for period in [PERIOD, PREVIOUS_PERIOD] {
        let row = billing::period_totals(store.conn(), period)
            .await
            .expect("totals");
        totals.push((row.monthly_active_users, row.billable_organizations));
    }
    (activity, members, usage, totals)
}

const PREVIOUS_PERIOD: &str = "2025-11";

/// Users new and known, members of active, deactivated and no
/// organizations, already active members, in a period with its totals row
/// and one without: what first activities do in one statement list (SQLite)
/// or in one statement after their locks (PostgreSQL) is what the
/// statements one by one do.
#[tokio::test]
async fn first_activities_in_fewer_statements_do_what_the_statements_one_by_one_do() {
    async fn prepared() -> Store {
        let store = Store::fresh(2).await;
        store.organization("org_a", 0).await;
        store.organization("org_b", 0).await;
        let mut closed = organization("org_closed", 0);
        closed.deactivate_time = Some(NOW);
        organizations::insert(store.conn(), &closed)
            .await
            .expect("insert organization");
        for (organization, user) in [
            ("org_a", "user_1"),
            ("org_b", "user_1"),
            ("org_a", "user_2"),
            ("org_closed", "user_2"),
            ("org_b", "user_3"),
            ("org_a", "user_known"),
            ("org_a", "user_counted"),
            ("org_b", "user_counted"),
        ] {
            memberships::insert(store.conn(), &membership(organization, user, MEMBER_ROLE))
                .await
                .expect("membership");
        }
        billing::ensure_period(store.conn(), PERIOD, NOW)
            .await
            .expect("period");
        billing::insert_activity(
            store.conn(),
            &[(PERIOD.into(), "user_known".into(), NOW)],
            NOW,
        )
        .await
        .expect("known activity");
        billing::insert_active_members(
            store.conn(),
            &[(PERIOD.into(), "org_a".into(), "user_counted".into())],
            NOW,
        )
        .await
        .expect("counted member");
        billing::add_to_usage(store.conn(), &[("org_a".into(), PERIOD.into(), 1)])
            .await
            .expect("usage");
        store
    }
    let rows: Vec<(String, String, i64)> = [
        (PREVIOUS_PERIOD, "user_1"),
        (PERIOD, "user_1"),
        (PERIOD, "user_2"),
        (PERIOD, "user_3"),
        (PERIOD, "user_counted"),
        (PERIOD, "user_known"),
        (PERIOD, "user_nowhere"),
    ]
    .into_iter()
    .map(|(period, user)| (period.to_string(), user.to_string(), NOW - 5))
    .collect();
    let later = NOW + 1_000;

    let one_list = prepared().await;
    let txn = one_list.db.begin().await.expect("begin");
    let activated = if one_list.postgres() {
        // PostgreSQL: the activity insert with its locks, then one
        // statement for the rest.
        assert!(
            billing::activate_sqlite(&txn, &rows, later)
                .await
                .expect("one list")
                .is_none()
        );
        let inserted = billing::insert_activity_and_lock_users(&txn, &rows, later)
            .await
            .expect("activity");
        billing::activate_inserted_postgres(&txn, &inserted, later)
            .await
            .expect("one statement")
            .expect("PostgreSQL takes the one statement")
    } else {
        billing::activate_sqlite(&txn, &rows, later)
            .await
            .expect("one list")
            .expect("SQLite takes the one list")
    };
    txn.commit().await.expect("commit");

    let one_by_one = prepared().await;
    let txn = one_by_one.db.begin().await.expect("begin");
    let inserted = billing::insert_activity(&txn, &rows, later)
        .await
        .expect("activity");
    let mut increments = std::collections::BTreeMap::<(String, String), i64>::new();
    for (period, organization) in billing::activate_memberships(&txn, &inserted, later)
        .await
        .expect("members")
    {
        *increments.entry((organization, period)).or_default() += 1;
    }
    let mut new_users = std::collections::BTreeMap::<String, i64>::new();
    for (period, _) in &inserted {
        *new_users.entry(period.clone()).or_default() += 1;
    }
    let mut existing_periods = Vec::new();
    for (period, added) in &new_users {
        if billing::add_users_to_existing_period(&txn, period, *added)
            .await
            .expect("period users")
        {
            existing_periods.push(period.clone());
        }
    }
    let increments: Vec<(String, String, i64)> = increments
        .into_iter()
        .map(|((organization, period), n)| (organization, period, n))
        .collect();
    let mut usage = billing::add_to_usage(&txn, &increments)
        .await
        .expect("usage");
    txn.commit().await.expect("commit");

    let sorted = |mut pairs: Vec<(String, String)>| {
        pairs.sort();
        pairs
    };
    assert_eq!(sorted(activated.inserted.clone()), sorted(inserted));
    let mut activated_usage = activated.usage.clone();
    activated_usage
        .sort_by(|a, b| (&a.organization_id, &a.period).cmp(&(&b.organization_id, &b.period)));
    usage.sort_by(|a, b| (&a.organization_id, &a.period).cmp(&(&b.organization_id, &b.period)));
    assert_eq!(activated_usage, usage);
    let mut activated_periods = activated.existing_periods.clone();
    activated_periods.sort();
    assert_eq!(activated_periods, existing_periods);
    assert_eq!(existing_periods, vec![PERIOD.to_string()]);
    // Five users new to the period (not user_known), four new active
    // members of org_a and org_b (not the closed one, not the one counted).
    assert_eq!(activated.inserted.len(), 6);
    let state = billing_state(&one_list).await;
    assert_eq!(state, billing_state(&one_by_one).await);
    assert_eq!(state.3[0].0, 5, "the period counts its five new users");

    if one_list.postgres() {
        return;
    }
    // A pair given twice is left to the statements one by one, which
    // count it once.
    let twice = vec![rows[6].clone(), rows[6].clone()];
    let txn = one_list.db.begin().await.expect("begin");
    assert!(
        billing::activate_sqlite(&txn, &twice, later)
            .await
            .expect("one list")
            .is_none()
    );
    txn.rollback().await.expect("rollback");
}

/// Eight calls with one request id claim it at once: one claim stands, the
/// others fail with a unique violation, and the stored answer is the
/// winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_claim_has_one_winner() {
    let store = Arc::new(Store::fresh(10).await);

    let outcomes = race(&store, 8, |store, barrier, i| async move {
        let txn = begin_together(&store, &barrier).await;
        match idempotency::claim(&txn, "svc", "req-1", "CreateOrganization", "fp", NOW).await {
            Ok(()) => {
                idempotency::store_response(&txn, "svc", "req-1", &format!("answer {i}"))
                    .await
                    .expect("store answer");
                txn.commit().await.expect("commit");
                Some(i)
            }
            Err(err) => {
                assert!(store::is_unique_violation(&err), "{err}");
                txn.rollback().await.expect("rollback");
                None
            }
        }
    })
    .await;

    let winners: Vec<usize> = outcomes.iter().flatten().copied().collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let stored = idempotency::get(store.conn(), "svc", "req-1", 0)
        .await
        .expect("get")
        .expect("claim");
    assert_eq!(stored.response, format!("answer {}", winners[0]));
    assert_eq!(stored.method, "CreateOrganization");
}

/// A claim in an open transaction holds off the others: they wait for it
/// (on PostgreSQL each waits on the claimer's uncommitted key, seen in
/// `pg_stat_activity`; on SQLite they wait for the database lock). If the
/// claimer rolls back, exactly one waiter takes the key and the rest fail
/// with a unique violation once that one commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_claim_waits_for_the_claimer() {
    let store = Arc::new(Store::fresh(8).await);
    let first = store.db.begin().await.expect("begin");
    idempotency::claim(&first, "svc", "req-2", "CreateMembership", "fp", NOW)
        .await
        .expect("first claim");

    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let txn = store.db.begin().await.expect("begin");
                match idempotency::claim(&txn, "svc", "req-2", "CreateMembership", "fp", NOW).await
                {
                    Ok(()) => {
                        idempotency::store_response(&txn, "svc", "req-2", &format!("waiter {i}"))
                            .await
                            .expect("store answer");
                        txn.commit().await.expect("commit");
                        true
                    }
                    Err(err) => {
                        assert!(store::is_unique_violation(&err), "{err}");
                        false
                    }
                }
            })
        })
        .collect();

    if store.postgres() {
        // Until the four are seen blocked on a lock; the bound only keeps a
        // broken run from hanging.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting = store::fetch_i64(
                store.conn(),
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                vec![],
            )
            .await
            .expect("pg_stat_activity");
            if waiting == 4 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{waiting} waiters blocked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
    }
    first.rollback().await.expect("rollback");

    let mut won = 0;
    for waiter in waiters {
        won += usize::from(waiter.await.expect("waiter"));
    }
    assert_eq!(won, 1);
    let stored = idempotency::get(store.conn(), "svc", "req-2", 0)
        .await
        .expect("get")
        .expect("claim");
    assert!(stored.response.starts_with("waiter "), "{stored:?}");
}
