//! Entities match the schema the migrations create.

use super::*;
use orgs::store::entity;
use sea_orm::sea_query::ColumnType;
use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, IdenStatic, Iterable, PrimaryKeyToColumn,
};

#[derive(Debug, PartialEq, FromQueryResult)]
struct Column {
    name: String,
    data_type: String,
    nullable: bool,
}

/// The columns of a table as the database has them, in order: their
/// declared type and whether they take NULL.
async fn table_columns(store: &Store, table: &str) -> Vec<Column> {
    let sql = if store.postgres() {
        "SELECT column_name AS name, data_type, is_nullable = 'YES' AS nullable FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
    } else {
        "SELECT name, LOWER(type) AS data_type, \"notnull\" = 0 AS nullable FROM pragma_table_info($1) ORDER BY cid"
    };
    store::fetch_all(store.conn(), sql, vec![table.into()])
        .await
        .expect("table columns")
}

fn type_name(column_type: &ColumnType) -> &'static str {
    match column_type {
        ColumnType::Text => "text",
        ColumnType::BigInteger => "bigint",
        ColumnType::Integer => "integer",
        ColumnType::Boolean => "boolean",
        other => panic!("no column of the schema has type {other:?}"),
    }
}

/// The names of the entity's primary-key columns.
fn key_columns<E: EntityTrait>() -> Vec<String> {
    E::PrimaryKey::iter()
        .map(|key| key.into_column().as_str().to_string())
        .collect()
}

/// The entity's columns, in declaration order, as the database would
/// list them.
fn entity_columns<E: EntityTrait>() -> Vec<Column> {
    E::Column::iter()
        .map(|column| {
            let def = column.def();
            Column {
                name: column.as_str().to_string(),
                data_type: type_name(def.get_column_type()).to_string(),
                nullable: def.is_null(),
            }
        })
        .collect()
}

async fn check<E: EntityTrait>(store: &Store, checked: &mut BTreeSet<String>) {
    let table = E::default().table_name().to_string();
    let keys = key_columns::<E>();
    assert!(!keys.is_empty(), "{table} has a primary key");
    // SQLite reports a primary key not declared NOT NULL as nullable
    // (it does not enforce it there); PostgreSQL never does. Keys are
    // compared by name and type only.
    let mut in_database = table_columns(store, &table).await;
    for column in &mut in_database {
        if keys.contains(&column.name) {
            column.nullable = false;
        }
    }
    assert_eq!(entity_columns::<E>(), in_database, "entity of {table}");
    checked.insert(table);
}

/// Every table of the migrations has an entity with its columns in
/// order, their types and their nullability.
#[tokio::test]
async fn entities_have_the_columns_of_their_tables() {
    let store = Store::fresh(2).await;
    let mut checked = BTreeSet::new();
    check::<entity::organizations::Entity>(&store, &mut checked).await;
    check::<entity::roles::Entity>(&store, &mut checked).await;
    check::<entity::permissions::Entity>(&store, &mut checked).await;
    check::<entity::role_permissions::Entity>(&store, &mut checked).await;
    check::<entity::memberships::Entity>(&store, &mut checked).await;
    check::<entity::events::Entity>(&store, &mut checked).await;
    check::<entity::event_sequence::Entity>(&store, &mut checked).await;
    check::<entity::event_pruning::Entity>(&store, &mut checked).await;
    check::<entity::idempotency_keys::Entity>(&store, &mut checked).await;
    check::<entity::invitations::Entity>(&store, &mut checked).await;
    check::<entity::domains::Entity>(&store, &mut checked).await;
    check::<entity::domain_verification_attempts::Entity>(&store, &mut checked).await;
    check::<entity::membership_requests::Entity>(&store, &mut checked).await;
    check::<entity::billing_user_activity::Entity>(&store, &mut checked).await;
    check::<entity::billing_active_members::Entity>(&store, &mut checked).await;
    check::<entity::billing_organization_usage::Entity>(&store, &mut checked).await;
    check::<entity::billing_periods::Entity>(&store, &mut checked).await;
    check::<entity::billing_totals::Entity>(&store, &mut checked).await;
    check::<entity::billing_period_users::Entity>(&store, &mut checked).await;
    check::<entity::server_keys::Entity>(&store, &mut checked).await;
    check::<entity::removed_domain_claims::Entity>(&store, &mut checked).await;
    check::<entity::budget_alerts::Entity>(&store, &mut checked).await;
    check::<entity::deleted_organizations::Entity>(&store, &mut checked).await;
    check::<entity::pending_events::Entity>(&store, &mut checked).await;

    let sql = if store.postgres() {
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'seaql_migrations'"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
    };
    #[derive(FromQueryResult)]
    struct Table {
        name: String,
    }
    let tables: BTreeSet<String> = store::fetch_all::<Table>(store.conn(), sql, vec![])
        .await
        .expect("tables")
        .into_iter()
        .map(|table| table.name)
        .collect();
    assert_eq!(tables, checked);
}
