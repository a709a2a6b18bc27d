//! Every repository of one database, built once: each owns its state (the limiter its key
//! turns, the reset repository its group-commit writer, the grid its search samples), and the
//! ones that write all the time share SQLite's one write turn.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    accounts::SqlAccounts, admin::SqlAdmin, admin_users::SqlAdminUsers, bulk::SqlBulk,
    cleanup::SqlCleanup, db::WriteTurn, email_change::SqlEmailChanges, erasure::SqlErasure,
    events::SqlEvents, factors::SqlFactors, grid::Grid, import::SqlImports, keys::SqlKeys,
    limits::SqlLimits, outbox::SqlOutbox, reports::SqlReports, resets::SqlResets,
    services::SqlServices, sessions::SqlSessions, settings::SqlSettings, sign_in::SqlCredentials,
};

/// The repositories, one per feature, each behind the domain's port(s) it implements.
#[derive(Debug, Clone)]
pub struct Stores {
    pub accounts: Arc<SqlAccounts>,
    /// Authentication's reads: the live session behind a token, customer or admin.
    pub sessions: Arc<SqlSessions>,
    pub credentials: Arc<SqlCredentials>,
    pub limits: Arc<SqlLimits>,
    pub settings: Arc<SqlSettings>,
    pub resets: Arc<SqlResets>,
    pub reports: Arc<SqlReports>,
    pub outbox: Arc<SqlOutbox>,
    pub email_changes: Arc<SqlEmailChanges>,
    pub erasure: Arc<SqlErasure>,
    pub admin: Arc<SqlAdmin>,
    pub admin_users: Arc<SqlAdminUsers>,
    /// Admins' second factors and recovery codes.
    pub factors: Arc<SqlFactors>,
    pub bulk: Arc<SqlBulk>,
    pub keys: Arc<SqlKeys>,
    pub services: Arc<SqlServices>,
    /// Security-event subscriptions and their deliveries.
    pub events: Arc<SqlEvents>,
    pub imports: Arc<SqlImports>,
    pub cleanup: Arc<SqlCleanup>,
}

fn backend_of(db: &DatabaseConnection) -> crate::Backend {
    match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => crate::Backend::Postgres,
        _ => crate::Backend::Sqlite,
    }
}

impl Stores {
    /// The signed-in check and the settings answer from `cache` where they may (by default
    /// every use reads the database).
    pub fn with_session_cache(mut self, db: DatabaseConnection, cache: crate::Coherence) -> Self {
        self.settings = Arc::new(SqlSettings {
            db: db.clone(),
            cache: cache.clone(),
        });
        self.sessions = Arc::new(SqlSessions::new(db, cache));
        self
    }

    pub fn new(db: DatabaseConnection) -> Self {
        let write_turn = WriteTurn::default();
        let grid = Grid::new(db.clone());
        Self {
            accounts: Arc::new(SqlAccounts::new(db.clone())),
            sessions: Arc::new(SqlSessions::new(
                db.clone(),
                crate::Coherence::disabled(db.clone(), backend_of(&db)),
            )),
            credentials: Arc::new(SqlCredentials { db: db.clone() }),
            limits: Arc::new(SqlLimits {
                db: db.clone(),
                key_turns: Default::default(),
            }),
            settings: Arc::new(SqlSettings {
                db: db.clone(),
                cache: crate::Coherence::disabled(db.clone(), backend_of(&db)),
            }),
            resets: Arc::new(SqlResets {
                db: db.clone(),
                reset_writer: Default::default(),
                write_turn: write_turn.clone(),
            }),
            reports: Arc::new(SqlReports { db: db.clone() }),
            outbox: Arc::new(SqlOutbox {
                db: db.clone(),
                write_turn: write_turn.clone(),
            }),
            email_changes: Arc::new(SqlEmailChanges { db: db.clone() }),
            erasure: Arc::new(SqlErasure { db: db.clone() }),
            admin: Arc::new(SqlAdmin {
                db: db.clone(),
                grid: grid.clone(),
            }),
            factors: Arc::new(SqlFactors { db: db.clone() }),
            admin_users: Arc::new(SqlAdminUsers { db: db.clone() }),
            bulk: Arc::new(SqlBulk {
                db: db.clone(),
                grid,
                write_turn: write_turn.clone(),
                bulk_cursors: Default::default(),
            }),
            keys: Arc::new(SqlKeys {
                db: db.clone(),
                write_turn: write_turn.clone(),
            }),
            events: Arc::new(SqlEvents {
                db: db.clone(),
                write_turn: write_turn.clone(),
            }),
            services: Arc::new(SqlServices {
                db: db.clone(),
                write_turn,
            }),
            imports: Arc::new(SqlImports { db: db.clone() }),
            cleanup: Arc::new(SqlCleanup { db }),
        }
    }
}
