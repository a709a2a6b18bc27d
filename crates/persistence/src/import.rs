//! Bulk import of customers: rows are staged in a temporary table (PostgreSQL `COPY`, SQLite
//! multi-row inserts), then classified and written with set-based statements.
//!
//! - Duplicates within the file: the first line wins, later ones are rejected.
//! - Addresses that already have an account: skipped, updated or rejected (`OnConflict`); never
//!   a second account (the unique `email_key`, compared the way sign-in compares).
//! - PostgreSQL writes everything in one transaction: an interrupted import leaves nothing.
//!   SQLite inserts in chunks of [`SQLITE_CHUNK`] rows, each its own transaction, so a running
//!   server's writes get their turn between chunks; an interrupted import leaves whole
//!   customers only, and a re-run skips them.
//!
//! Both are idempotent: re-running the same file imports nothing new.

use chrono::{DateTime, Utc};
use domain::{
    Error, Result,
    admin::NewAudit,
    import::{ImportCounts, ImportedCustomer, OnConflict, Reject},
};
// Every statement here is built from constants of this file, never from input (rows travel
// as bound values or `COPY` data): that is what `AssertSqlSafe` asserts.
use sea_orm::sqlx::{self, AssertSqlSafe, Postgres, Sqlite, Transaction, pool::PoolConnection};

use crate::SqlStore;

/// Rows per SQLite transaction when inserting.
pub const SQLITE_CHUNK: i64 = 20_000;

const COLUMNS: &str = "line, id, email, email_key, firstname, lastname, locale, created_at, password_hash, external_id";

enum Conn {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

/// An import in progress: rows staged so far, on one connection.
pub struct ImportSession {
    conn: Conn,
    staged: u64,
}

/// What [`ImportSession::finish`] found: the counts (rejections of the file's own checks not
/// included) and the rows it rejected itself, by line.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    pub counts: ImportCounts,
    pub rejects: Vec<(u64, Reject)>,
}

fn err(e: sqlx::Error) -> Error {
    Error::internal(format!("import: {e}"))
}

impl SqlStore {
    /// Opens an import: a connection of its own with an empty staging table.
    pub async fn begin_import(&self) -> Result<ImportSession> {
        let conn = match self.db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                let mut tx = self
                    .db
                    .get_postgres_connection_pool()
                    .begin()
                    .await
                    .map_err(err)?;
                sqlx::query(
                    "CREATE TEMP TABLE import_stage (line BIGINT NOT NULL, id UUID NOT NULL, \
                     email TEXT NOT NULL, email_key TEXT NOT NULL, firstname TEXT NOT NULL, \
                     lastname TEXT NOT NULL, locale TEXT NOT NULL, created_at TIMESTAMPTZ, \
                     password_hash TEXT NOT NULL, external_id TEXT) ON COMMIT DROP",
                )
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                Conn::Postgres(tx)
            }
            _ => {
                let mut conn = self
                    .db
                    .get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .map_err(err)?;
                // A temporary table lives in the connection's own temp database: staging
                // takes no lock on the main database.
                for sql in [
                    "DROP TABLE IF EXISTS temp.import_stage",
                    "CREATE TEMP TABLE import_stage (line INTEGER PRIMARY KEY, id BLOB NOT NULL, \
                     email TEXT NOT NULL, email_key TEXT NOT NULL, firstname TEXT NOT NULL, \
                     lastname TEXT NOT NULL, locale TEXT NOT NULL, created_at TEXT, \
                     password_hash TEXT NOT NULL, external_id TEXT)",
                ] {
                    sqlx::query(sql).execute(&mut *conn).await.map_err(err)?;
                }
                Conn::Sqlite(conn)
            }
        };
        Ok(ImportSession { conn, staged: 0 })
    }
}

