use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub reset_link_lifetime_hours: i32,
    pub reset_request_limit_method: String,
    pub max_reset_requests_per_hour: i32,
    pub min_seconds_between_reset_requests: i32,
    pub min_password_length: i32,
    pub required_character_classes: i32,
    pub allow_whitespace: bool,
    pub lockout_failures: i32,
    pub lockout_minutes: i32,
    pub customer_token_lifetime_minutes: i32,
    pub admin_token_lifetime_minutes: i32,
    pub max_failed_sign_ins_per_ip_per_hour: i32,
    pub max_registrations_per_ip_per_hour: i32,
    pub min_password_score: i32,
    pub reset_by_link: bool,
    pub reset_by_code: bool,
    pub reset_code_lifetime_minutes: i32,
    pub sign_in_by_code: bool,
    pub remember_browser_days: i32,
    pub network_v4_prefix: i32,
    pub network_v6_prefix: i32,
    pub challenge_after_name_failures: i32,
    pub challenge_after_network_failures: i32,
    pub challenge_max_number: i32,
    pub breached_password_sign_in: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
