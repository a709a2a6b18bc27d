//! Bulk import of customers, written with set-based statements.
//!
//! - Duplicates within the file: the first line wins, later ones are rejected.
//! - Addresses that already have an account: skipped, updated or rejected (`OnConflict`); never
//!   a second account (the unique `email_key`, compared the way sign-in compares).
//! - PostgreSQL writes on a few connections at once (`--writers`), each address always on the
//!   same one, each in one transaction committed at the end: an interrupted import leaves
//!   nothing (killed in the instant between two writers' commits, it leaves one writer's
//!   customers, whole, and a re-run adds the rest). A batch's addresses are looked up; the free ones go straight into `customers`
//!   (`COPY`) while the reader checks the next batch, and the rows whose address is taken (by
//!   an account or an earlier line) are held in a staging table and classified at the end.
//! - SQLite stages the whole file in a temporary table first (multi-row inserts), classifies,
//!   then inserts in chunks of [`SQLITE_CHUNK`] rows, each its own transaction, so a running
//!   server's writes get their turn between chunks; an interrupted import leaves whole
//!   customers only, and a re-run skips them.
//!
//! Both are idempotent: re-running the same file imports nothing new.

use chrono::{DateTime, Utc};
use domain::{
    Error, Result,
    admin::NewAudit,
    import::{ImportCounts, ImportedCustomer, OnConflict, Reject},
    stored_hash::{NATIVE_PREFIX, VOID_PASSWORD},
};
// Every statement here is built from constants (this file's and the domain's), never from
// input (rows travel as bound values or `COPY` data): that is what `AssertSqlSafe` asserts.
use sea_orm::sqlx::{self, AssertSqlSafe, Postgres, Sqlite, Transaction, pool::PoolConnection};

use crate::db::Backend;
use sea_orm::DatabaseConnection;

/// Rows per SQLite transaction when inserting.
pub const SQLITE_CHUNK: i64 = 20_000;

// SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT.
const SQLITE_ALL: &str = "import_stage WHERE true";
const SQLITE_CHUNK_ROWS: &str = "import_stage WHERE line > ?2 AND line <= ?3";

const COLUMNS: &str = "line, id, email, email_key, firstname, lastname, locale, created_at, password_hash, external_id, search_text";

/// How many connections a PostgreSQL import writes on at once when not told.
pub const DEFAULT_PG_WRITERS: usize = 2;

/// An import in progress, on connections of its own.
pub struct ImportSession {
    kind: Kind,
    now: DateTime<Utc>,
}

enum Kind {
    Postgres(Vec<PgWriter>),
    Sqlite {
        conn: PoolConnection<Sqlite>,
        staged: u64,
    },
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

/// Bulk import and export of customers.
#[derive(Debug, Clone)]
pub struct SqlImports {
    pub(crate) db: DatabaseConnection,
}

impl SqlImports {
    /// Opens an import. `now` is the imported customers' `password_changed_at` and
    /// `updated_at` (and `created_at` when the file has none). PostgreSQL writes on `writers`
    /// connections at once (at most the pool's size; each its own transaction, committed
    /// together at the end); SQLite on one.
    pub async fn begin_import(&self, now: DateTime<Utc>, writers: usize) -> Result<ImportSession> {
        let kind = match self.db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                let mut parts = Vec::new();
                // Each writer holds a pooled connection until the end: never more than the
                // pool has, or the last would wait for one that never comes back.
                let most = pool.options().get_max_connections().max(1) as usize;
                for _ in 0..writers.clamp(1, most) {
                    parts.push(PgWriter::start(pool, now).await?);
                }
                Kind::Postgres(parts)
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
                     password_hash TEXT NOT NULL, external_id TEXT, search_text TEXT NOT NULL)",
                ] {
                    sqlx::query(sql).execute(&mut *conn).await.map_err(err)?;
                }
                Kind::Sqlite { conn, staged: 0 }
            }
        };
        Ok(ImportSession { kind, now })
    }
}

/// One PostgreSQL writer: a transaction on its own connection, fed batches by a channel. Each
/// address always goes to the same writer (by a hash of its key), so the lines that share an
/// address are inserted in file order by one writer and the first one wins.
struct PgWriter {
    batches: tokio::sync::mpsc::Sender<Vec<ImportedCustomer>>,
    task: tokio::task::JoinHandle<Result<PgStaged>>,
}

