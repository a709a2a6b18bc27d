//! The limiter: every limited operation's check-and-record, in one place.
//!
//! Atomic on both databases: on PostgreSQL a per-key advisory lock, held to the end of the
//! transaction and taken in one order (so two keys cannot deadlock), serialises reservations of
//! a key on every replica; on SQLite the first statement writes, which takes the single
//! writer's lock. Then each check's event is recorded and what came before it is counted; a
//! refused reservation rolls its events back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Result,
    limits::{
        Check, IN_FLIGHT_FOR_AT_MOST, KeyHistory, LimitError, LimitKey, Limiter, Refused,
        Reservation, Rule, decide,
    },
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryResult, Statement,
    sea_query::{Expr, ExprTrait, Func, Query, SelectStatement},
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::limit_event,
};

/// Stripes of in-process locks over limit keys. A reservation takes the stripes of its keys
/// (in order, so two reservations cannot deadlock) before it borrows a pooled connection: a
/// flood of requests for one key (one client's sign-ins) then waits here, holding nothing,
/// instead of each holding one of the pool's few connections while it waits for the key's
/// advisory lock. The advisory lock still makes the count exact across replicas.
///
/// The same stripes carry the wake-up for reservations waiting on in-flight events of a key
/// (a sign-in refused only because other checks of its name are still running).
#[derive(Debug, Clone)]
pub(crate) struct KeyTurns {
    turns: std::sync::Arc<[tokio::sync::Mutex<()>]>,
    settled: std::sync::Arc<[tokio::sync::Notify]>,
}

const STRIPES: usize = 256;

fn stripe(key: &LimitKey) -> usize {
    usize::try_from(key.lock_id().rem_euclid(STRIPES as i64)).unwrap_or(0)
}

impl Default for KeyTurns {
    fn default() -> Self {
        Self {
            turns: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            settled: (0..STRIPES).map(|_| tokio::sync::Notify::new()).collect(),
        }
    }
}

impl KeyTurns {
    pub(crate) async fn take(&self, checks: &[Check]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = checks.iter().map(|c| stripe(&c.key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.turns[stripe].lock().await);
        }
        guards
    }

    /// Wakes whoever waits for an in-flight event of one of `keys` to settle.
    fn settle<'a>(&self, keys: impl IntoIterator<Item = &'a LimitKey>) {
        for key in keys {
            self.settled[stripe(key)].notify_waiters();
        }
    }
}

/// Reserves `checks` inside the caller's transaction: the event ids, or why not. The caller
/// must roll back on `Err` (nothing of the request may be written then).
pub(crate) async fn reserve_in(
    txn: &DatabaseTransaction,
    checks: &[Check],
    now: DateTime<Utc>,
) -> Result<std::result::Result<Vec<Uuid>, Refused>> {
    if checks.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        let mut ids: Vec<i64> = checks.iter().map(|c| c.key.lock_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [id.into()],
            ))
            .await
            .map_err(db_err)?;
        }
    }
    let mut recorded = Vec::with_capacity(checks.len());
    let mut histories = Vec::with_capacity(checks.len());
    for check in checks {
        let id = Uuid::now_v7();
        let key = check.key.storage_key();
        limit_event::Entity::insert(limit_event::ActiveModel {
            id: Set(id),
            key: Set(key.clone()),
            at: Set(now),
            expires_at: Set(Some(now + check.rule.retention())),
            in_flight: Set(check.in_flight),
        })
        .exec(txn)
        .await
        .map_err(db_err)?;
        histories.push(history(txn, &key, check, now, id).await?);
        recorded.push(id);
    }
    Ok(decide(checks, &histories, now).map(|()| recorded))
}

/// Earlier events of `keys` under `rule`, one row per key that has any: the count, how many
/// of them are in flight, and the oldest within the window, the latest within the rule's
/// retention. Used for one reservation and for a batch alike.
pub(crate) fn history_query(keys: &[&str], rule: &Rule, now: DateTime<Utc>) -> SelectStatement {
    let window_start = now - rule.window;
    let in_window = || Expr::col(limit_event::Column::At).gt(window_start);
    let in_flight = in_window()
        .and(Expr::col(limit_event::Column::InFlight).eq(true))
        .and(Expr::col(limit_event::Column::At).gt(now - IN_FLIGHT_FOR_AT_MOST));
    Query::select()
        .column(limit_event::Column::Key)
        .expr_as(
            Func::count(Expr::case(in_window(), Expr::val(1))),
            sea_orm::sea_query::Alias::new("n"),
        )
        .expr_as(
            Func::count(Expr::case(in_flight, Expr::val(1))),
            sea_orm::sea_query::Alias::new("in_flight"),
        )
        .expr_as(
            Func::min(Expr::case(in_window(), Expr::col(limit_event::Column::At))),
            sea_orm::sea_query::Alias::new("oldest"),
        )
        .expr_as(
            Func::max(Expr::col(limit_event::Column::At)),
            sea_orm::sea_query::Alias::new("latest"),
        )
        .from(limit_event::Entity)
        .and_where(limit_event::Column::Key.is_in(keys.iter().copied()))
        .and_where(limit_event::Column::At.gt(now - rule.retention()))
        .group_by_col(limit_event::Column::Key)
        .to_owned()
}