/// One value in `COPY … FROM STDIN` text format.
fn copy_text(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

impl ImportSession {
    /// Adds checked rows to the staging table.
    pub async fn stage(&mut self, rows: &[ImportedCustomer]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match &mut self.conn {
            Conn::Postgres(tx) => {
                let mut buf = String::with_capacity(rows.len() * 160);
                for r in rows {
                    let created = r.created_at.map(|t| t.to_rfc3339());
                    let line = r.line.to_string();
                    let id = r.id.to_string();
                    let fields = [
                        Some(line.as_str()),
                        Some(id.as_str()),
                        Some(r.email.as_str()),
                        Some(r.email.key()),
                        Some(r.firstname.as_str()),
                        Some(r.lastname.as_str()),
                        Some(r.locale.as_str()),
                        created.as_deref(),
                        Some(r.password_hash.as_str()),
                        r.external_id.as_deref(),
                    ];
                    for (i, f) in fields.into_iter().enumerate() {
                        if i > 0 {
                            buf.push('\t');
                        }
                        copy_text(&mut buf, f);
                    }
                    buf.push('\n');
                }
                let mut copy = tx
                    .copy_in_raw(&format!("COPY import_stage ({COLUMNS}) FROM STDIN"))
                    .await
                    .map_err(err)?;
                if let Err(e) = copy.send(buf.as_bytes()).await {
                    let _ = copy.abort("send failed").await;
                    return Err(err(e));
                }
                copy.finish().await.map_err(err)?;
            }
            Conn::Sqlite(conn) => {
                // 10 binds a row: 500 rows stay far below SQLite's 32,766 variables.
                for chunk in rows.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<Sqlite>::new(format!(
                        "INSERT INTO import_stage ({COLUMNS}) "
                    ));
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.line as i64)
                            .push_bind(r.id)
                            .push_bind(r.email.as_str().to_owned())
                            .push_bind(r.email.key().to_owned())
                            .push_bind(r.firstname.clone())
                            .push_bind(r.lastname.clone())
                            .push_bind(r.locale.as_str())
                            .push_bind(r.created_at)
                            .push_bind(r.password_hash.clone())
                            .push_bind(r.external_id.clone());
                    });
                    q.build().execute(&mut **conn).await.map_err(err)?;
                }
            }
        }
        self.staged += rows.len() as u64;
        Ok(())
    }

    /// Classifies the staged rows and, unless `dry_run`, writes them and `audit` (whose detail
    /// becomes the counts). `rejected_before` is the count of rows the file's own checks
    /// rejected, for the audit entry.
    pub async fn finish(
        self,
        on_conflict: OnConflict,
        dry_run: bool,
        now: DateTime<Utc>,
        rejected_before: u64,
        mut audit: NewAudit,
    ) -> Result<ImportOutcome> {
        match self.conn {
            Conn::Postgres(mut tx) => {
                let conn: &mut sqlx::PgConnection = &mut tx;
                let mut outcome = classify(conn, on_conflict, now, Dialect::Postgres).await?;
                let inserted = conn.run_at(&insert_sql(Dialect::Postgres, ""), now).await?;
                outcome.settle(inserted, self.staged);
                if dry_run {
                    tx.rollback().await.map_err(err)?;
                } else {
                    audit.detail = Some(outcome.with_file_rejects(rejected_before).detail());
                    (&mut *tx as &mut sqlx::PgConnection).audit(&audit).await?;
                    tx.commit().await.map_err(err)?;
                }
                Ok(outcome)
            }
            Conn::Sqlite(mut conn) => {
                let result = sqlite_finish(
                    &mut conn,
                    on_conflict,
                    dry_run,
                    now,
                    self.staged,
                    rejected_before,
                    &mut audit,
                )
                .await;
                let _ = sqlx::query("DROP TABLE IF EXISTS temp.import_stage")
                    .execute(&mut *conn)
                    .await;
                result
            }
        }
    }
}

impl ImportOutcome {
    /// Skipped rows are the staged ones neither rejected here, inserted nor updated.
    fn settle(&mut self, inserted: u64, staged: u64) {
        self.counts.imported = inserted;
        let rejected_here = self.rejects.len() as u64;
        self.counts.skipped = staged
            .saturating_sub(rejected_here)
            .saturating_sub(inserted)
            .saturating_sub(self.counts.updated);
        self.counts.rejected = rejected_here;
    }

