use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub email: String,
    #[sea_orm(unique)]
    pub email_key: String,
    pub firstname: String,
    pub lastname: String,
    pub locale: String,
    pub password_hash: String,
    pub password_changed_at: DateTimeUtc,
    pub failed_sign_ins: i32,
    pub locked_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The customer's id on the platform they were imported from.
    pub external_id: Option<String>,
    /// The folded address and names the grid's search reads (`domain::search::search_text`);
    /// written with every change of the address or a name.
    pub search_text: String,
    /// Set when "this wasn't me" reverted a confirmed email change: no reset link is issued
    /// until an admin recovers the account.
    pub frozen_at: Option<DateTimeUtc>,
    pub reported_at: Option<DateTimeUtc>,
    /// Set when the customer signed in with a password on the breached list (the store
    /// signs such sign-ins in and asks for a new password); cleared by any new password.
    pub password_change_required_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::access_token::Entity")]
    AccessTokens,
}

impl Related<super::access_token::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AccessTokens.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
