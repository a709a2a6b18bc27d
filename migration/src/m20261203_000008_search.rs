//! The customers grid's search, indexed: `customers.search_text` holds the folded address and
//! names (written by Latchkey with every customer, see `domain::search`; this migration
//! fills it for existing rows with its own copy of the rule as it was when it was written,
//! so it means the same whatever the domain's rule becomes), and each database
//! indexes it by trigrams so a substring search reads only the rows that can match.
//!
//! - PostgreSQL: the `pg_trgm` extension (trusted since PostgreSQL 13: the database's owner
//!   may create it) and a GIN index on `search_text`.
//! - SQLite: an FTS5 table with the trigram tokenizer over `customer_search`, a copy of
//!   `search_text` keyed by an `INTEGER PRIMARY KEY` (a plain table's rowid may change on
//!   `VACUUM`; this one may not), kept in step with `customers` by triggers.
//!
//! Existing rows are filled in here, in batches.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{DbBackend, Statement, Value},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

const BATCH: usize = 2000;

const SQLITE_UP: &[&str] = &[
    "CREATE TABLE customer_search (seq INTEGER PRIMARY KEY, \
     customer_id BLOB NOT NULL UNIQUE, search_text TEXT NOT NULL)",
    "INSERT INTO customer_search (customer_id, search_text) SELECT id, search_text FROM customers",
    "CREATE VIRTUAL TABLE customer_search_fts USING fts5(search_text, \
     content='customer_search', content_rowid='seq', tokenize='trigram', detail='none', \
     columnsize=0)",
    "INSERT INTO customer_search_fts (customer_search_fts) VALUES ('rebuild')",
    "CREATE TRIGGER customer_search_insert AFTER INSERT ON customers BEGIN \
     INSERT INTO customer_search (customer_id, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER customer_search_update AFTER UPDATE OF search_text ON customers BEGIN \
     UPDATE customer_search SET search_text = new.search_text WHERE customer_id = old.id; END",
    "CREATE TRIGGER customer_search_delete AFTER DELETE ON customers BEGIN \
     DELETE FROM customer_search WHERE customer_id = old.id; END",
    "CREATE TRIGGER customer_search_fts_insert AFTER INSERT ON customer_search BEGIN \
     INSERT INTO customer_search_fts (rowid, search_text) VALUES (new.seq, new.search_text); END",
    "CREATE TRIGGER customer_search_fts_delete AFTER DELETE ON customer_search BEGIN \
     INSERT INTO customer_search_fts (customer_search_fts, rowid, search_text) \
     VALUES ('delete', old.seq, old.search_text); END",
    "CREATE TRIGGER customer_search_fts_update AFTER UPDATE ON customer_search BEGIN \
     INSERT INTO customer_search_fts (customer_search_fts, rowid, search_text) \
     VALUES ('delete', old.seq, old.search_text); \
     INSERT INTO customer_search_fts (rowid, search_text) VALUES (new.seq, new.search_text); END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS customer_search_fts_update",
    "DROP TRIGGER IF EXISTS customer_search_fts_delete",
    "DROP TRIGGER IF EXISTS customer_search_fts_insert",
    "DROP TRIGGER IF EXISTS customer_search_delete",
    "DROP TRIGGER IF EXISTS customer_search_update",
    "DROP TRIGGER IF EXISTS customer_search_insert",
    "DROP TABLE IF EXISTS customer_search_fts",
    "DROP TABLE IF EXISTS customer_search",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .add_column(text(Customers::SearchText).default(""))
                    .to_owned(),
            )
            .await?;
        backfill(manager).await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                // Wherever the extension is (an operator may have created it in a schema of
                // its own), the index names its operator class there.
                let schema = match trgm_schema(manager).await? {
                    Some(schema) => schema,
                    None => {
                        db.execute_unprepared("CREATE EXTENSION pg_trgm")
                            .await
                            .map_err(|e| {
                                DbErr::Custom(format!(
                                    "the customers search needs PostgreSQL's pg_trgm extension \
                                     (PostgreSQL 13 or later lets the database's owner create \
                                     it; otherwise run CREATE EXTENSION pg_trgm as a \
                                     superuser): {e}"
                                ))
                            })?;
                        trgm_schema(manager).await?.ok_or_else(|| {
                            DbErr::Custom("pg_trgm was created but cannot be found".into())
                        })?
                    }
                };
                db.execute_unprepared(&format!(
                    "CREATE INDEX idx_customers_search ON customers \
                     USING gin (search_text \"{}\".gin_trgm_ops)",
                    schema.replace('"', "\"\"")
                ))
                .await?;
            }
            _ => {
                for sql in SQLITE_UP {
                    db.execute_unprepared(sql).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared("DROP INDEX IF EXISTS idx_customers_search")
                    .await?;
            }
            _ => {
                for sql in SQLITE_DOWN {
                    db.execute_unprepared(sql).await?;
                }
            }
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .drop_column(Customers::SearchText)
                    .to_owned(),
            )
            .await
    }
}