/// A writer's transaction, still open, and what it did with its rows.
struct PgStaged {
    tx: Transaction<'static, Postgres>,
    rows: u64,
    inserted: u64,
    /// Rows whose address was taken (by an account or an earlier line), kept in
    /// `import_stage` for [`ImportSession::finish`].
    held: u64,
}

impl PgStaged {
    /// One batch, in file order. Addresses nobody has go straight into `customers` (`COPY`),
    /// with their lines in `import_lines`; rows whose address an account or an earlier line
    /// has are held in `import_stage`. An address registered by someone else between the
    /// look-up and the `COPY` fails the import as a whole (nothing is written; run it again).
    async fn write_batch(
        &mut self,
        rows: &[ImportedCustomer],
        now: DateTime<Utc>,
        buf: &mut String,
    ) -> Result<()> {
        let conn: &mut sqlx::PgConnection = &mut self.tx;
        let keys: Vec<&str> = rows.iter().map(|r| r.email.key()).collect();
        let taken: Vec<String> =
            sqlx::query_scalar("SELECT email_key FROM customers WHERE email_key = ANY($1)")
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await
                .map_err(err)?;
        let mut seen: std::collections::HashSet<&str> = taken.iter().map(String::as_str).collect();
        let (mut fresh, mut held) = (Vec::with_capacity(rows.len()), Vec::new());
        for r in rows {
            if seen.insert(r.email.key()) {
                fresh.push(r);
            } else {
                held.push(r);
            }
        }
        if !fresh.is_empty() {
            buf.clear();
            copy_rows(buf, &fresh, Some(now));
            self.inserted += copy_in(conn, CUSTOMERS_COPY, buf).await.map_err(|e| {
                match e.as_database_error().and_then(|d| d.code()) {
                    Some(code) if code == "23505" => Error::internal(
                        "import: an address in this file was registered while the import \
                         ran; nothing was written, run the import again",
                    ),
                    _ => err(e),
                }
            })?;
            buf.clear();
            for r in &fresh {
                copy_text(buf, Some(r.email.key()));
                let _ = std::fmt::Write::write_fmt(buf, format_args!("\t{}\n", r.line));
            }
            copy_in(conn, "COPY import_lines (email_key, line) FROM STDIN", buf)
                .await
                .map_err(err)?;
        }
        if !held.is_empty() {
            buf.clear();
            copy_rows(buf, &held, None);
            let sql = format!("COPY import_stage ({COLUMNS}) FROM STDIN");
            self.held += copy_in(conn, &sql, buf).await.map_err(err)?;
        }
        self.rows += rows.len() as u64;
        Ok(())
    }
}

/// The columns of a customer's `COPY` ([`copy_rows`] with a time).
const CUSTOMERS_COPY: &str = "COPY customers (id, email, email_key, firstname, lastname, \
     locale, created_at, password_hash, external_id, password_changed_at, failed_sign_ins, \
     updated_at, search_text) FROM STDIN";

/// Sends `data` with a `COPY … FROM STDIN`; the rows copied.
async fn copy_in(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    data: &str,
) -> std::result::Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(sql).await?;
    if let Err(e) = copy.send(data.as_bytes()).await {
        let _ = copy.abort("send failed").await;
        return Err(e);
    }
    copy.finish().await
}

impl PgWriter {
    async fn start(pool: &sqlx::PgPool, now: DateTime<Utc>) -> Result<Self> {
        let mut tx = pool.begin().await.map_err(err)?;
        for sql in [
            "CREATE TEMP TABLE import_stage (line BIGINT NOT NULL, id UUID NOT NULL, \
             email TEXT NOT NULL, email_key TEXT NOT NULL, firstname TEXT NOT NULL, \
             lastname TEXT NOT NULL, locale TEXT NOT NULL, created_at TIMESTAMPTZ, \
             password_hash TEXT NOT NULL, external_id TEXT, search_text TEXT NOT NULL) \
             ON COMMIT DROP",
            "CREATE TEMP TABLE import_lines (email_key TEXT NOT NULL, line BIGINT NOT NULL) \
             ON COMMIT DROP",
            // The classification groups and joins the staging table by hashing.
            "SET LOCAL work_mem = '64MB'",
        ] {
            sqlx::query(sql).execute(&mut *tx).await.map_err(err)?;
        }
        let (batches, mut rx) = tokio::sync::mpsc::channel::<Vec<ImportedCustomer>>(2);
        let task = tokio::spawn(async move {
            let mut w = PgStaged {
                tx,
                rows: 0,
                inserted: 0,
                held: 0,
            };
            let mut buf = String::new();
            while let Some(rows) = rx.recv().await {
                w.write_batch(&rows, now, &mut buf).await?;
            }
            Ok(w)
        });
        Ok(Self { batches, task })
    }

