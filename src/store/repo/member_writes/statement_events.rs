//! The events a member write's own statement inserts (PostgreSQL).

use sea_orm::DbErr;
use sea_orm::sea_query::{
    Alias, Condition, Expr, InsertStatement, Query, SelectStatement, UnionType,
};

use crate::events::NewEvent;
use crate::events::horizon::{self, PAYLOAD_COLUMN};

/// The events of a member write that the write's own statement inserts
/// ([`super::insert_member`], [`super::insert_organization_with_creator`]): when the
/// membership is inserted (its place taken, or its organization inserted)
/// and its user is not active in the period. Then nothing the change does
/// after that statement takes a lock or writes an event, so their positions
/// are taken after every lock the change holds, as
/// [`crate::events::horizon`] needs, and the change saves the round trip of
/// appending them at its end. They take their positions in the order they
/// were added.
#[derive(Default)]
pub struct StatementEvents {
    /// Each event, with the text of its payload before and after the
    /// permissions where the statement puts in the membership's.
    rows: Vec<(NewEvent, Option<(String, String)>)>,
}

impl StatementEvents {
    /// Adds `event`, with its payload.
    pub fn add(&mut self, event: NewEvent) {
        self.rows.push((event, None));
    }

    /// Adds `event` of a new membership whose payload is `resource` (a JSON
    /// object) with the `permissions` of the membership's role.
    pub fn add_membership(
        &mut self,
        event: NewEvent,
        resource: &serde_json::Value,
    ) -> Result<(), DbErr> {
        let (before, after) = split_at_permissions(resource)?;
        self.rows.push((event, Some((before, after))));
        Ok(())
    }

    /// The events, in order (a membership's payload as it was before the
    /// statement: its permissions left empty).
    pub fn into_events(self) -> Vec<NewEvent> {
        self.rows.into_iter().map(|(event, _)| event).collect()
    }

    /// The insert of the events, where `condition` holds; `role` is the
    /// membership's, whose permissions a membership's payload holds.
    pub(super) fn insert(
        &self,
        role: &str,
        condition: Condition,
    ) -> Result<InsertStatement, DbErr> {
        let mut rows = self
            .rows
            .iter()
            .map(|(event, around)| event_row(event, around, role, condition.clone()));
        let Some(mut select) = rows.next() else {
            return Err(DbErr::Custom("a statement's events are none".into()));
        };
        for row in rows {
            select.union(UnionType::All, row);
        }
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new("events"))
            .columns(horizon::COLUMNS.split(", ").map(Alias::new))
            .select_from(select)
            .map_err(|err| DbErr::Custom(err.to_string()))?
            .returning_col(Alias::new("seq"));
        Ok(insert)
    }
}

/// One event's row as [`horizon::row`] writes it, where `condition` holds;
/// with `around_permissions`, a membership's payload: that text around the
/// permissions of `role`, listed as `serde_json` writes a list of strings.
fn event_row(
    event: &NewEvent,
    around_permissions: &Option<(String, String)>,
    role: &str,
    condition: Condition,
) -> SelectStatement {
    let mut select = Query::select();
    for (column, value) in horizon::row(event).into_iter().enumerate() {
        match around_permissions {
            Some((before, after)) if column == PAYLOAD_COLUMN => select.expr(Expr::cust_with_values(
                r#"$1 || coalesce((SELECT '[' || string_agg(to_json("permission_key")::text, ',' ORDER BY "permission_key") || ']' FROM "role_permissions" WHERE "role_key" = $2), '[]') || $3"#,
                [before.clone(), role.to_string(), after.clone()],
            )),
            _ => select.expr(Expr::val(value)),
        };
    }
    select.cond_where(condition).to_owned()
}

/// The compact JSON text of the object `resource` before and after the
/// value of its `permissions` key, in the order `serde_json` writes its keys.
fn split_at_permissions(resource: &serde_json::Value) -> Result<(String, String), DbErr> {
    let serde_json::Value::Object(fields) = resource else {
        return Err(DbErr::Custom("an event's payload is not an object".into()));
    };
    let mut before = String::from("{");
    let mut after = String::new();
    let mut seen = false;
    for (key, value) in fields {
        let entry = |text: &mut String| -> Result<(), DbErr> {
            let key = serde_json::to_string(key).map_err(|err| DbErr::Custom(err.to_string()))?;
            let value =
                serde_json::to_string(value).map_err(|err| DbErr::Custom(err.to_string()))?;
            text.push_str(&key);
            text.push(':');
            text.push_str(&value);
            Ok(())
        };
        if key == "permissions" {
            if before.len() > 1 {
                before.push(',');
            }
            before.push_str("\"permissions\":");
            seen = true;
        } else if seen {
            after.push(',');
            entry(&mut after)?;
        } else {
            if before.len() > 1 {
                before.push(',');
            }
            entry(&mut before)?;
        }
    }
    if !seen {
        return Err(DbErr::Custom(
            "an event's payload has no permissions".into(),
        ));
    }
    after.push('}');
    Ok((before, after))
}
