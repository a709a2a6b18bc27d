//! The session log: every change that can make a cached signed-in check wrong appends a row
//! in its own transaction, written by triggers so that no path can forget it. A replica's
//! session cache follows the log (on PostgreSQL woken by `NOTIFY` on the channel
//! `latchkey_log_` followed by the md5 of the schema's name), and records in `replicas` when it last read it (`read_at`, the
//! database's clock) and until when it may trust its cache (`lease_until`). A revoking request
//! waits, after its commit, until every replica whose lease is running has read the log since.
//!
//! On SQLite the times in `replicas` are microseconds since 1970 by the host's clock (every
//! process on one SQLite file shares a host), and since one writer commits at a time, a
//! replica that has applied the log up to a number (`applied_seq`) has applied every commit
//! before it.
//!
//! Rows name a subject: `customer` (its row changed in a column the check reads, it was
//! deleted, or one of its sessions was revoked, expired early or deleted), `admin` (likewise),
//! or `keys` (the signing keys changed) and `settings`.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend as DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The customer columns the signed-in check reads (`Customer` in the domain).
const CUSTOMER_COLUMNS: &str = "email, firstname, lastname, locale, password_changed_at, \
     locked_until, frozen_at, reported_at, password_change_required_at";

/// The admin columns the signed-in check reads (`AdminUser`): not the failed sign-ins or the
/// lock, which a stranger can change by guessing.
const ADMIN_COLUMNS: &str = "username, role, email, disabled_at";

const POSTGRES: &str = r#"
CREATE TABLE session_log (
    seq BIGSERIAL PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    subject UUID NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE replicas (
    id UUID PRIMARY KEY,
    host VARCHAR(256) NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    read_at TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    applied_seq BIGINT NOT NULL
);
CREATE FUNCTION latchkey_session_log() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    k TEXT;
    s UUID;
BEGIN
    IF TG_TABLE_NAME = 'customers' THEN
        k := 'customer';
        IF TG_OP = 'DELETE' THEN s := OLD.id; ELSE s := NEW.id; END IF;
    ELSIF TG_TABLE_NAME = 'access_tokens' THEN
        k := 'customer';
        IF TG_OP = 'DELETE' THEN s := OLD.customer_id; ELSE s := NEW.customer_id; END IF;
    ELSIF TG_TABLE_NAME = 'admin_users' THEN
        k := 'admin';
        IF TG_OP = 'DELETE' THEN s := OLD.id; ELSE s := NEW.id; END IF;
    ELSIF TG_TABLE_NAME = 'admin_access_tokens' THEN
        k := 'admin';
        IF TG_OP = 'DELETE' THEN s := OLD.admin_id; ELSE s := NEW.admin_id; END IF;
    ELSIF TG_TABLE_NAME = 'signing_keys' THEN
        k := 'keys';
    ELSE
        k := 'settings';
    END IF;
    INSERT INTO session_log (kind, subject) VALUES (k, s);
    -- The table's own schema names the channel (hashed: a channel name is at most 63 bytes).
    PERFORM pg_notify('latchkey_log_' || md5(TG_TABLE_SCHEMA), '');
    RETURN NULL;
END
$fn$;
-- The log is the table's schema's whatever the search path of the session that writes.
ALTER FUNCTION latchkey_session_log() SET search_path = {SCHEMA};
CREATE TRIGGER session_log_customers_update AFTER UPDATE OF {CUSTOMER_COLUMNS} ON customers
    FOR EACH ROW WHEN (({CUSTOMER_OLD}) IS DISTINCT FROM ({CUSTOMER_NEW}))
    EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_customers_delete AFTER DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_access_tokens_update AFTER UPDATE OF revoked_at, expires_at ON access_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_access_tokens_delete AFTER DELETE ON access_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now())
    EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_admin_users_update AFTER UPDATE OF {ADMIN_COLUMNS} ON admin_users
    FOR EACH ROW WHEN (({ADMIN_OLD}) IS DISTINCT FROM ({ADMIN_NEW}))
    EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_admin_users_delete AFTER DELETE ON admin_users
    FOR EACH ROW EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_admin_tokens_update AFTER UPDATE OF revoked_at, expires_at ON admin_access_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_admin_tokens_delete AFTER DELETE ON admin_access_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now())
    EXECUTE FUNCTION latchkey_session_log();
