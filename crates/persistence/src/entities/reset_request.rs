use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reset_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub email_key: String,
    pub link: String,
    pub token_hash: String,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    /// `reset`, or `sign_in` (a sign-in code request: no token, no link).
    pub purpose: String,
    /// Set when the request started a code flow (`code_flows`).
    pub flow_hash: Option<String>,
    pub code_hash: Option<String>,
    /// The raw code, until the request is resolved (like `link`).
    pub code: Option<String>,
    pub code_expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
