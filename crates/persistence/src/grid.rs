//! Which customers a grid filter selects, as SQL: the customers grid's pages and counts, and
//! the selection a bulk action freezes.
//!
//! The search reads `customers.search_text` (`domain::search`), indexed by trigrams: a GIN
//! `gin_trgm_ops` index on PostgreSQL, the FTS5 table `customer_search_fts` on SQLite (see the
//! migration `m20261203_000008_search`). A page is found in one of two ways, whichever the
//! data makes cheap:
//!
//! 1. **Probe**: the first [`PROBE_ROWS`] rows in the page's order (the other filters
//!    applied), tested one by one. A common query ("tanaka", "gmail") fills the page here.
//! 2. **Index**: when the probe found less than a page, matches are rare, and the trigram
//!    index finds them all (few, by then) before they are sorted. The index is asked only for
//!    the query's rarest trigrams (in a sample of the customers); each customer's own text
//!    then decides, exactly (`strpos` / `instr`).
//!
//! `totalCount`: a first page that holds every match is its own count; otherwise at most
//! [`EXACT_COUNT_UP_TO`] + 1 matches are counted, and past that it is an estimate (a common
//! search alone: from the sample; otherwise PostgreSQL's planner, or SQLite's sample of
//! customers with the filters applied).

use chrono::{DateTime, Utc};
use domain::{
    Error, Result,
    admin::{CustomerFilter, EXACT_COUNT_UP_TO},
    search::Search,
    stored_hash::{NATIVE_PREFIX, PasswordState, VOID_PASSWORD},
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    QueryFilter, QuerySelect, QueryTrait, Statement,
    sea_query::{Alias, Expr, ExprTrait, IntoIden, LikeExpr, Query, SelectStatement},
};

use crate::{
    db::db_err,
    entities::{access_token, customer, password_reset_token},
};

/// Rows the probe reads before it asks the index.
pub(crate) const PROBE_ROWS: u64 = 2000;

/// Rows the sample of customers holds (for trigram counts and estimates).
const SAMPLE_ROWS: i64 = 2000;

/// Trigrams of a search the index is asked for (the rarest).
const TRIGRAMS_ASKED: usize = 3;

/// How long a trigram sample serves before it is taken again.
const SAMPLE_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// A sample of the customers' search text (`Grid::sample`).
#[derive(Debug)]
pub(crate) struct Sample {
    /// Customers there are (an estimate on PostgreSQL).
    total: u64,
    texts: Vec<String>,
    counts: std::collections::HashMap<String, u32>,
    taken: std::time::Instant,
}

/// SQLite: `"customer_search"."seq" IN (…)` for about [`SAMPLE_ROWS`] keys spread evenly
/// over `1..=total` (generated inside SQLite: binding thousands of values costs more than
/// reading the rows), and how many keys that is.
fn even_keys(total: u64) -> (Expr, u64) {
    let step = Ord::max(total / SAMPLE_ROWS as u64, 1);
    let keys = if total == 0 {
        0
    } else {
        (total - 1) / step + 1
    };
    (
        Expr::cust(format!(
            "\"customer_search\".\"seq\" IN (WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL \
             SELECT x + {step} FROM k WHERE x + {step} <= {total}) SELECT x FROM k)"
        )),
        keys,
    )
}

fn search_col() -> Expr {
    Expr::col((customer::Entity, customer::Column::SearchText))
}

/// The customers grid's filters and search over one database, with the state the search keeps
/// (asked once, or sampled now and then). The admin repository pages with it; bulk jobs freeze
/// their selections with it; both hold the same one.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    pub(crate) db: DatabaseConnection,
    /// PostgreSQL's pg_trgm word operator, when it serves here (asked once).
    trigram_words: std::sync::Arc<tokio::sync::OnceCell<Option<String>>>,
    /// A sample of the customers' search text, and when it was taken.
    trigram_sample: std::sync::Arc<tokio::sync::Mutex<Option<std::sync::Arc<Sample>>>>,
}

