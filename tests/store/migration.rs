//! The migration that lets unverified claims of one name coexist, run over a
//! database that has domains already: SQLite rebuilds the table, PostgreSQL
//! drops the constraint; the rows, their cascade from organizations and the
//! new uniqueness rules must all hold afterwards.

use super::*;
use orgs::store::migrations::Migrator;
use sea_orm_migration::MigratorTrait;

/// Migrations before the one under test.
const BEFORE_DOMAIN_CLAIMS: u32 = 5;

#[tokio::test]
async fn domain_claims_migration_keeps_rows_and_cascades() {
    let url = common::fresh_database_url().await;
    let db = Db::connect(&url, 2).await.expect("connect");
    Migrator::up(db.conn(), Some(BEFORE_DOMAIN_CLAIMS))
        .await
        .expect("older migrations");
    let conn = db.conn();
    for org in ["org_m", "org_n"] {
        store::execute(
            conn,
            "INSERT INTO organizations (id, name, slug, create_time, update_time) VALUES ($1, $1, $1, 1, 1)",
            orgs::values![org],
        )
        .await
        .expect("organization");
    }
    store::execute(
        conn,
        "INSERT INTO domains (id, organization_id, name, enrollment_mode, verified, code_hash, code_expire_time, create_time, update_time) \
         VALUES ('dom_m', 'org_m', 'm.example', 'manual_invitation', TRUE, NULL, NULL, 1, 1), \
                ('dom_n', 'org_n', 'n.example', 'automatic_invitation', FALSE, 'plain-sha256', 99, 2, 2)",
        vec![],
    )
    .await
    .expect("domains");

    Migrator::up(conn, None).await.expect("the rest");

    #[derive(Debug, PartialEq, sea_orm::FromQueryResult)]
    struct Row {
        id: String,
        name: String,
        verified: bool,
        code_hash: Option<String>,
        verification_strategy: String,
    }
    let rows: Vec<Row> = store::fetch_all(
        conn,
        "SELECT id, name, verified, code_hash, verification_strategy FROM domains ORDER BY id",
        vec![],
    )
    .await
    .expect("rows");
    assert_eq!(
        rows,
        vec![
            Row {
                id: "dom_m".into(),
                name: "m.example".into(),
                verified: true,
                code_hash: None,
                verification_strategy: "email_code".into(),
            },
            Row {
                id: "dom_n".into(),
                name: "n.example".into(),
                verified: false,
                code_hash: None,
                verification_strategy: "email_code".into(),
            },
        ],
        "rows kept; codes hashed the old way voided"
    );

    // Unverified claims of one name coexist; a second verified one does not.
    store::execute(
        conn,
        "INSERT INTO domains (id, organization_id, name, enrollment_mode, verified, create_time, update_time) \
         VALUES ('dom_n2', 'org_m', 'n.example', 'manual_invitation', FALSE, 3, 3)",
        vec![],
    )
    .await
    .expect("a second unverified claim of n.example");
    let err = store::execute(
        conn,
        "INSERT INTO domains (id, organization_id, name, enrollment_mode, verified, create_time, update_time) \
         VALUES ('dom_m2', 'org_n', 'm.example', 'manual_invitation', TRUE, 3, 3)",
        vec![],
    )
    .await
    .expect_err("a second verified m.example");
    assert!(store::is_unique_violation(&err), "{err:?}");

    // Deleting an organization still deletes its domains, and their attempts.
    store::execute(
        conn,
        "INSERT INTO domain_verification_attempts (id, domain_id, kind, create_time) VALUES ('a1', 'dom_n', 'failure', 5)",
        vec![],
    )
    .await
    .expect("attempt");
    store::execute(conn, "DELETE FROM organizations WHERE id = 'org_n'", vec![])
        .await
        .expect("delete organization");
    let left = store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM domains WHERE organization_id = 'org_n'",
        vec![],
    )
    .await
    .unwrap();
    let attempts = store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM domain_verification_attempts",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!((left, attempts), (0, 0));
    if db.backend() == DbBackend::Sqlite {
        let broken = store::fetch_i64(
            conn,
            "SELECT COUNT(*) FROM pragma_foreign_key_check",
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(broken, 0, "no dangling references after the rebuild");
    }
    db.close().await;
}

/// Migrations before the one that gives the organization count 64 rows.
const BEFORE_TOTALS_SHARDS: u32 = 11;

/// The organization count: its rows' ids and their sum.
async fn totals(conn: &sea_orm::DatabaseConnection) -> (Vec<i64>, i64) {
    let ids: Vec<i64> = store::fetch_all::<IdRow>(
        conn,
        "SELECT CAST(id AS BIGINT) AS id FROM billing_totals ORDER BY id",
        vec![],
    )
    .await
    .expect("rows")
    .into_iter()
    .map(|row| row.id)
    .collect();
    let sum = orgs::store::repo::billing::total_organizations(conn)
        .await
        .expect("sum");
    (ids, sum)
}

#[derive(sea_orm::FromQueryResult)]
struct IdRow {
    id: i64,
}

#[tokio::test]
async fn the_organization_count_keeps_its_sum_over_more_rows_and_back() {
    let url = common::fresh_database_url().await;
    let db = Db::connect(&url, 2).await.expect("connect");
    let conn = db.conn();
    Migrator::up(conn, Some(BEFORE_TOTALS_SHARDS))
        .await
        .expect("older migrations");
    store::execute(
        conn,
        "UPDATE billing_totals SET total_organizations = id WHERE id IN (1, 7, 16)",
        vec![],
    )
    .await
    .expect("counts");
    assert_eq!(totals(conn).await, ((1..=16).collect(), 24));

    Migrator::up(conn, None).await.expect("the rest");
    let shards = i64::from(orgs::store::repo::billing::TOTALS_SHARDS);
    assert_eq!(
        totals(conn).await,
        ((1..=shards).collect(), 24),
        "a row for every shard the writers pick, the sum kept"
    );
    store::execute(
        conn,
        "UPDATE billing_totals SET total_organizations = 5 WHERE id = 40",
        vec![],
    )
    .await
    .expect("a count on a new row");

    // Down to where it started, through every later migration's down too.
    let later = u32::try_from(Migrator::migrations().len()).expect("count") - BEFORE_TOTALS_SHARDS;
    Migrator::down(conn, Some(later)).await.expect("down");
    assert_eq!(totals(conn).await, ((1..=16).collect(), 29), "folded back");
    Migrator::up(conn, None).await.expect("up again");
}