    /// Hands a batch over; a writer that stopped answers with its error.
    async fn send(&mut self, rows: Vec<ImportedCustomer>) -> Result<()> {
        if self.batches.send(rows).await.is_ok() {
            return Ok(());
        }
        match (&mut self.task).await {
            Ok(Err(e)) => Err(e),
            _ => Err(writer_stopped()),
        }
    }

    /// No more batches: the writer's transaction, still open.
    async fn join(self) -> Result<PgStaged> {
        drop(self.batches);
        self.task.await.map_err(|_| writer_stopped())?
    }
}

fn writer_stopped() -> Error {
    Error::internal("import: a writer stopped")
}

/// Rows in `COPY … FROM STDIN` text format, written straight into `buf` (this runs once per
/// imported row: no allocation per field). Without `now`, staged rows in [`COLUMNS`] order;
/// with it, new customers in [`CUSTOMERS_COPY`] order (`now` also where the file has no
/// `created_at`).
fn copy_rows(buf: &mut String, rows: &[&ImportedCustomer], now: Option<DateTime<Utc>>) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    let time = |buf: &mut String, t: DateTime<Utc>| {
        let _ = write!(
            buf,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_micros()
        );
    };
    for r in rows {
        if now.is_none() {
            let _ = write!(buf, "{}\t", r.line);
        }
        let mut id = uuid::Uuid::encode_buffer();
        buf.push_str(r.id.hyphenated().encode_lower(&mut id));
        buf.push('\t');
        for field in [
            r.email.as_str(),
            r.email.key(),
            &r.firstname,
            &r.lastname,
            r.locale.as_str(),
        ] {
            copy_text(buf, Some(field));
            buf.push('\t');
        }
        match r.created_at.or(now) {
            Some(t) => time(buf, t),
            None => buf.push_str("\\N"),
        }
        buf.push('\t');
        copy_text(buf, Some(&r.password_hash));
        buf.push('\t');
        copy_text(buf, r.external_id.as_deref());
        if let Some(now) = now {
            buf.push('\t');
            time(buf, now);
            buf.push_str("\t0\t");
            time(buf, now);
        }
        buf.push('\t');
        copy_text(buf, Some(&r.search_text()));
        buf.push('\n');
    }
}

/// One value in `COPY … FROM STDIN` text format.
fn copy_text(out: &mut String, value: Option<&str>) {
    let Some(v) = value else {
        out.push_str("\\N");
        return;
    };
    if !v
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(v);
        return;
    }
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

/// Which PostgreSQL writer takes an address: the same one for every line that has it.
fn writer_of(key: &str, writers: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    (BuildHasherDefault::<DefaultHasher>::default().hash_one(key) % writers as u64) as usize
}

