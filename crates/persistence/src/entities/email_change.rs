use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "email_changes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub old_email: String,
    pub old_email_key: String,
    pub new_email: String,
    pub new_email_key: String,
    #[sea_orm(unique)]
    pub confirm_hash: String,
    #[sea_orm(unique)]
    pub cancel_hash: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub cancel_until: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
    pub cancelled_at: Option<DateTimeUtc>,
    pub superseded_at: Option<DateTimeUtc>,
    /// SHA-256 of the link that lets the removed address give a frozen account back.
    #[sea_orm(unique)]
    pub release_hash: Option<String>,
    pub release_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
