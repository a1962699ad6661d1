//! `removed_domain_claims`: unverified claims deleted because another
//! organization verified their name, remembered for a while so that a call
//! on one can say why it is gone (pruned as new ones come in).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "removed_domain_claims")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub domain_id: String,
    #[sea_orm(column_type = "Text")]
    pub organization_id: String,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    pub remove_time: i64,
}

/// No foreign key to `organizations` (see the migration): rows of a deleted
/// organization are pruned with the others.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
