use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "limit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub key: String,
    pub at: DateTimeUtc,
    /// When the event stops counting for every rule (cleanup deletes it then).
    pub expires_at: Option<DateTimeUtc>,
    /// Reserved and not yet kept or released (a password still being checked).
    pub in_flight: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
