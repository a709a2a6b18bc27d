//! The password reset repository.
//!
//! A reset request is recorded as it is, the same rows for every address, by a group-commit
//! writer: concurrent requests share one transaction (the limits of all of them decided in
//! arrival order inside it), and each caller is answered only after that transaction has
//! committed. The mail worker then resolves recorded requests in batches: for an address with
//! an account it supersedes the account's outstanding links, stores the new token's hash and
//! queues the mail; for an unknown address it deletes the request and nothing else. Two kinds
//! of request for an account end as an unknown address's do (no token, no mail, nothing
//! voided): one older than a link or code already issued for the account, and one for a link
//! alone within a minute of a live link's issue (see `still_to_mail`).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, Reason};
use domain::{
    Error, Result,
    bulk::IssuedReset,
    limits::{Check, KeyHistory, Refused, Rule, decide_in_order},
    ports::{MailKind, MailLane, NewMail},
    reset::{
        CodeAttempt, CodePurpose, MAX_CODE_ATTEMPTS, RESEND_AFTER, ResetRequest, ResetStore,
        StoredResetToken,
    },
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query},
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    db::WriteTurn,
    db::db_err,
    db::queue_work,
    db::{End, unit_of_work},
    entities::{
        code_flow, customer, email_outbox, limit_event, password_reset_token, reset_request,
    },
    outbox::{NO_ATTEMPTS, PENDING},
    rows::apply_password_change,
    rows::lock_customer,
    rows::supersede_tokens,
};

/// Requests written in one group-commit transaction at most (and resolved per worker round):
/// well inside SQLite's and PostgreSQL's limits on bound parameters per statement.
const MAX_BATCH: usize = 256;
/// Requests waiting for the writer before callers wait to hand theirs over.
const QUEUE: usize = 4 * MAX_BATCH;

type Answer = Result<std::result::Result<(), Refused>>;

struct Pending {
    request: ResetRequest,
    reply: oneshot::Sender<Answer>,
}

/// The handle requests are sent to the group-commit writer through.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResetWriter(std::sync::Arc<std::sync::OnceLock<mpsc::Sender<Pending>>>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl ResetWriter {
    /// The writer's queue, starting the writer on first use (on the caller's runtime).
    fn queue(&self, db: &DatabaseConnection, turn: &WriteTurn) -> &mpsc::Sender<Pending> {
        self.0.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_batches(db.clone(), turn.clone(), rx));
            tx
        })
    }
}

/// The group-commit writer: takes whatever requests are waiting (up to [`MAX_BATCH`]), writes
/// them in one transaction, answers each after the commit, and repeats. It ends when every
/// store that could send to it is gone. It is never cancelled mid-transaction: callers wait on
/// their answer, not on the writer.
async fn write_batches(db: DatabaseConnection, turn: WriteTurn, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A caller that went away before its request was written (its client hung up, a
        // timeout fired) was never answered: it is not written, as if it had never arrived.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        metrics::histogram!("latchkey_reset_request_batch_size").record(batch.len() as f64);
        let requests: Vec<&ResetRequest> = batch.iter().map(|p| &p.request).collect();
        let written = {
            let _turn = turn.take(&db).await;
            write_batch(&db, &requests).await
        };
        match written {
            Ok(decisions) => {
                for (p, decision) in batch.drain(..).zip(decisions) {
                    let _ = p.reply.send(Ok(decision));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = batch.len(), "recording reset requests failed");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(Error::internal(&e)));
                }
            }
        }
    }
}

/// One transaction for the batch: the write lock (SQLite) or every key's advisory lock in one
/// order (PostgreSQL), the stored history of every key in one query per rule, the decisions in
/// arrival order, then the accepted requests' limit events, audit entries and request rows in
/// multi-row inserts.
async fn write_batch(
    db: &DatabaseConnection,
    requests: &[&ResetRequest],
) -> Result<Vec<std::result::Result<(), Refused>>> {
    let txn = db.begin().await.map_err(db_err)?;
    match record(&txn, requests).await {
        Ok(decisions) => {
            txn.commit().await.map_err(db_err)?;
            Ok(decisions)
        }
        Err(e) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rolling back a batch of reset requests failed");
            }
            Err(e)
        }
    }
}

