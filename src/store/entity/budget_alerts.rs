//! `budget_alerts`: one row per period and percentage of the budget that the
//! period's amount due reached; its key makes the alert happen once.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "budget_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub period: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub percent: i32,
    /// Minor units, when it was reached.
    pub amount_due: i64,
    /// Minor units.
    pub budget: i64,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