impl ImportSession {
    /// Adds checked rows, in file order. PostgreSQL inserts them now (a row whose address is
    /// taken, by an earlier line or an account, is left for [`Self::finish`] to classify);
    /// SQLite stages them.
    pub async fn stage(&mut self, rows: Vec<ImportedCustomer>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match &mut self.kind {
            Kind::Postgres(writers) => {
                let n = writers.len();
                let mut parts: Vec<Vec<ImportedCustomer>> = (0..n)
                    .map(|_| Vec::with_capacity(rows.len() / n + 1))
                    .collect();
                for r in rows {
                    parts[writer_of(r.email.key(), n)].push(r);
                }
                for (writer, part) in writers.iter_mut().zip(parts) {
                    if !part.is_empty() {
                        writer.send(part).await?;
                    }
                }
            }
            Kind::Sqlite { conn, staged } => {
                // 11 binds a row: 500 rows stay far below SQLite's 32,766 variables.
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
                            .push_bind(r.external_id.clone())
                            .push_bind(r.search_text());
                    });
                    q.build().execute(&mut **conn).await.map_err(err)?;
                }
                *staged += rows.len() as u64;
            }
        }
        Ok(())
    }

    /// Classifies the rows not written yet and, unless `dry_run`, writes them and `audit`
    /// (whose detail becomes the counts) and commits. `rejected_before` is the count of rows
    /// the file's own checks rejected, for the audit entry.
    pub async fn finish(
        self,
        on_conflict: OnConflict,
        dry_run: bool,
        rejected_before: u64,
        mut audit: NewAudit,
    ) -> Result<ImportOutcome> {
        let now = self.now;
        match self.kind {
            Kind::Postgres(writers) => {
                let mut written = Vec::new();
                for w in writers {
                    written.push(w.join().await?);
                }
                // Every writer classifies the rows it held, all at once.
                let parts = futures::future::join_all(written.iter_mut().map(|w| async {
                    let mut part = if w.held == 0 {
                        ImportOutcome::default()
                    } else {
                        let conn: &mut sqlx::PgConnection = &mut w.tx;
                        classify(conn, on_conflict, now, Backend::Postgres).await?
                    };
                    part.settle(w.inserted, w.rows);
                    Ok::<_, Error>(part)
                }))
                .await;
                let mut outcome = ImportOutcome::default();
                for part in parts {
                    outcome.absorb(part?);
                }
                if dry_run {
                    for w in written {
                        w.tx.rollback().await.map_err(err)?;
                    }
                    return Ok(outcome);
                }
                // The audit entry commits with the last writer: an import whose entry is
                // there committed whole.
                audit.detail = Some(outcome.with_file_rejects(rejected_before).detail());
                let Some(mut last) = written.pop() else {
                    return Err(writer_stopped());
                };
                for w in written {
                    w.tx.commit().await.map_err(err)?;
                }
                (&mut *last.tx as &mut sqlx::PgConnection)
                    .audit(&audit)
                    .await?;
                last.tx.commit().await.map_err(err)?;
                Ok(outcome)
            }
            Kind::Sqlite { mut conn, staged } => {
                let result = sqlite_finish(
                    &mut conn,
                    on_conflict,
                    dry_run,
                    now,
                    staged,
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

    /// Adds one PostgreSQL writer's outcome.
    fn absorb(&mut self, part: ImportOutcome) {
        self.counts.imported += part.counts.imported;
        self.counts.updated += part.counts.updated;
        self.counts.skipped += part.counts.skipped;
        self.counts.rejected += part.counts.rejected;
        self.rejects.extend(part.rejects);
    }

    fn with_file_rejects(&self, rejected_before: u64) -> ImportCounts {
        ImportCounts {
            rejected: self.counts.rejected + rejected_before,
            ..self.counts
        }
    }
}

/// SQLite: inserts the staged rows of `from` as new customers; an address that has an
/// account is left alone.
fn insert_sql(from: &str) -> String {
    format!(
        "INSERT INTO customers (id, email, email_key, firstname, lastname, locale, password_hash, \
         password_changed_at, failed_sign_ins, locked_until, created_at, updated_at, external_id, \
         search_text) \
         SELECT id, email, email_key, firstname, lastname, locale, password_hash, ?1, 0, NULL, \
         COALESCE(created_at, ?1), ?1, external_id, search_text FROM {from} \
         ON CONFLICT (email_key) DO NOTHING"
    )
}

/// Updates the customers whose address a staged row has. Only rows that change something
/// count as updated; the hash only while the customer has not set a password in Latchkey.
fn update_sql(dialect: Backend) -> String {
    let (distinct, now_param) = match dialect {
        Backend::Postgres => ("IS DISTINCT FROM", "$1"),
        Backend::Sqlite => ("IS NOT", "?1"),
    };
    // Never over a password set in Latchkey, nor over one voided on purpose
    // (`VOID_PASSWORD`): whoever was shut out may know the old platform's password.
    let new_hash = format!(
        "CASE WHEN s.password_hash <> '' AND customers.password_hash \
         NOT LIKE '{NATIVE_PREFIX}%' AND customers.password_hash <> '{VOID_PASSWORD}' \
         THEN s.password_hash ELSE customers.password_hash END"
    );
    format!(
        "UPDATE customers SET firstname = s.firstname, lastname = s.lastname, \
         search_text = s.search_text, \
         locale = s.locale, external_id = COALESCE(s.external_id, customers.external_id), \
         password_hash = {new_hash}, updated_at = {now_param} \
         FROM import_stage s WHERE customers.email_key = s.email_key AND ( \
         customers.firstname <> s.firstname OR customers.lastname <> s.lastname \
         OR customers.locale <> s.locale \
         OR customers.external_id {distinct} COALESCE(s.external_id, customers.external_id) \
         OR customers.password_hash <> {new_hash})"
    )
}

/// Before inserting: rejects duplicates within the file (the first line wins) and, with
/// `OnConflict::Reject`, rows whose address has an account; updates existing customers with
/// `OnConflict::Update`. Rejected rows leave the staging table.
async fn classify<DB>(
    conn: &mut DB,
    on_conflict: OnConflict,
    now: DateTime<Utc>,
    dialect: Backend,
) -> Result<ImportOutcome>
where
    DB: Exec,
{
    let mut outcome = ImportOutcome::default();
    // SQLite groups by walking an index; PostgreSQL hashes the table in one pass.
    if dialect == Backend::Sqlite {
        conn.run("CREATE INDEX import_stage_key ON import_stage (email_key, line)")
            .await?;
    }
    // The addresses on more than one line, usually none: every line after the first. On
    // PostgreSQL the first may also be a line already inserted (`import_lines`).
    let later_lines = match dialect {
        Backend::Sqlite => {
            "SELECT s.line, f.first FROM import_stage s JOIN (SELECT email_key, \
             MIN(line) AS first FROM import_stage GROUP BY email_key HAVING COUNT(*) > 1) f \
             ON f.email_key = s.email_key WHERE s.line > f.first"
        }
        Backend::Postgres => {
            "SELECT s.line, COALESCE(l.line, f.first) FROM import_stage s JOIN (SELECT \
             email_key, MIN(line) AS first FROM import_stage GROUP BY email_key) f \
             ON f.email_key = s.email_key LEFT JOIN import_lines l \
             ON l.email_key = s.email_key WHERE l.line IS NOT NULL OR s.line > f.first"
        }
    };
    let later = conn.pairs(later_lines).await?;
    if !later.is_empty() {
        conn.run(&format!(
            "DELETE FROM import_stage WHERE line IN (SELECT line FROM ({later_lines}) d)"
        ))
        .await?;
    }
    for (line, first) in later {
        outcome.rejects.push((
            line as u64,
            Reject::DuplicateInFile {
                first_line: first as u64,
            },
        ));
    }
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
            outcome.counts.updated = conn.run_at(&update_sql(dialect), now).await?;
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
            let mut outcome = classify(conn, on_conflict, now, Backend::Sqlite).await?;
            let inserted = conn.run_at(&insert_sql(SQLITE_ALL), now).await?;
            outcome.settle(inserted, staged);
            Ok::<_, Error>(outcome)
        }
        .await;
        conn.run("ROLLBACK").await?;
        return result;
    }
    conn.run("BEGIN IMMEDIATE").await?;
    let classified = classify(conn, on_conflict, now, Backend::Sqlite).await;
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
        let sql = insert_sql(SQLITE_CHUNK_ROWS);
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

impl SqlImports {
    /// Refreshes the planner's statistics of the customers table after an import: before it,
    /// PostgreSQL estimated the grid's first page of 2,000,000 fresh rows at 119,686 and chose
    /// a plan for that. SQLite looks at a sample (`analysis_limit`), so this stays quick.
    pub async fn analyze_customers(&self) -> Result<()> {
        let sql = match self.db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => "ANALYZE customers",
            _ => "PRAGMA analysis_limit = 1000; ANALYZE customers",
        };
        sea_orm::ConnectionTrait::execute_unprepared(&self.db, sql)
            .await
            .map_err(crate::db::db_err)?;
        Ok(())
    }

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
            .map_err(crate::db::db_err)?;
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