async fn record(
    txn: &DatabaseTransaction,
    requests: &[&ResetRequest],
) -> Result<Vec<std::result::Result<(), Refused>>> {
    let now = requests
        .iter()
        .map(|r| r.now)
        .max()
        .unwrap_or_else(Utc::now);
    let backend = txn.get_database_backend();
    // Every distinct key of the batch with the rule it is counted under.
    let mut keys: HashMap<String, &Check> = HashMap::new();
    for check in requests.iter().flat_map(|r| r.limits.iter()) {
        keys.entry(check.key.storage_key()).or_insert(check);
    }
    match backend {
        DatabaseBackend::Postgres => {
            let mut ids: Vec<i64> = keys.values().map(|c| c.key.lock_id()).collect();
            ids.sort_unstable();
            ids.dedup();
            if !ids.is_empty() {
                // In ascending order, as every reservation takes them: no two can deadlock.
                let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                txn.execute_unprepared(&format!(
                    "SELECT COUNT(pg_advisory_xact_lock(id)) FROM \
                     (SELECT id FROM unnest(ARRAY[{list}]::bigint[]) AS u(id) ORDER BY id) AS s"
                ))
                .await
                .map_err(db_err)?;
            }
        }
        _ => {
            // SQLite: a write statement first takes the one writer's lock, so the counts read
            // next cannot change before this transaction commits.
            txn.execute_unprepared("DELETE FROM reset_requests WHERE 0")
                .await
                .map_err(db_err)?;
        }
    }
    let stored = histories(txn, &keys, now).await?;
    let batch: Vec<&[Check]> = requests.iter().map(|r| r.limits.as_slice()).collect();
    let decisions = decide_in_order(&batch, &stored, now);

    let accepted: Vec<&ResetRequest> = requests
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| d.is_ok())
        .map(|(r, _)| *r)
        .collect();
    let events: Vec<limit_event::ActiveModel> = accepted
        .iter()
        .flat_map(|r| r.limits.iter())
        .map(|check| limit_event::ActiveModel {
            id: Set(Uuid::now_v7()),
            key: Set(check.key.storage_key()),
            at: Set(now),
            expires_at: Set(Some(now + check.rule.retention())),
            in_flight: Set(false),
        })
        .collect();
    if !events.is_empty() {
        limit_event::Entity::insert_many(events)
            .exec_without_returning(txn)
            .await
            .map_err(db_err)?;
    }
    for r in &accepted {
        if let Some(audit) = r.audit.clone() {
            crate::rows::insert_audit(txn, audit).await?;
        }
    }
    let rows: Vec<reset_request::ActiveModel> = accepted
        .iter()
        .map(|r| reset_request::ActiveModel {
            id: Set(Uuid::now_v7()),
            email_key: Set(r.email.key().to_owned()),
            // No link (a store that resets by code only) is stored as the empty string.
            link: Set(r.link.clone().unwrap_or_default()),
            token_hash: Set(r.token_hash.clone()),
            expires_at: Set(r.expires_at),
            created_at: Set(r.now),
            flow_hash: Set(r.code.as_ref().map(|c| c.flow_hash.clone())),
            code_hash: Set(r.code.as_ref().map(|c| c.code_hash.clone())),
            code: Set(r.code.as_ref().map(|c| c.code.expose().to_owned())),
            code_expires_at: Set(r.code.as_ref().map(|c| c.expires_at)),
            purpose: Set(r.purpose.as_str().to_owned()),
        })
        .collect();
    if !rows.is_empty() {
        reset_request::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await
            .map_err(db_err)?;
    }
    Ok(decisions)
}