impl Grid {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            trigram_words: Default::default(),
            trigram_sample: Default::default(),
        }
    }

    pub(crate) fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// PostgreSQL's word-similarity operator, schema-qualified (`pg_trgm` may live in any
    /// schema), when `pg_trgm` sees letters outside ASCII here (it does not under an
    /// `LC_CTYPE` of `C`): only then can a one- or two-character query be answered from the
    /// index as "a word starts with it". Asked once.
    async fn word_operator(&self) -> Result<Option<String>> {
        let db = self.db.clone();
        self.trigram_words
            .get_or_try_init(|| async move {
                let row = db
                    .query_one_raw(Statement::from_string(
                        DatabaseBackend::Postgres,
                        "SELECT n.nspname AS schema FROM pg_extension e \
                         JOIN pg_namespace n ON n.oid = e.extnamespace \
                         WHERE e.extname = 'pg_trgm'",
                    ))
                    .await
                    .map_err(db_err)?;
                let Some(schema) = row
                    .map(|r| r.try_get::<String>("", "schema"))
                    .transpose()
                    .map_err(db_err)?
                else {
                    return Ok(None);
                };
                let schema = format!("\"{}\"", schema.replace('"', "\"\""));
                let row = db
                    .query_one_raw(Statement::from_string(
                        DatabaseBackend::Postgres,
                        format!("SELECT cardinality({schema}.show_trgm('佐藤')) > 0 AS ok"),
                    ))
                    .await
                    .map_err(db_err)?;
                let ok = row
                    .map(|r| r.try_get::<bool>("", "ok"))
                    .transpose()
                    .map_err(db_err)?
                    .unwrap_or(false);
                if !ok {
                    tracing::warn!(
                        "PostgreSQL's pg_trgm ignores letters outside ASCII in this database \
                         (its LC_CTYPE is C): searches of one or two characters read every \
                         customer, and searches in Japanese or Korean cannot use the index; \
                         a database created with a UTF-8 locale (e.g. C.UTF-8) avoids this"
                    );
                }
                Ok::<_, Error>(ok.then(|| format!("OPERATOR({schema}.<%)")))
            })
            .await
            .cloned()
    }

    /// The search, tested against a customer's own `search_text`: exact, and never an index
    /// condition (the probe reads rows one by one; after the index it is the recheck). On
    /// PostgreSQL a one- or two-character query also asks that a word start with it, which
    /// the GIN index answers (pg_trgm's word similarity: the word's padded first trigrams).
    async fn search_matches(&self, search: &Search) -> Result<Condition> {
        let q = search.as_str().to_owned();
        Ok(match self.backend() {
            DatabaseBackend::Postgres => {
                let within = Expr::cust_with_exprs(
                    "strpos($1, $2) > 0",
                    [search_col(), Expr::val(q.clone())],
                );
                match self.word_operator().await? {
                    Some(op) if search.is_short() => Condition::all().add(within).add(
                        Expr::cust_with_exprs(format!("$1 {op} $2"), [Expr::val(q), search_col()]),
                    ),
                    _ => Condition::all().add(within),
                }
            }
            _ => Condition::all().add(Expr::cust_with_exprs(
                "instr(?, ?) > 0",
                [search_col(), Expr::val(q)],
            )),
        })
    }

    /// Restricts `select` (over `customers`) to the search's matches through the index: the
    /// rarest few of the query's trigrams (in a sample of the customers) pick the candidates
    /// — both databases read every asked trigram's whole list, and one in every row costs
    /// tens of milliseconds at millions — and [`search_matches`](Self::search_matches) decides.
    pub(crate) async fn search_indexed(
        &self,
        select: &mut SelectStatement,
        search: &Search,
    ) -> Result<()> {
        let postgres = self.backend() == DatabaseBackend::Postgres;
        select.cond_where(self.search_matches(search).await?);
        if search.is_short() {
            // PostgreSQL: the word-start condition is the index's; SQLite: FTS5 would read
            // its whole index for fewer than three characters, the table is cheaper.
            return Ok(());
        }
        let sample = self.sample().await?;
        let chars: Vec<char> = search.as_str().chars().collect();
        let mut trigrams: Vec<String> = chars
            .windows(3)
            // pg_trgm indexes words: a trigram across a separator is not in its index.
            .filter(|w| !postgres || w.iter().all(|c| c.is_alphanumeric()))
            .map(|w| w.iter().collect::<String>())
            .collect();
        trigrams.sort();
        trigrams.dedup();
        trigrams.sort_by_key(|t| sample.counts.get(t).copied().unwrap_or(0));
        trigrams.truncate(TRIGRAMS_ASKED);
        if postgres {
            if trigrams.is_empty() {
                // No word of three letters: the whole pattern, for what pg_trgm makes of it.
                select.and_where(
                    search_col().like(LikeExpr::new(search.like_pattern()).escape('\\')),
                );
            }
            for t in trigrams {
                select.and_where(search_col().like(LikeExpr::new(format!("%{t}%"))));
            }
            return Ok(());
        }
        let fts = Alias::new("customer_search_fts").into_iden();
        let map = Alias::new("customer_search").into_iden();
        let phrase = trigrams
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" AND ");
        // The candidates first, from the index (a join would let SQLite walk the customers in
        // the page's order and ask the index row by row).
        let candidates = Query::select()
            .column((map.clone(), Alias::new("customer_id")))
            .from(fts.clone())
            .inner_join(
                map.clone(),
                Expr::col((map, Alias::new("seq"))).equals((fts, Alias::new("rowid"))),
            )
            .and_where(Expr::cust_with_values(
                // (SQLite's builder takes `?` in a template, PostgreSQL's `$1`.)
                "\"customer_search_fts\" MATCH ?",
                [phrase],
            ))
            .to_owned();
        select
            .and_where(Expr::col((customer::Entity, customer::Column::Id)).in_subquery(candidates));
        Ok(())
    }

    /// An even sample of the customers' search text and its trigram counts, taken every
    /// [`SAMPLE_AGE`]: which trigrams of a query are rare, and how common a query is.
    async fn sample(&self) -> Result<std::sync::Arc<Sample>> {
        let mut cached = self.trigram_sample.lock().await;
        if let Some(sample) = cached.as_ref()
            && sample.taken.elapsed() < SAMPLE_AGE
        {
            return Ok(sample.clone());
        }
        let backend = self.backend();
        let (total, statement) = match backend {
            DatabaseBackend::Postgres => {
                // Block sampling: a few pages read, wherever they are.
                let rows = self
                    .count_of(Statement::from_string(
                        backend,
                        "SELECT GREATEST(reltuples, 0)::bigint AS n FROM pg_class \
                         WHERE oid = 'customers'::regclass",
                    ))
                    .await?;
                let percent = if rows == 0 {
                    100.0
                } else {
                    (SAMPLE_ROWS as f64 * 100.0 / rows as f64).min(100.0)
                };
                (
                    rows,
                    Statement::from_string(
                        backend,
                        format!(
                            "SELECT search_text FROM customers TABLESAMPLE SYSTEM ({percent}) \
                             LIMIT {}",
                            SAMPLE_ROWS * 4
                        ),
                    ),
                )
            }
            _ => {
                let total = self
                    .count_of(Statement::from_string(
                        backend,
                        "SELECT COALESCE(MAX(seq), 0) AS n FROM customer_search",
                    ))
                    .await?;
                (
                    total,
                    backend.build(
                        &Query::select()
                            .column(Alias::new("search_text"))
                            .from(Alias::new("customer_search"))
                            .and_where(even_keys(total).0)
                            .to_owned(),
                    ),
                )
            }
        };
        let mut texts = Vec::new();
        let mut counts = std::collections::HashMap::new();
        for row in self.db.query_all_raw(statement).await.map_err(db_err)? {
            let text: String = row.try_get("", "search_text").map_err(db_err)?;
            let chars: Vec<char> = text.chars().collect();
            for w in chars.windows(3) {
                *counts.entry(w.iter().collect::<String>()).or_insert(0u32) += 1;
            }
            texts.push(text);
        }
        let sample = std::sync::Arc::new(Sample {
            total: Ord::max(total, texts.len() as u64),
            texts,
            counts,
            taken: std::time::Instant::now(),
        });
        *cached = Some(sample.clone());
        Ok(sample)
    }

    /// Every filter but the search.
    pub(crate) fn filter_condition(&self, f: &CustomerFilter, now: DateTime<Utc>) -> Condition {
        let mut filter = Condition::all();
        if let Some(from) = f.created_from {
            filter = filter.add(customer::Column::CreatedAt.gte(from));
        }
        if let Some(to) = f.created_to {
            filter = filter.add(customer::Column::CreatedAt.lte(to));
        }
        if let Some(state) = f.password_state {
            // The state is the stored hash's shape (`PasswordState::of`), spelled in SQL.
            let native = LikeExpr::new(format!("{NATIVE_PREFIX}%"));
            filter = filter.add(match state {
                PasswordState::ResetRequired => customer::Column::PasswordHash.eq(""),
                PasswordState::Voided => customer::Column::PasswordHash.eq(VOID_PASSWORD),
                PasswordState::Set => customer::Column::PasswordHash.like(native),
                PasswordState::Legacy => Condition::all()
                    .add(customer::Column::PasswordHash.ne(""))
                    .add(customer::Column::PasswordHash.ne(VOID_PASSWORD))
                    .add(customer::Column::PasswordHash.not_like(native))
                    .into(),
            });
        }
        if let Some(external_id) = &f.external_id {
            filter = filter.add(customer::Column::ExternalId.eq(external_id.clone()));
        }
        if let Some(locked) = f.locked {
            filter = filter.add(if locked {
                Condition::all().add(customer::Column::LockedUntil.gt(now))
            } else {
                Condition::any()
                    .add(customer::Column::LockedUntil.is_null())
                    .add(customer::Column::LockedUntil.lte(now))
            });
        }
        if let Some(signed_in) = f.signed_in {
            let live = Query::select()
                .expr(Expr::val(1))
                .from(access_token::Entity)
                .and_where(
                    Expr::col((access_token::Entity, access_token::Column::CustomerId))
                        .equals((customer::Entity, customer::Column::Id)),
                )
                .and_where(access_token::Column::RevokedAt.is_null())
                .and_where(access_token::Column::ExpiresAt.gt(now))
                .to_owned();
            filter = filter.add(if signed_in {
                Expr::exists(live)
            } else {
                Expr::not_exists(live)
            });
        }
        if f.last_reset_from.is_some() || f.last_reset_to.is_some() {
            // The newest reset email is in the range: one in the range (or any, without a
            // start) and none after its end.
            let resets = || {
                Query::select()
                    .expr(Expr::val(1))
                    .from(password_reset_token::Entity)
                    .and_where(
                        Expr::col((
                            password_reset_token::Entity,
                            password_reset_token::Column::CustomerId,
                        ))
                        .equals((customer::Entity, customer::Column::Id)),
                    )
                    .to_owned()
            };
            let mut within = resets();
            if let Some(from) = f.last_reset_from {
                within.and_where(password_reset_token::Column::CreatedAt.gte(from));
            }
            if let Some(to) = f.last_reset_to {
                within.and_where(password_reset_token::Column::CreatedAt.lte(to));
                let mut later = resets();
                later.and_where(password_reset_token::Column::CreatedAt.gt(to));
                filter = filter.add(Expr::not_exists(later));
            }
            filter = filter.add(Expr::exists(within));
        }
        filter
    }

    /// The first `limit` customers of `select` (already filtered, cursor applied, ordered),
    /// narrowed by `search`: by the probe, else by the index.
    pub(crate) async fn search_page(
        &self,
        select: sea_orm::Select<customer::Entity>,
        search: Option<&Search>,
        limit: u64,
        order: &[(customer::Column, sea_orm::Order)],
    ) -> Result<(Vec<customer::Model>, bool)> {
        let Some(search) = search else {
            return Ok((
                select.limit(limit).all(&self.db).await.map_err(db_err)?,
                false,
            ));
        };
        let backend = self.backend();
        // 1. The probe: the page's first rows, tested one by one.
        let head = select.clone().limit(PROBE_ROWS).into_query();
        let mut probe = Query::select()
            .column(sea_orm::sea_query::Asterisk)
            .from_subquery(head, customer::Entity)
            .cond_where(self.search_matches(search).await?)
            .limit(limit)
            .to_owned();
        for (column, order) in order {
            probe.order_by((customer::Entity, *column), order.clone());
        }
        let rows = customer::Entity::find()
            .from_raw_sql(backend.build(&probe))
            .all(&self.db)
            .await
            .map_err(db_err)?;
        if rows.len() as u64 >= limit {
            return Ok((rows, true));
        }
        // 2. Rare: the index.
        let mut indexed = select.limit(limit).into_query();
        self.search_indexed(&mut indexed, search).await?;
        let rows = customer::Entity::find()
            .from_raw_sql(backend.build(&indexed))
            .all(&self.db)
            .await
            .map_err(db_err)?;
        Ok((rows, false))
    }

    /// How many customers `filter` (every filter but the search) and `search` select: exact
    /// up to [`EXACT_COUNT_UP_TO`], else an estimate (`true`). `common`: the search alone
    /// selects, and the probe found a page of it at once (so counting through the index would
    /// read long lists): the sample tells how common it is. `unfiltered`: no filter but the
    /// search (or none).
    pub(crate) async fn count_matching(
        &self,
        filter: Condition,
        search: Option<&Search>,
        common: bool,
        unfiltered: bool,
    ) -> Result<(u64, bool)> {
        let backend = self.backend();
        if let (Some(search), true) = (search, common) {
            let sample = self.sample().await?;
            let hits = sample
                .texts
                .iter()
                .filter(|t| t.contains(search.as_str()))
                .count() as u64;
            let estimate =
                sample.total.saturating_mul(hits) / Ord::max(sample.texts.len() as u64, 1);
            if estimate > EXACT_COUNT_UP_TO * 2 {
                return Ok((estimate, true));
            }
        }
        let mut inner = customer::Entity::find()
            .select_only()
            .expr(Expr::val(1))
            .filter(filter.clone())
            .into_query();
        if let Some(search) = search {
            self.search_indexed(&mut inner, search).await?;
        }
        let mut capped = inner.clone();
        capped.limit(EXACT_COUNT_UP_TO + 1);
        let count = Query::select()
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
            .from_subquery(capped, Alias::new("capped"))
            .to_owned();
        let n = self.count_of(backend.build(&count)).await?;
        if n <= EXACT_COUNT_UP_TO {
            return Ok((n, false));
        }
        let estimate = match backend {
            DatabaseBackend::Postgres => self.planner_estimate(backend.build(&inner)).await?,
            _ => {
                self.sampled_estimate(filter, search, search.is_none() && unfiltered)
                    .await?
            }
        };
        Ok((Ord::max(estimate, EXACT_COUNT_UP_TO + 1), true))
    }

    async fn count_of(&self, statement: Statement) -> Result<u64> {
        let row = self.db.query_one_raw(statement).await.map_err(db_err)?;
        let n = row
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()
            .map_err(db_err)?
            .unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// PostgreSQL: the planner's row estimate for the selection (`EXPLAIN`, which runs
    /// nothing).
    async fn planner_estimate(&self, statement: Statement) -> Result<u64> {
        let explain = Statement {
            sql: format!("EXPLAIN {}", statement.sql),
            ..statement
        };
        let rows = self.db.query_all_raw(explain).await.map_err(db_err)?;
        let first: Option<String> = rows
            .first()
            .map(|r| r.try_get_by_index::<String>(0))
            .transpose()
            .map_err(db_err)?;
        Ok(first
            .as_deref()
            .and_then(|plan| plan.split(" rows=").nth(1))
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// SQLite, which keeps no row estimates: the share of an even sample of the customers
    /// (every n-th by the search map's key, which only grows) that match, times the
    /// customers there are.
    async fn sampled_estimate(
        &self,
        filter: Condition,
        search: Option<&Search>,
        unfiltered: bool,
    ) -> Result<u64> {
        let backend = self.backend();
        let map = Alias::new("customer_search").into_iden();
        let total = self
            .count_of(
                backend.build(
                    &Query::select()
                        .expr_as(Expr::cust("COALESCE(MAX(seq), 0)"), Alias::new("n"))
                        .from(map.clone())
                        .to_owned(),
                ),
            )
            .await?;
        let (keys, sampled) = even_keys(total);
        if sampled == 0 || unfiltered {
            // Every customer is selected: the count of keys handed out is the estimate.
            return Ok(total);
        }
        let mut sample = customer::Entity::find()
            .select_only()
            .expr(Expr::val(1))
            .filter(filter)
            .into_query();
        sample
            .inner_join(
                map.clone(),
                Expr::col((map.clone(), Alias::new("customer_id")))
                    .equals((customer::Entity, customer::Column::Id)),
            )
            .and_where(keys);
        if let Some(search) = search {
            sample.cond_where(self.search_matches(search).await?);
        }
        let hits = self
            .count_of(
                backend.build(
                    &Query::select()
                        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
                        .from_subquery(sample, Alias::new("sample"))
                        .to_owned(),
                ),
            )
            .await?;
        Ok(total.saturating_mul(hits) / sampled)
    }
}