    fn with_file_rejects(&self, rejected_before: u64) -> ImportCounts {
        ImportCounts {
            rejected: self.counts.rejected + rejected_before,
            ..self.counts
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    Sqlite,
}

fn insert_sql(dialect: Dialect, chunk: &str) -> String {
    let now = match dialect {
        Dialect::Postgres => "$1",
        Dialect::Sqlite => "?1",
    };
    // `WHERE true`: SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT.
    format!(
        "INSERT INTO customers (id, email, email_key, firstname, lastname, locale, password_hash, \
         password_changed_at, failed_sign_ins, locked_until, created_at, updated_at, external_id) \
         SELECT id, email, email_key, firstname, lastname, locale, password_hash, {now}, 0, NULL, \
         COALESCE(created_at, {now}), {now}, external_id FROM import_stage WHERE true {chunk} \
         ON CONFLICT (email_key) DO NOTHING"
    )
}

/// Rejects duplicates within the file and, with `OnConflict::Reject`, rows whose address has
/// an account; updates existing customers with `OnConflict::Update`. Rejected rows leave the
/// staging table.
async fn classify<DB>(
    conn: &mut DB,
    on_conflict: OnConflict,
    now: DateTime<Utc>,
    dialect: Dialect,
) -> Result<ImportOutcome>
where
    DB: Exec,
{
    let mut outcome = ImportOutcome::default();
    conn.run("CREATE INDEX import_stage_key ON import_stage (email_key, line)")
        .await?;
    // A temporary table has no statistics until analysed: without them PostgreSQL plans the
    // joins below as if it held a handful of rows.
    if dialect == Dialect::Postgres {
        conn.run("ANALYZE import_stage").await?;
    }
    for (line, first) in conn
        .pairs(
            "SELECT s.line, MIN(f.line) FROM import_stage s JOIN import_stage f \
             ON f.email_key = s.email_key AND f.line < s.line GROUP BY s.line ORDER BY s.line",
        )
        .await?
    {
        outcome.rejects.push((
            line as u64,
            Reject::DuplicateInFile {
                first_line: first as u64,
            },
        ));
    }
    conn.run(
        "DELETE FROM import_stage WHERE EXISTS (SELECT 1 FROM import_stage f \
         WHERE f.email_key = import_stage.email_key AND f.line < import_stage.line)",
    )
    .await?;
    match on_conflict {
        OnConflict::Skip => {}
        OnConflict::Reject => {
            for (line, _) in conn
                .pairs(
                    "SELECT s.line, s.line FROM import_stage s JOIN customers c \
                     ON c.email_key = s.email_key ORDER BY s.line",
                )
                .await?
            {
                outcome.rejects.push((line as u64, Reject::Exists));
            }
            conn.run(
                "DELETE FROM import_stage WHERE EXISTS (SELECT 1 FROM customers c \
                 WHERE c.email_key = import_stage.email_key)",
            )
            .await?;
        }
        OnConflict::Update => {
            let (distinct, now_param) = match dialect {
                Dialect::Postgres => ("IS DISTINCT FROM", "$1"),
                Dialect::Sqlite => ("IS NOT", "?1"),
            };
            // Only rows that change something count as updated; the hash only while the
            // customer has not set a password in Latchkey.
            let new_hash = "CASE WHEN s.password_hash <> '' AND customers.password_hash \
                            NOT LIKE '$argon2id$v=19$%' THEN s.password_hash \
                            ELSE customers.password_hash END";
            let sql = format!(
                "UPDATE customers SET firstname = s.firstname, lastname = s.lastname, \
                 locale = s.locale, external_id = COALESCE(s.external_id, customers.external_id), \
                 password_hash = {new_hash}, updated_at = {now_param} \
                 FROM import_stage s WHERE customers.email_key = s.email_key AND ( \
                 customers.firstname <> s.firstname OR customers.lastname <> s.lastname \
                 OR customers.locale <> s.locale \
                 OR customers.external_id {distinct} COALESCE(s.external_id, customers.external_id) \
                 OR customers.password_hash <> {new_hash})"
            );
            outcome.counts.updated = conn.run_at(&sql, now).await?;
        }
    }
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
async fn sqlite_finish(
    conn: &mut PoolConnection<Sqlite>,
    on_conflict: OnConflict,
    dry_run: bool,
    now: DateTime<Utc>,
    staged: u64,
    rejected_before: u64,
    audit: &mut NewAudit,
) -> Result<ImportOutcome> {
    let conn: &mut sqlx::SqliteConnection = conn;
    if dry_run {
        // Everything in one transaction, rolled back: the counts are exact, nothing stays.
        conn.run("BEGIN IMMEDIATE").await?;
        let result = async {
            let mut outcome = classify(conn, on_conflict, now, Dialect::Sqlite).await?;
            let inserted = conn.run_at(&insert_sql(Dialect::Sqlite, ""), now).await?;
            outcome.settle(inserted, staged);
            Ok::<_, Error>(outcome)
        }
        .await;
        conn.run("ROLLBACK").await?;
        return result;
    }
    conn.run("BEGIN IMMEDIATE").await?;
    let classified = classify(conn, on_conflict, now, Dialect::Sqlite).await;
    let mut outcome = match classified {
        Ok(o) => o,
        Err(e) => {
            let _ = conn.run("ROLLBACK").await;
            return Err(e);
        }
    };
    conn.run("COMMIT").await?;
    let mut inserted = 0;
    let mut after = 0i64;
    loop {
        let upto: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(line) FROM (SELECT line FROM import_stage WHERE line > ?1 \
             ORDER BY line LIMIT ?2)",
        )
        .bind(after)
        .bind(SQLITE_CHUNK)
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
        let Some(upto) = upto else { break };
        conn.run("BEGIN IMMEDIATE").await?;
        let sql = insert_sql(Dialect::Sqlite, "AND line > ?2 AND line <= ?3");
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(after)
            .bind(upto)
            .execute(&mut *conn)
            .await;
        match done {
            Ok(r) => inserted += r.rows_affected(),
            Err(e) => {
                let _ = conn.run("ROLLBACK").await;
                return Err(err(e));
            }
        }
        conn.run("COMMIT").await?;
        after = upto;
    }
    outcome.settle(inserted, staged);
    audit.detail = Some(outcome.with_file_rejects(rejected_before).detail());
    conn.audit(audit).await?;
    Ok(outcome)
}

/// The few statement shapes import needs, on either driver's connection.
trait Exec {
    async fn run(&mut self, sql: &str) -> Result<u64>;
    async fn run_at(&mut self, sql: &str, now: DateTime<Utc>) -> Result<u64>;
    async fn pairs(&mut self, sql: &str) -> Result<Vec<(i64, i64)>>;
    async fn audit(&mut self, a: &NewAudit) -> Result<()>;
}

/// `Exec` on one driver's connection; `$audit` is the audit insert in its placeholders.
macro_rules! exec_for {
    ($conn:ty, $audit:expr) => {
        impl Exec for $conn {
            async fn run(&mut self, sql: &str) -> Result<u64> {
                Ok(sqlx::query(AssertSqlSafe(sql.to_owned()))
                    .execute(self)
                    .await
                    .map_err(err)?
                    .rows_affected())
            }
            async fn run_at(&mut self, sql: &str, now: DateTime<Utc>) -> Result<u64> {
                Ok(sqlx::query(AssertSqlSafe(sql.to_owned()))
                    .bind(now)
                    .execute(self)
                    .await
                    .map_err(err)?
                    .rows_affected())
            }
            async fn pairs(&mut self, sql: &str) -> Result<Vec<(i64, i64)>> {
                sqlx::query_as(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(self)
                    .await
                    .map_err(err)
            }
            async fn audit(&mut self, a: &NewAudit) -> Result<()> {
                sqlx::query($audit)
                    .bind(a.id)
                    .bind(a.at)
                    .bind(a.actor_id)
                    .bind(&a.actor)
                    .bind(a.action.as_str())
                    .bind(&a.detail)
                    .execute(self)
                    .await
                    .map_err(err)?;
                Ok(())
            }
        }
    };
}

exec_for!(
    sqlx::PgConnection,
    "INSERT INTO audit_log (id, at, actor_id, actor, action, customer_id, client_ip, detail) \
     VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)"
);
exec_for!(
    sqlx::SqliteConnection,
    "INSERT INTO audit_log (id, at, actor_id, actor, action, customer_id, client_ip, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL, ?6)"
);

/// One customer as `latchkey export customers` writes it (the import's columns).
#[derive(Clone)]
pub struct ExportedCustomer {
    pub id: uuid::Uuid,
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    pub locale: String,
    pub created_at: DateTime<Utc>,
    pub password_hash: String,
    pub external_id: Option<String>,
}

impl SqlStore {
    /// Customers in id order after `after`, at most `limit`: an export pages through the
    /// table with constant memory and never holds a long transaction.
    pub async fn export_page(
        &self,
        after: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<Vec<ExportedCustomer>> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

        use crate::entities::customer;
        let mut select = customer::Entity::find().order_by_asc(customer::Column::Id);
        if let Some(after) = after {
            select = select.filter(customer::Column::Id.gt(after));
        }
        let rows = select
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(crate::accounts::db_err)?;
        Ok(rows
            .into_iter()
            .map(|m| ExportedCustomer {
                id: m.id,
                email: m.email,
                firstname: m.firstname,
                lastname: m.lastname,
                locale: m.locale,
                created_at: m.created_at,
                password_hash: m.password_hash,
                external_id: m.external_id,
            })
            .collect())
    }
}