/// The stored history of each key, one query per distinct rule.
async fn histories(
    txn: &DatabaseTransaction,
    keys: &HashMap<String, &Check>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, KeyHistory>> {
    let mut by_rule: Vec<(Rule, Vec<&str>)> = Vec::new();
    for (key, check) in keys {
        match by_rule.iter_mut().find(|(rule, _)| *rule == check.rule) {
            Some((_, group)) => group.push(key),
            None => by_rule.push((check.rule, vec![key])),
        }
    }
    let mut out = HashMap::with_capacity(keys.len());
    for (rule, group) in by_rule {
        let query = crate::limits::history_query(&group, &rule, now);
        for row in txn.query_all(&query).await.map_err(db_err)? {
            let (key, history) = crate::limits::history_row(&row)?;
            out.insert(key, history);
        }
    }
    Ok(out)
}

#[derive(Clone, FromQueryResult)]
struct Account {
    id: Uuid,
    email: String,
    email_key: String,
    locale: String,
}

/// The account a reset link is for.
pub(crate) struct ResetFor<'a> {
    /// The new token's id.
    pub token_id: Uuid,
    pub customer_id: Uuid,
    /// The address stored on the account: the mail goes there, never to a submitted string.
    pub email: &'a str,
    pub email_key: &'a str,
    pub locale: &'a str,
}

/// A reset link's stored token and its mail, for the storefront's requests and bulk jobs alike.
/// (The account's outstanding tokens are superseded by the caller, in the same transaction.)
/// An empty link is none (a store that resets by code only); `code` is the one-time code the
/// mail carries beside it, with its end.
pub(crate) fn reset_rows(
    to: ResetFor<'_>,
    issued: IssuedReset,
    code: Option<(String, DateTime<Utc>)>,
    at: DateTime<Utc>,
    superseded_at: Option<DateTime<Utc>>,
    lane: MailLane,
) -> (password_reset_token::ActiveModel, email_outbox::ActiveModel) {
    let (code, code_expires_at) = code.unzip();
    let link = Some(issued.link).filter(|l| !l.is_empty());
    let token = password_reset_token::ActiveModel {
        id: Set(to.token_id),
        customer_id: Set(to.customer_id),
        token_hash: Set(issued.token_hash),
        email_key: Set(to.email_key.to_owned()),
        created_at: Set(at),
        expires_at: Set(issued.expires_at),
        used_at: Set(None),
        superseded_at: Set(superseded_at),
    };
    let mail = email_outbox::ActiveModel {
        id: Set(Uuid::now_v7()),
        kind: Set(MailKind::PasswordReset.as_str().to_owned()),
        customer_id: Set(Some(to.customer_id)),
        recipient: Set(to.email.to_owned()),
        locale: Set(to.locale.to_owned()),
        link_expires_at: Set(link.is_some().then_some(issued.expires_at)),
        link: Set(link),
        status: Set(PENDING.to_owned()),
        attempts: Set(NO_ATTEMPTS),
        next_attempt_at: Set(at),
        claim_id: Set(None),
        claimed_until: Set(None),
        last_error: Set(None),
        created_at: Set(at),
        sent_at: Set(None),
        lane: Set(lane.as_str().to_owned()),
        code: Set(code),
        code_expires_at: Set(code_expires_at),
    };
    (token, mail)
}

