//! Latchkey's schema, one file per change, written once for SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_customers;
mod m20261125_000002_access_tokens;
mod m20261125_000003_password_reset;
mod m20261125_000004_admin;
mod m20261201_000005_limits;
mod m20261201_000006_reset_requests;
mod m20261202_000007_import;
mod m20261203_000008_search;
mod m20261203_000009_bulk;
mod m20261204_000010_keys;
mod m20261205_000011_email_changes;
mod m20261205_000012_admin_users;
mod m20261206_000013_email_change_reservations;
mod m20261206_000014_frozen_accounts;
mod m20261206_000015_service_admin_tokens;
mod m20261206_000016_grid_orders;
mod m20261206_000017_limit_events_in_flight;
mod m20261206_000018_email_change_release;
mod m20261206_000019_code_flows;
mod m20261206_000020_reported_accounts;
mod m20261206_000021_admin_factors;
mod m20261206_000022_admin_device_grants;
mod m20261206_000023_attack_protection;
mod m20261206_000024_security_events;
mod m20261207_000025_session_log;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_customers::Migration),
            Box::new(m20261125_000002_access_tokens::Migration),
            Box::new(m20261125_000003_password_reset::Migration),
            Box::new(m20261125_000004_admin::Migration),
            Box::new(m20261201_000005_limits::Migration),
            Box::new(m20261201_000006_reset_requests::Migration),
            Box::new(m20261202_000007_import::Migration),
            Box::new(m20261203_000008_search::Migration),
            Box::new(m20261203_000009_bulk::Migration),
            Box::new(m20261204_000010_keys::Migration),
            Box::new(m20261205_000011_email_changes::Migration),
            Box::new(m20261205_000012_admin_users::Migration),
            Box::new(m20261206_000013_email_change_reservations::Migration),
            Box::new(m20261206_000014_frozen_accounts::Migration),
            Box::new(m20261206_000015_service_admin_tokens::Migration),
            Box::new(m20261206_000016_grid_orders::Migration),
            Box::new(m20261206_000017_limit_events_in_flight::Migration),
            Box::new(m20261206_000018_email_change_release::Migration),
            Box::new(m20261206_000019_code_flows::Migration),
            Box::new(m20261206_000020_reported_accounts::Migration),
            Box::new(m20261206_000021_admin_factors::Migration),
            Box::new(m20261206_000022_admin_device_grants::Migration),
            Box::new(m20261206_000023_attack_protection::Migration),
            Box::new(m20261206_000024_security_events::Migration),
            Box::new(m20261207_000025_session_log::Migration),
        ]
    }
}
