use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub subscription_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub subject_kind: String,
    pub subject_id: Uuid,
    pub session_id: Option<Uuid>,
    pub reason: String,
    pub actor: String,
    pub priority: i16,
    pub occurred_at: DateTimeUtc,
    pub email: Option<String>,
    pub new_email: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub claim_id: Option<Uuid>,
    pub claimed_until: Option<DateTimeUtc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