/// Writes reset links' tokens and their mail ([`reset_rows`]).
pub(crate) async fn insert_resets(
    txn: &DatabaseTransaction,
    tokens: Vec<password_reset_token::ActiveModel>,
    mails: Vec<email_outbox::ActiveModel>,
) -> Result<()> {
    password_reset_token::Entity::insert_many(tokens)
        .exec_without_returning(txn)
        .await
        .map_err(db_err)?;
    email_outbox::Entity::insert_many(mails)
        .exec_without_returning(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The newest request of each address and purpose among `taken` (oldest first): the others
/// are superseded by it, as a mail for them would be.
fn newest_per_address(mut taken: Vec<reset_request::Model>) -> Vec<reset_request::Model> {
    taken.sort_by_key(|r| r.id);
    let mut newest: HashMap<(&str, &str), Uuid> = HashMap::new();
    for r in &taken {
        newest.insert((r.purpose.as_str(), r.email_key.as_str()), r.id);
    }
    let keep: HashSet<Uuid> = newest.into_values().collect();
    taken.retain(|r| keep.contains(&r.id));
    taken
}

/// The accounts among `accounts` whose request in `taken` still calls for a mail:
/// - not *overtaken*: an account that already has a reset link (or, for a sign-in code, a
///   code flow) issued *after* its request was recorded is left out, and its request resolves
///   as an unknown address's does (a flow that never succeeds, no mail). That happens when
///   another worker resolved a newer request first (PostgreSQL skips the rows it holds), or an
///   admin's bulk reset went out meanwhile: the older request must not supersede the newer link
///   and mail its own;
/// - not *just mailed*: a request for a link alone, recorded within [`RESEND_AFTER`] of a live
///   link's issue, is left out too (the link just sent still works), so a flood mails one
///   address at most once a minute. A code request always gets its own mail.
///
/// Read after the accounts are locked, so a concurrent resolver's commit is seen.
async fn still_to_mail(
    txn: &DatabaseTransaction,
    taken: &[reset_request::Model],
    accounts: &HashMap<String, Account>,
    purpose: CodePurpose,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Account>> {
    // Per account: when its request was recorded, and whether it asked for a link alone.
    let asked: HashMap<Uuid, (DateTime<Utc>, bool)> = taken
        .iter()
        .filter_map(|r| {
            let id = accounts.get(&r.email_key)?.id;
            Some((id, (r.created_at, r.flow_hash.is_none())))
        })
        .collect();
    let Some(since) = asked.values().map(|(at, _)| *at - RESEND_AFTER).min() else {
        return Ok(HashMap::new());
    };
    let ids = asked.keys().copied();
    // (customer, issued at, still live)
    let issued: Vec<(Option<Uuid>, DateTime<Utc>, bool)> = match purpose {
        CodePurpose::Reset => password_reset_token::Entity::find()
            .filter(password_reset_token::Column::CustomerId.is_in(ids))
            .filter(password_reset_token::Column::CreatedAt.gt(since))
            .all(txn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|t| {
                let live = t.used_at.is_none() && t.superseded_at.is_none() && t.expires_at > now;
                (Some(t.customer_id), t.created_at, live)
            })
            .collect(),
        CodePurpose::SignIn => code_flow::Entity::find()
            .select_only()
            .column(code_flow::Column::CustomerId)
            .column(code_flow::Column::CreatedAt)
            .filter(code_flow::Column::Purpose.eq(CodePurpose::SignIn.as_str()))
            .filter(code_flow::Column::CustomerId.is_in(ids))
            .filter(code_flow::Column::CreatedAt.gt(since))
            .into_tuple::<(Option<Uuid>, DateTime<Utc>)>()
            .all(txn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|(id, at)| (id, at, false))
            .collect(),
    };
    let left_out: HashSet<Uuid> = issued
        .into_iter()
        .filter_map(|(id, at, live)| {
            let id = id?;
            let (asked_at, link_only) = *asked.get(&id)?;
            let overtaken = at > asked_at;
            let just_mailed = link_only && live && asked_at - at < RESEND_AFTER;
            (overtaken || just_mailed).then_some(id)
        })
        .collect();
    if !left_out.is_empty() {
        tracing::debug!(
            event = "reset_requests_left_unmailed",
            count = left_out.len()
        );
    }
    Ok(accounts
        .iter()
        .filter(|(_, a)| !left_out.contains(&a.id))
        .map(|(k, a)| (k.clone(), a.clone()))
        .collect())
}

/// Unsent mail of `kind` to these customers: superseded by the mail about to be queued (its
/// link or code is dead once the new one is issued).
async fn supersede_unsent(
    txn: &DatabaseTransaction,
    kind: MailKind,
    customers: Vec<Uuid>,
) -> Result<()> {
    email_outbox::Entity::delete_many()
        .filter(email_outbox::Column::Kind.eq(kind.as_str()))
        .filter(email_outbox::Column::Status.eq(PENDING))
        .filter(email_outbox::Column::CustomerId.is_in(customers))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Resolves reset requests: for an account, its older links superseded, a token and a mail
/// (the newest request of each account keeps a live link); every request that started a code
/// flow gets its flow.
async fn resolve_resets(
    txn: &DatabaseTransaction,
    taken: &[reset_request::Model],
    accounts: &HashMap<String, Account>,
    now: DateTime<Utc>,
) -> Result<()> {
    if taken.is_empty() {
        return Ok(());
    }
    // Every request resolved that started a code flow gets its flow, known address or not:
    // an unknown address's flow names no token and never succeeds, but answers a
    // guess as any other flow does.
    let token_ids: HashMap<Uuid, Uuid> = taken
        .iter()
        .filter(|r| accounts.contains_key(&r.email_key))
        .map(|r| (r.id, Uuid::now_v7()))
        .collect();
    let flows: Vec<code_flow::ActiveModel> = taken
        .iter()
        .filter_map(|r| {
            let account = accounts.get(&r.email_key);
            Some(code_flow::ActiveModel {
                id: Set(Uuid::now_v7()),
                flow_hash: Set(r.flow_hash.clone()?),
                purpose: Set(CodePurpose::Reset.as_str().to_owned()),
                code_hash: Set(r.code_hash.clone()?),
                email_key: Set(r.email_key.clone()),
                customer_id: Set(account.map(|a| a.id)),
                reset_token_id: Set(token_ids.get(&r.id).copied()),
                attempts: Set(0),
                expires_at: Set(r.code_expires_at?),
                created_at: Set(r.created_at),
                ended_at: Set(None),
            })
        })
        .collect();
    if accounts.is_empty() {
        return insert_flows(txn, flows).await;
    }
    let customers: Vec<Uuid> = taken
        .iter()
        .filter_map(|r| accounts.get(&r.email_key).map(|a| a.id))
        .collect();
    supersede_tokens(txn, customers.iter().copied(), now).await?;
    supersede_unsent(txn, MailKind::PasswordReset, customers).await?;
    // `taken` holds one request per address (`newest_per_address`): each gets a live link.
    let mut tokens = Vec::new();
    let mut mails = Vec::new();
    for r in taken {
        let Some(account) = accounts.get(&r.email_key) else {
            continue;
        };
        let (token, mail) = reset_rows(
            ResetFor {
                token_id: token_ids[&r.id],
                customer_id: account.id,
                email: &account.email,
                email_key: &r.email_key,
                locale: &account.locale,
            },
            IssuedReset {
                token_hash: r.token_hash.clone(),
                link: r.link.clone(),
                expires_at: r.expires_at,
            },
            r.code.clone().zip(r.code_expires_at),
            r.created_at,
            None,
            MailLane::Interactive,
        );
        tokens.push(token);
        mails.push(mail);
    }
    insert_resets(txn, tokens, mails).await?;
    // After the tokens they name.
    insert_flows(txn, flows).await
}

/// Resolves sign-in code requests: every request gets its flow (an unknown address's names no
/// account and never succeeds); for an account, its older sign-in flows end (the newest
/// request of the batch keeps the live one) and the code is mailed. Reset links stay.
async fn resolve_sign_ins(
    txn: &DatabaseTransaction,
    taken: &[reset_request::Model],
    accounts: &HashMap<String, Account>,
    now: DateTime<Utc>,
) -> Result<()> {
    if taken.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = taken
        .iter()
        .filter_map(|r| accounts.get(&r.email_key).map(|a| a.id))
        .collect();
    if !ids.is_empty() {
        supersede_unsent(txn, MailKind::SignInCode, ids.clone()).await?;
        code_flow::Entity::update_many()
            .col_expr(code_flow::Column::EndedAt, Expr::value(Some(now)))
            .filter(code_flow::Column::Purpose.eq(CodePurpose::SignIn.as_str()))
            .filter(code_flow::Column::CustomerId.is_in(ids))
            .filter(code_flow::Column::EndedAt.is_null())
            .exec(txn)
            .await
            .map_err(db_err)?;
    }
    // One request per address (`newest_per_address`): each flow is the live one.
    let mut flows = Vec::new();
    let mut mails = Vec::new();
    for r in taken {
        let (Some(flow_hash), Some(code_hash), Some(expires_at)) =
            (r.flow_hash.clone(), r.code_hash.clone(), r.code_expires_at)
        else {
            continue;
        };
        let account = accounts.get(&r.email_key);
        flows.push(code_flow::ActiveModel {
            id: Set(Uuid::now_v7()),
            flow_hash: Set(flow_hash),
            purpose: Set(CodePurpose::SignIn.as_str().to_owned()),
            code_hash: Set(code_hash),
            email_key: Set(r.email_key.clone()),
            customer_id: Set(account.map(|a| a.id)),
            reset_token_id: Set(None),
            attempts: Set(0),
            expires_at: Set(expires_at),
            created_at: Set(r.created_at),
            ended_at: Set(None),
        });
        if let Some(account) = account {
            let mut mail = crate::outbox::new_row(NewMail {
                id: Uuid::now_v7(),
                kind: MailKind::SignInCode,
                customer_id: Some(account.id),
                recipient: account.email.clone(),
                locale: domain::customer::Locale::parse(&account.locale).unwrap_or_default(),
                created_at: r.created_at,
                link: None,
            });
            mail.code = Set(r.code.clone());
            mail.code_expires_at = Set(Some(expires_at));
            mails.push(mail);
        }
    }
    insert_flows(txn, flows).await?;
    if !mails.is_empty() {
        email_outbox::Entity::insert_many(mails)
            .exec_without_returning(txn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

async fn insert_flows(txn: &DatabaseTransaction, flows: Vec<code_flow::ActiveModel>) -> Result<()> {
    if flows.is_empty() {
        return Ok(());
    }
    code_flow::Entity::insert_many(flows)
        .exec_without_returning(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

fn stored_token(t: password_reset_token::Model) -> StoredResetToken {
    StoredResetToken {
        id: t.id,
        customer_id: t.customer_id,
        email_key: t.email_key,
        expires_at: t.expires_at,
        used_at: t.used_at,
        superseded_at: t.superseded_at,
    }
}

/// The password reset repository.
#[derive(Debug, Clone)]
pub struct SqlResets {
    pub(crate) db: DatabaseConnection,
    /// The group-commit writer of reset requests (started on first use).
    pub(crate) reset_writer: ResetWriter,
    /// SQLite's write turn, shared with the other writers that run all the time.
    pub(crate) write_turn: WriteTurn,
}

impl SqlResets {
    /// Unresolved requests (reset and sign-in code) and when the oldest was recorded: the
    /// backlog the mail worker has yet to turn into mail.
    pub async fn backlog(&self) -> Result<(u64, Option<DateTime<Utc>>)> {
        let row: Option<(i64, Option<DateTime<Utc>>)> = reset_request::Entity::find()
            .select_only()
            .column_as(reset_request::Column::Id.count(), "n")
            .column_as(reset_request::Column::CreatedAt.min(), "oldest")
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(row
            .map(|(n, oldest)| (u64::try_from(n).unwrap_or(0), oldest))
            .unwrap_or((0, None)))
    }

    /// Resolves the recorded requests of up to `batch` addresses, in one transaction; returns
    /// how many requests were taken. Fair per address: the addresses whose oldest request has
    /// waited longest go first, and each takes *all* its requests with it (per purpose: a
    /// reset, a sign-in code). Only the newest of them is resolved; the others, and older
    /// unsent mail of the same kind, are superseded without a mail (their links and codes
    /// would be dead on arrival). So an address gets one mail however many requests for it
    /// piled up, and a fresh request waits behind other *addresses*, never behind a flood of
    /// requests for a few. Safe with many workers on many replicas: each request is taken by
    /// one (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer), and a worker that
    /// dies mid-way leaves its requests for the next.
    pub async fn resolve_reset_requests(&self, now: DateTime<Utc>, batch: u64) -> Result<usize> {
        // The worker asks after every wake-up and every poll: with nothing recorded, one read
        // and no transaction.
        let any: Option<Uuid> = reset_request::Entity::find()
            .select_only()
            .column(reset_request::Column::Id)
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_err)?;
        if any.is_none() {
            return Ok(0);
        }
        let _turn = self.write_turn.take(&self.db).await;
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                // The addresses waiting longest (oldest request first)...
                let mut oldest = Query::select()
                    .columns([
                        reset_request::Column::Purpose,
                        reset_request::Column::EmailKey,
                    ])
                    .from(reset_request::Entity)
                    .order_by(reset_request::Column::Id, sea_orm::Order::Asc)
                    .limit(batch)
                    .to_owned();
                if txn.get_database_backend() == DatabaseBackend::Postgres {
                    oldest.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
                }
                let mut waiting = sea_orm::Condition::any();
                let mut any = false;
                for row in txn.query_all(&oldest).await.map_err(db_err)? {
                    let purpose: String = row.try_get("", "purpose").map_err(db_err)?;
                    let email_key: String = row.try_get("", "email_key").map_err(db_err)?;
                    waiting = waiting.add(
                        sea_orm::Condition::all()
                            .add(reset_request::Column::Purpose.eq(purpose))
                            .add(reset_request::Column::EmailKey.eq(email_key)),
                    );
                    any = true;
                }
                if !any {
                    return Ok(End::Rollback(0));
                }
                // ...with every request recorded for them: the newest of each is resolved,
                // the others are superseded by it.
                // (On PostgreSQL rows another worker holds are skipped, not waited for: two
                // workers taking one address's requests each resolve their own newest; they
                // meet at the account's lock below, and an older request that finds a newer
                // link already issued leaves it alone: `still_to_mail`.)
                let mut of_them = Query::select()
                    .column(reset_request::Column::Id)
                    .from(reset_request::Entity)
                    .cond_where(waiting)
                    .to_owned();
                if txn.get_database_backend() == DatabaseBackend::Postgres {
                    of_them.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
                }
                let take = Query::delete()
                    .from_table(reset_request::Entity)
                    .and_where(reset_request::Column::Id.in_subquery(of_them))
                    .returning_all()
                    .to_owned();
                let taken: Vec<reset_request::Model> = txn
                    .query_all(&take)
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|row| reset_request::Model::from_query_result(row, ""))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(db_err)?;
                if taken.is_empty() {
                    return Ok(End::Rollback(0));
                }
                let resolved = taken.len();
                let taken = newest_per_address(taken);
                let keys: Vec<&str> = taken
                    .iter()
                    .map(|r| r.email_key.as_str())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                let mut accounts = customer::Entity::find()
                    .select_only()
                    .columns([
                        customer::Column::Id,
                        customer::Column::Email,
                        customer::Column::EmailKey,
                        customer::Column::Locale,
                    ])
                    .filter(customer::Column::EmailKey.is_in(keys))
                    // A frozen account gets no link until an admin recovers it: its request
                    // ends as an unknown address's does.
                    .filter(customer::Column::FrozenAt.is_null())
                    .order_by_asc(customer::Column::Id);
                if txn.get_database_backend() == DatabaseBackend::Postgres {
                    // Two replicas resolving requests of one account serialise here; the one
                    // that comes second sees the first one's token (`still_to_mail`).
                    accounts = accounts.lock(LockType::NoKeyUpdate);
                }
                let accounts: HashMap<String, Account> = accounts
                    .into_model::<Account>()
                    .all(txn)
                    .await
                    .map_err(db_err)?
                    .into_iter()
                    .map(|a| (a.email_key.clone(), a))
                    .collect();
                let (sign_ins, resets): (Vec<_>, Vec<_>) = taken
                    .into_iter()
                    .partition(|r| r.purpose == CodePurpose::SignIn.as_str());
                let for_resets =
                    still_to_mail(txn, &resets, &accounts, CodePurpose::Reset, now).await?;
                resolve_resets(txn, &resets, &for_resets, now).await?;
                let for_sign_ins =
                    still_to_mail(txn, &sign_ins, &accounts, CodePurpose::SignIn, now).await?;
                resolve_sign_ins(txn, &sign_ins, &for_sign_ins, now).await?;
                Ok(End::Commit(resolved))
            })
        })
        .await
    }
}

#[async_trait]
impl ResetStore for SqlResets {
    async fn request_reset(&self, request: ResetRequest) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.reset_writer
            .queue(&self.db, &self.write_turn)
            .send(Pending { request, reply })
            .await
            .map_err(|_| Error::internal("the reset request writer has stopped"))?;
        answer
            .await
            .map_err(|_| Error::internal("the reset request writer dropped a request"))?
    }

    async fn find_reset_token(&self, token_hash: &str) -> Result<Option<StoredResetToken>> {
        Ok(password_reset_token::Entity::find()
            .filter(password_reset_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(stored_token))
    }

    async fn reset_token_by_id(&self, id: Uuid) -> Result<Option<StoredResetToken>> {
        Ok(password_reset_token::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(stored_token))
    }

    async fn count_code_attempt(
        &self,
        purpose: CodePurpose,
        flow_hash: &str,
    ) -> Result<Option<CodeAttempt>> {
        // One statement: the guarded increment is the attempt budget, so of concurrent
        // guesses no more than the budget ever get a flow to compare against.
        let count = Query::update()
            .table(code_flow::Entity)
            .value(
                code_flow::Column::Attempts,
                Expr::col(code_flow::Column::Attempts).add(1),
            )
            .and_where(code_flow::Column::FlowHash.eq(flow_hash))
            .and_where(code_flow::Column::Purpose.eq(purpose.as_str()))
            .and_where(code_flow::Column::Attempts.lt(MAX_CODE_ATTEMPTS as i32))
            .returning_all()
            .to_owned();
        let row = {
            let _turn = self.write_turn.take(&self.db).await;
            self.db.query_one(&count).await.map_err(db_err)?
        };
        row.map(|row| code_flow::Model::from_query_result(&row, ""))
            .transpose()
            .map_err(db_err)
            .map(|flow| {
                flow.map(|f| CodeAttempt {
                    flow_id: f.id,
                    code_hash: f.code_hash,
                    email_key: f.email_key,
                    reset_token_id: f.reset_token_id,
                    customer_id: f.customer_id,
                    expires_at: f.expires_at,
                    ended: f.ended_at.is_some(),
                })
            })
    }

    async fn end_code_flow(&self, flow_id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let ended = code_flow::Entity::update_many()
            .col_expr(code_flow::Column::EndedAt, Expr::value(Some(now)))
            .filter(code_flow::Column::Id.eq(flow_id))
            .filter(code_flow::Column::EndedAt.is_null());
        let _turn = self.write_turn.take(&self.db).await;
        Ok(ended.exec(&self.db).await.map_err(db_err)?.rows_affected == 1)
    }

    async fn complete_reset(
        &self,
        token_id: Uuid,
        customer_id: Uuid,
        password_hash: String,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // The account first, then its token: the order the mail worker's resolver
                // takes them in (it locks the account, then supersedes its tokens), so the
                // two never wait on each other in a circle on PostgreSQL.
                if lock_customer(txn, customer_id).await?.is_none() {
                    return Ok(End::Rollback(false));
                }
                // The guarded update is the single-use check: of concurrent resets with one token,
                // exactly one sees a row affected.
                let consumed = password_reset_token::Entity::update_many()
                    .col_expr(password_reset_token::Column::UsedAt, Expr::value(Some(now)))
                    .filter(password_reset_token::Column::Id.eq(token_id))
                    .filter(password_reset_token::Column::CustomerId.eq(customer_id))
                    .filter(password_reset_token::Column::UsedAt.is_null())
                    .filter(password_reset_token::Column::SupersededAt.is_null())
                    .filter(password_reset_token::Column::ExpiresAt.gt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                if consumed != 1 {
                    return Ok(End::Rollback(false));
                }
                apply_password_change(
                    txn,
                    customer_id,
                    password_hash,
                    None,
                    now,
                    notice,
                    Cause::new(Reason::PasswordReset, Actor::User),
                )
                .await?;
                Ok(End::Commit(true))
            })
        })
        .await
    }
}
