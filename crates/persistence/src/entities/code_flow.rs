use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "code_flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub flow_hash: String,
    pub purpose: String,
    pub code_hash: String,
    pub email_key: String,
    pub customer_id: Option<Uuid>,
    pub reset_token_id: Option<Uuid>,
    pub attempts: i32,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