/// Computes `search_text` for the rows that exist, in id order, `BATCH` at a time.
async fn backfill(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let mut after: Option<Value> = None;
    loop {
        let (from, values) = match &after {
            None => (String::new(), vec![]),
            Some(last) => (
                format!("WHERE id > {}", placeholder(backend, 1)),
                vec![last.clone()],
            ),
        };
        let sql = format!(
            "SELECT id, email_key, firstname, lastname FROM customers {from} \
             ORDER BY id LIMIT {BATCH}"
        );
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tuples = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len() * 2);
        for row in &rows {
            let id: uuid::Uuid = row.try_get("", "id")?;
            let key: String = row.try_get("", "email_key")?;
            let first: String = row.try_get("", "firstname")?;
            let last: String = row.try_get("", "lastname")?;
            let (i, t) = (values.len() + 1, values.len() + 2);
            tuples.push(match backend {
                DbBackend::Postgres => format!("(${i}::uuid, ${t}::text)"),
                _ => format!("({}, {})", placeholder(backend, i), placeholder(backend, t)),
            });
            values.push(Value::from(id));
            values.push(Value::from(search_text(&key, &first, &last)));
            after = Some(Value::from(id));
        }
        let sql = format!(
            "UPDATE customers SET search_text = v.column2 FROM (VALUES {}) AS v \
             WHERE customers.id = v.column1",
            tuples.join(", ")
        );
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        if rows.len() < BATCH {
            return Ok(());
        }
    }
}

/// The schema pg_trgm is installed in, if it is.
async fn trgm_schema(manager: &SchemaManager<'_>) -> Result<Option<String>, DbErr> {
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT n.nspname AS schema FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'",
        ))
        .await?;
    row.map(|r| r.try_get::<String>("", "schema")).transpose()
}

fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    SearchText,
}

/// The search text's rule as of this migration (a frozen copy of `domain::search` of
/// 2026-12-03): NFKC, lower case, white space runs one space, trimmed.
fn fold(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let lower: String = raw.nfkc().collect::<String>().to_lowercase();
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The address, then the names in both orders, one per line (frozen with [`fold`]).
fn search_text(email_key: &str, firstname: &str, lastname: &str) -> String {
    let first = fold(firstname);
    let last = fold(lastname);
    let mut text = fold(email_key);
    for names in [[&first, &last], [&last, &first]] {
        text.push('\n');
        text.push_str(
            &names
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_frozen_rule_folds_width_case_and_both_name_orders() {
        assert_eq!(
            super::search_text("ｔａｎａｋａ@example.com", " Taro ", "TANAKA"),
            "tanaka@example.com\ntaro tanaka\ntanaka taro"
        );
        assert_eq!(super::fold("ﾀﾅｶ  太郎"), "タナカ 太郎");
    }
}