/// One row of [`history_query`]: the key and its history.
pub(crate) fn history_row(row: &QueryResult) -> Result<(String, KeyHistory)> {
    let key: String = row.try_get("", "key").map_err(db_err)?;
    let count: i64 = row.try_get("", "n").map_err(db_err)?;
    let in_flight: i64 = row.try_get("", "in_flight").map_err(db_err)?;
    Ok((
        key,
        KeyHistory {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
            oldest: row.try_get("", "oldest").map_err(db_err)?,
            latest: row.try_get("", "latest").map_err(db_err)?,
        },
    ))
}

/// Earlier events of the check's key (not counting the event `except` just recorded), in one
/// statement.
async fn history(
    txn: &DatabaseTransaction,
    key: &str,
    check: &Check,
    now: DateTime<Utc>,
    except: Uuid,
) -> Result<KeyHistory> {
    let query = history_query(&[key], &check.rule, now)
        .and_where(limit_event::Column::Id.ne(except))
        .to_owned();
    match txn.query_one(&query).await.map_err(db_err)? {
        Some(row) => Ok(history_row(&row)?.1),
        None => Ok(KeyHistory::default()),
    }
}

/// Limit events whose key starts with `prefix` (taken literally: `%` and `_` in it are not
/// wildcards).
pub(crate) fn key_starts_with(prefix: &str) -> sea_orm::sea_query::SimpleExpr {
    let escaped: String = prefix
        .chars()
        .flat_map(|c| match c {
            '\\' | '%' | '_' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let like = sea_orm::sea_query::LikeExpr::new(format!("{escaped}%")).escape('\\');
    Expr::col(limit_event::Column::Key).like(like)
}

/// The limiter.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    pub(crate) db: DatabaseConnection,
    /// In-process turns for limit keys, taken before a pooled connection is: requests for one
    /// key queue here, not while each holds a connection waiting on the key's advisory lock.
    pub(crate) key_turns: KeyTurns,
}

#[async_trait]
impl Limiter for SqlLimits {
    async fn reserve(
        &self,
        checks: &[Check],
        now: DateTime<Utc>,
    ) -> std::result::Result<Reservation, LimitError> {
        if checks.is_empty() {
            return Ok(Reservation::default());
        }
        let _turns = self.key_turns.take(checks).await;
        let checks = checks.to_vec();
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                Ok(match reserve_in(txn, &checks, now).await? {
                    Ok(event_ids) => End::Commit(Ok(Reservation {
                        event_ids,
                        keys: checks
                            .iter()
                            .filter(|c| c.in_flight)
                            .map(|c| c.key.clone())
                            .collect(),
                    })),
                    Err(refused) => End::Rollback(Err(refused)),
                })
            })
        })
        .await?
        .map_err(LimitError::Refused)
    }

    async fn release(&self, reservation: Reservation) -> Result<()> {
        if reservation.event_ids.is_empty() {
            return Ok(());
        }
        limit_event::Entity::delete_many()
            .filter(limit_event::Column::Id.is_in(reservation.event_ids))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        self.key_turns.settle(&reservation.keys);
        Ok(())
    }

    async fn keep(&self, reservation: Reservation) -> Result<()> {
        if !reservation.in_flight() {
            return Ok(());
        }
        limit_event::Entity::update_many()
            .col_expr(limit_event::Column::InFlight, Expr::value(false))
            .filter(limit_event::Column::Id.is_in(reservation.event_ids))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        self.key_turns.settle(&reservation.keys);
        Ok(())
    }

    async fn settled(&self, key: &LimitKey, at_most: std::time::Duration) {
        let _ = tokio::time::timeout(at_most, self.key_turns.settled[stripe(key)].notified()).await;
    }

    async fn clear_prefixed(&self, prefix: &str) -> Result<()> {
        let result = limit_event::Entity::delete_many()
            .filter(key_starts_with(prefix))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        if result.rows_affected > 0 {
            // Whoever waits on one of these keys may go on: wake every stripe.
            for settled in self.key_turns.settled.iter() {
                settled.notify_waiters();
            }
        }
        Ok(())
    }

    async fn histories(&self, checks: &[Check], now: DateTime<Utc>) -> Result<Vec<KeyHistory>> {
        // One statement for the checks that look back alike (the attack counts: one hour).
        let mut found = std::collections::HashMap::new();
        let mut looked = Vec::<(chrono::Duration, chrono::Duration)>::new();
        for check in checks {
            let span = (check.rule.window, check.rule.retention());
            if looked.contains(&span) {
                continue;
            }
            looked.push(span);
            let keys: Vec<String> = checks
                .iter()
                .filter(|c| (c.rule.window, c.rule.retention()) == span)
                .map(|c| c.key.storage_key())
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let query = history_query(&keys, &check.rule, now);
            for row in self.db.query_all(&query).await.map_err(db_err)? {
                let (key, history) = history_row(&row)?;
                found.insert((key, span), history);
            }
        }
        Ok(checks
            .iter()
            .map(|c| {
                let span = (c.rule.window, c.rule.retention());
                found
                    .get(&(c.key.storage_key(), span))
                    .copied()
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn clear(&self, key: &LimitKey) -> Result<()> {
        limit_event::Entity::delete_many()
            .filter(limit_event::Column::Key.eq(key.storage_key()))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        self.key_turns.settle([key]);
        Ok(())
    }
}