-- Per row, so every log row is written by a transaction that already holds an id (the
-- followers' watermark relies on it).
CREATE TRIGGER session_log_signing_keys AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION latchkey_session_log();
CREATE TRIGGER session_log_settings AFTER INSERT OR UPDATE ON settings
    FOR EACH ROW EXECUTE FUNCTION latchkey_session_log();
"#;

const POSTGRES_DOWN: &str = "DROP TRIGGER session_log_customers_update ON customers; \
     DROP TRIGGER session_log_customers_delete ON customers; \
     DROP TRIGGER session_log_access_tokens_update ON access_tokens; \
     DROP TRIGGER session_log_access_tokens_delete ON access_tokens; \
     DROP TRIGGER session_log_admin_users_update ON admin_users; \
     DROP TRIGGER session_log_admin_users_delete ON admin_users; \
     DROP TRIGGER session_log_admin_tokens_update ON admin_access_tokens; \
     DROP TRIGGER session_log_admin_tokens_delete ON admin_access_tokens; \
     DROP TRIGGER session_log_signing_keys ON signing_keys; \
     DROP TRIGGER session_log_settings ON settings; \
     DROP FUNCTION latchkey_session_log(); DROP TABLE replicas; DROP TABLE session_log;";

const SQLITE: &str = r#"
CREATE TABLE session_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind VARCHAR(16) NOT NULL,
    subject BLOB NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE replicas (
    id BLOB PRIMARY KEY,
    host VARCHAR(256) NOT NULL,
    started_at BIGINT NOT NULL,
    read_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    applied_seq BIGINT NOT NULL
);
CREATE TRIGGER session_log_customers_update AFTER UPDATE OF {CUSTOMER_COLUMNS} ON customers
    FOR EACH ROW WHEN ({SQLITE_CHANGED})
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('customer', NEW.id); END;
CREATE TRIGGER session_log_customers_delete AFTER DELETE ON customers
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('customer', OLD.id); END;
CREATE TRIGGER session_log_access_tokens_update AFTER UPDATE OF revoked_at, expires_at ON access_tokens
    FOR EACH ROW WHEN OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('customer', NEW.customer_id); END;
CREATE TRIGGER session_log_access_tokens_delete AFTER DELETE ON access_tokens
    FOR EACH ROW WHEN OLD.revoked_at IS NULL
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('customer', OLD.customer_id); END;
CREATE TRIGGER session_log_admin_users_update AFTER UPDATE OF {ADMIN_COLUMNS} ON admin_users
    FOR EACH ROW WHEN ({SQLITE_ADMIN_CHANGED})
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('admin', NEW.id); END;
CREATE TRIGGER session_log_admin_users_delete AFTER DELETE ON admin_users
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('admin', OLD.id); END;
CREATE TRIGGER session_log_admin_tokens_update AFTER UPDATE OF revoked_at, expires_at ON admin_access_tokens
    FOR EACH ROW WHEN OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('admin', NEW.admin_id); END;
CREATE TRIGGER session_log_admin_tokens_delete AFTER DELETE ON admin_access_tokens
    FOR EACH ROW WHEN OLD.revoked_at IS NULL
    BEGIN INSERT INTO session_log (kind, subject) VALUES ('admin', OLD.admin_id); END;
CREATE TRIGGER session_log_signing_keys_insert AFTER INSERT ON signing_keys
    BEGIN INSERT INTO session_log (kind) VALUES ('keys'); END;
CREATE TRIGGER session_log_signing_keys_update AFTER UPDATE ON signing_keys
    BEGIN INSERT INTO session_log (kind) VALUES ('keys'); END;
CREATE TRIGGER session_log_signing_keys_delete AFTER DELETE ON signing_keys
    BEGIN INSERT INTO session_log (kind) VALUES ('keys'); END;
CREATE TRIGGER session_log_settings AFTER UPDATE ON settings
    BEGIN INSERT INTO session_log (kind) VALUES ('settings'); END;
"#;

const SQLITE_DOWN: &str = "DROP TRIGGER session_log_customers_update; \
     DROP TRIGGER session_log_customers_delete; DROP TRIGGER session_log_access_tokens_update; \
     DROP TRIGGER session_log_access_tokens_delete; DROP TRIGGER session_log_admin_users_update; \
     DROP TRIGGER session_log_admin_users_delete; DROP TRIGGER session_log_admin_tokens_update; \
     DROP TRIGGER session_log_admin_tokens_delete; DROP TRIGGER session_log_signing_keys_insert; \
     DROP TRIGGER session_log_signing_keys_update; DROP TRIGGER session_log_signing_keys_delete; \
     DROP TRIGGER session_log_settings; DROP TABLE replicas; DROP TABLE session_log;";

fn columns(list: &str, prefix: &str) -> String {
    list.split(", ")
        .map(|c| format!("{prefix}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sqlite_changed(list: &str) -> String {
    list.split(", ")
        .map(|c| format!("OLD.{c} IS NOT NEW.{c}"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => {
                let schema = db
                    .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                        DbBackend::Postgres,
                        "SELECT quote_ident(current_schema()) AS s",
                    ))
                    .await?
                    .ok_or_else(|| DbErr::Custom("no current schema".into()))?
                    .try_get::<String>("", "s")?;
                POSTGRES
                    .replace("{SCHEMA}", &schema)
                    .replace("{CUSTOMER_COLUMNS}", CUSTOMER_COLUMNS)
                    .replace("{CUSTOMER_OLD}", &columns(CUSTOMER_COLUMNS, "OLD"))
                    .replace("{CUSTOMER_NEW}", &columns(CUSTOMER_COLUMNS, "NEW"))
                    .replace("{ADMIN_COLUMNS}", ADMIN_COLUMNS)
                    .replace("{ADMIN_OLD}", &columns(ADMIN_COLUMNS, "OLD"))
                    .replace("{ADMIN_NEW}", &columns(ADMIN_COLUMNS, "NEW"))
            }
            _ => SQLITE
                .replace("{CUSTOMER_COLUMNS}", CUSTOMER_COLUMNS)
                .replace("{SQLITE_CHANGED}", &sqlite_changed(CUSTOMER_COLUMNS))
                .replace("{ADMIN_COLUMNS}", ADMIN_COLUMNS)
                .replace("{SQLITE_ADMIN_CHANGED}", &sqlite_changed(ADMIN_COLUMNS)),
        };
        db.execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => db.execute_unprepared(POSTGRES_DOWN).await?,
            _ => db.execute_unprepared(SQLITE_DOWN).await?,
        };
        Ok(())
    }
}
