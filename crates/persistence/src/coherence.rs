//! The session cache, and what keeps it true on every replica at once.
//!
//! Each server holds the live sessions it has seen, by holder (a customer or an admin, with
//! the holder's row as the signed-in check reads it), so a signed-in request needs no
//! statement. Three rules keep a revoked session from being honoured anywhere:
//!
//! 1. **Every change is in the log.** Triggers (migration 000025) append a `session_log` row
//!    naming the holder in the transaction of any change to what the check reads: a session
//!    revoked, expired early or deleted, the holder's row changed or deleted. No code path can
//!    forget it. On PostgreSQL the trigger also sends a `NOTIFY` on `latchkey_log_` and the
//!    md5 of the table's schema (delivered at commit).
//! 2. **A revoking request answers only after every trusted cache applied it.** After its
//!    commit it takes the database's time `T`, then waits until every replica whose lease is
//!    running has *read the log after `T`* (`replicas.read_at > T`): that read saw the commit,
//!    and the replica applied it before writing `read_at`. A replica that does not answer
//!    stops counting when its lease ends, so the wait is bounded by the lease.
//! 3. **A replica trusts its cache only within its lease.** Its lease is extended by each read
//!    of the log (`lease_until = read_at + lease` in the database; locally, the instant before
//!    the read plus the lease, which ends no later), and only while its listener is proven to
//!    hear the log (it heard one of its own acknowledgements within the lease, since its last
//!    reconnection). A replica that is
//!    stalled, partitioned or deaf serves every request from the database once its lease is
//!    over, which is exactly when revoking requests stop waiting for it; it empties its cache
//!    before trusting it again.
//!
//! Which log rows a read must see: sequence numbers are taken in one order and committed in
//! another, so "everything after the highest number seen" would skip a number committed late.
//! A read returns the rows above the highest number seen and asks for the missing ones below it
//! by name; the watermark passes a number only once every transaction that held an id when an
//! earlier read ran has ended (the read takes an id of its own as the bound, and a later
//! snapshot's `xmin` must reach it; every log row is written by a transaction that already
//! holds an id, since the triggers fire on rows it changed). On SQLite (one writer) commit order is number order.
//!
//! Filling the cache races with applying the log: a read of the session made before a
//! revocation could land after it was applied. Each fill notes the count of applied changes
//! before its read and drops what it inserted if the count moved.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use domain::{auth::Holder, token::TokenKind};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::db::Backend;

/// How the cache is set up.
#[derive(Clone)]
pub struct CacheOptions {
    /// Holders kept at most (each with its live sessions); 0 turns the cache off.
    pub max_holders: u64,
    /// How long a read of the log lets a replica trust its cache.
    pub lease: Duration,
    /// PostgreSQL: a URL that reaches the database directly (not through a transaction-mode
    /// pooler, which does not carry `LISTEN`). `None` turns the cache off on PostgreSQL.
    pub direct_url: Option<String>,
    /// PostgreSQL: the schema, when the server sets its own search path.
    pub schema: Option<String>,
}

impl std::fmt::Debug for CacheOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The direct URL may hold the database password.
        f.debug_struct("CacheOptions")
            .field("max_holders", &self.max_holders)
            .field("lease", &self.lease)
            .field(
                "direct_url",
                &self.direct_url.as_ref().map(|_| "<redacted>"),
            )
            .field("schema", &self.schema)
            .finish()
    }
}

type Key = (u8, Uuid);

fn key(kind: TokenKind, subject: Uuid) -> Key {
    (
        match kind {
            TokenKind::Customer => 0,
            TokenKind::Admin => 1,
        },
        subject,
    )
}

#[derive(Debug, Clone, Copy)]
struct Live {
    expires_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Entry {
    holder: Holder,
    sessions: Mutex<HashMap<Uuid, Live>>,
}

/// A cached answer: the holder, and whether the session's last use should be written (at most
/// once a minute per session).
pub(crate) struct Hit {
    pub holder: Holder,
    pub touch: bool,
}

/// A session as a token names it: its kind, holder and id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionRef {
    pub kind: TokenKind,
    pub subject: Uuid,
    pub session: Uuid,
}

/// What a read of the database found live.
pub(crate) struct Found<'a> {
    pub holder: &'a Holder,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
}

/// What a fill noted before its read: its key's count of applied changes, and everyone's.
pub(crate) struct FillTicket {
    stripe: u64,
    all: u64,
    trusted: bool,
}

/// Counters of applied changes, one per stripe of keys, so a change to one holder (a stranger's
/// lockout, say) does not void every fill in flight.
const STRIPES: usize = 64;

fn stripe(key: &Key) -> usize {
    (key.1.as_u128() as usize ^ usize::from(key.0)) % STRIPES
}

/// The session cache of one server and the state of its lease. Cheap to clone.
#[derive(Clone)]
pub struct Coherence {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coherence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coherence")
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

struct Inner {
    enabled: bool,
    backend: Backend,
    options: CacheOptions,
    db: DatabaseConnection,
    cache: moka::sync::Cache<Key, Arc<Entry>>,
    /// Changes applied so far, per stripe of keys (fills compare them, see the module
    /// documentation); `applied_all` counts what voided every key.
    applied: [AtomicU64; STRIPES],
    applied_all: AtomicU64,
    /// Until when the cache may be trusted; `None` before the first read or after a lapse was
    /// noticed.
    trusted_until: Mutex<Option<Instant>>,
    /// This server's row in `replicas`.
    replica: Uuid,
    started_at: DateTime<Utc>,
    /// Reads of the log started and finished (a local wait asks for one started after it).
    rounds_started: AtomicU64,
    rounds_done: watch::Sender<u64>,
    /// Asks the follower for a read now.
    poke: Notify,
    /// Changes every time any replica acknowledges a read (PostgreSQL).
    acks: watch::Sender<u64>,
    /// When the listener last heard one of this server's acknowledgements.
    heard_at: Mutex<Option<Instant>>,
    listening: AtomicBool,
    /// Changes when the signing keys changed.
    keys_changed: watch::Sender<u64>,
    /// The settings row as last read, and the count of settings changes applied (a read that
    /// raced a change is not kept).
    settings: Mutex<Option<domain::settings::Settings>>,
    settings_changes: AtomicU64,
}

/// How long a revoking request waited for the replicas, and how many stopped counting because
/// their lease ended instead of confirming.
#[derive(Debug, Clone, Copy, Default)]
pub struct Confirmation {
    pub waited: Duration,
    pub lapsed: u64,
}

impl Coherence {
    /// A cache for `db`; it serves nothing until [`Coherence::follow`] has read the log.
    pub fn new(db: DatabaseConnection, backend: Backend, options: CacheOptions) -> Self {
        let enabled =
            options.max_holders > 0 && (backend == Backend::Sqlite || options.direct_url.is_some());
        Self::build(db, backend, options, enabled)
    }

    /// For a process that changes sessions without serving (the command line): no cache, but
    /// [`Coherence::confirm`] waits for the running servers' caches like a request would.
    /// `lease` is the servers' (`LATCHKEY_SESSION_CACHE_LEASE_MS`): it bounds the wait.
    pub fn confirmer(db: DatabaseConnection, backend: Backend, lease: Duration) -> Self {
        let options = CacheOptions {
            max_holders: 0,
            lease,
            direct_url: None,
            schema: None,
        };
        Self::build(db, backend, options, true)
    }

    fn build(
        db: DatabaseConnection,
        backend: Backend,
        options: CacheOptions,
        enabled: bool,
    ) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(options.max_holders.max(1))
            // A holder nobody asked about for an hour makes room (its sessions may all have
            // expired by then).
            .time_to_idle(Duration::from_secs(3600))
            .build();
        Self {
            inner: Arc::new(Inner {
                enabled,
                backend,
                options,
                db,
                cache,
                applied: std::array::from_fn(|_| AtomicU64::new(0)),
                applied_all: AtomicU64::new(0),
                trusted_until: Mutex::new(None),
                replica: Uuid::now_v7(),
                started_at: Utc::now(),
                rounds_started: AtomicU64::new(0),
                rounds_done: watch::Sender::new(0),
                poke: Notify::new(),
                acks: watch::Sender::new(0),
                heard_at: Mutex::new(None),
                listening: AtomicBool::new(false),
                keys_changed: watch::Sender::new(0),
                settings: Mutex::new(None),
                settings_changes: AtomicU64::new(0),
            }),
        }
    }

    /// No cache: every signed-in check reads the database.
    pub fn disabled(db: DatabaseConnection, backend: Backend) -> Self {
        Self::new(
            db,
            backend,
            CacheOptions {
                max_holders: 0,
                lease: Duration::from_secs(2),
                direct_url: None,
                schema: None,
            },
        )
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Whether the cache may answer now: within the lease of the last read of the log.
    pub fn trusted(&self) -> bool {
        self.inner.enabled
            && self
                .inner
                .trusted_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|until| Instant::now() < until)
    }

    /// A watch that changes when the signing keys changed on any replica or the command line.
    pub fn keys_changed(&self) -> watch::Receiver<u64> {
        self.inner.keys_changed.subscribe()
    }

    pub(crate) fn lookup(
        &self,
        kind: TokenKind,
        subject: Uuid,
        session: Uuid,
        now: DateTime<Utc>,
        touch_after: chrono::Duration,
    ) -> Option<Hit> {
        if !self.trusted() {
            return None;
        }
        let entry = self.inner.cache.get(&key(kind, subject))?;
        let mut sessions = entry
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let live = sessions.get_mut(&session)?;
        if live.expires_at <= now {
            sessions.remove(&session);
            return None;
        }
        let touch = live.last_used_at + touch_after <= now;
        if touch {
            live.last_used_at = now;
        }
        Some(Hit {
            holder: entry.holder.clone(),
            touch,
        })
    }

    pub(crate) fn ticket(&self, kind: TokenKind, subject: Uuid) -> FillTicket {
        FillTicket {
            stripe: self.inner.applied[stripe(&key(kind, subject))].load(Ordering::SeqCst),
            all: self.inner.applied_all.load(Ordering::SeqCst),
            trusted: self.trusted(),
        }
    }

    fn moved(&self, key: &Key, ticket: &FillTicket) -> bool {
        self.inner.applied[stripe(key)].load(Ordering::SeqCst) != ticket.stripe
            || self.inner.applied_all.load(Ordering::SeqCst) != ticket.all
    }

    /// Keeps what a read found live, unless a change was applied since the ticket was taken.
    pub(crate) fn fill(&self, ticket: FillTicket, at: SessionRef, found: Found<'_>) {
        let SessionRef {
            kind,
            subject,
            session,
        } = at;
        let key = key(kind, subject);
        if !ticket.trusted || self.moved(&key, &ticket) {
            return;
        }
        let entry = self.inner.cache.get_with(key, || {
            Arc::new(Entry {
                holder: found.holder.clone(),
                sessions: Mutex::new(HashMap::new()),
            })
        });
        entry
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                session,
                Live {
                    expires_at: found.expires_at,
                    last_used_at: found.last_used_at,
                },
            );
        if self.moved(&key, &ticket) {
            self.inner.cache.invalidate(&key);
        }
    }

    fn apply(&self, kind: &str, subject: Option<Uuid>) {
        let holder = match (kind, subject) {
            ("customer", Some(id)) => Some(key(TokenKind::Customer, id)),
            ("admin", Some(id)) => Some(key(TokenKind::Admin, id)),
            _ => None,
        };
        match (holder, kind) {
            (Some(holder), _) => {
                self.inner.applied[stripe(&holder)].fetch_add(1, Ordering::SeqCst);
                self.inner.cache.invalidate(&holder);
            }
            (None, "settings") => self.forget_settings(),
            (None, "keys") => {
                self.inner
                    .keys_changed
                    .send_modify(|n| *n = n.wrapping_add(1));
            }
            (None, _) => self.empty(),
        }
        metrics::counter!("latchkey_session_log_applied_total").increment(1);
    }

    /// Forgets everything kept: every holder and the settings.
    fn empty(&self) {
        self.inner.applied_all.fetch_add(1, Ordering::SeqCst);
        self.inner.cache.invalidate_all();
        self.forget_settings();
    }

    /// The listener lost its connection: its earlier hearing proves nothing now.
    fn forget_hearing(&self) {
        *self
            .inner
            .heard_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn forget_settings(&self) {
        self.inner.settings_changes.fetch_add(1, Ordering::SeqCst);
        *self
            .inner
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The settings as last read, while the cache is trusted.
    pub(crate) fn settings(&self) -> Option<domain::settings::Settings> {
        if !self.trusted() {
            return None;
        }
        self.inner
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn settings_ticket(&self) -> FillTicket {
        FillTicket {
            stripe: self.inner.settings_changes.load(Ordering::SeqCst),
            all: self.inner.applied_all.load(Ordering::SeqCst),
            trusted: self.trusted(),
        }
    }

    /// Keeps a settings row read after `ticket`, unless a change was applied meanwhile.
    pub(crate) fn keep_settings(&self, ticket: FillTicket, read: &domain::settings::Settings) {
        let unchanged = || {
            self.inner.settings_changes.load(Ordering::SeqCst) == ticket.stripe
                && self.inner.applied_all.load(Ordering::SeqCst) == ticket.all
        };
        if !ticket.trusted || !unchanged() {
            return;
        }
        let mut kept = self
            .inner
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked again under the lock: `forget_settings` counts before it takes it.
        if unchanged() {
            *kept = Some(read.clone());
        }
    }

    /// Extends the lease from a read that started at `started`; a cache whose lease had ended
    /// is emptied first (it may have missed changes the log no longer holds).
    fn renew(&self, started: Instant) {
        let mut until = self
            .inner
            .trusted_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Ended by now, not by the read's start: a read whose acknowledgement was written
        // late may postdate a revocation that stopped waiting for this server meanwhile.
        if until.is_none_or(|u| u <= Instant::now()) {
            self.empty();
            if until.is_some() {
                tracing::warn!(
                    "the session cache's lease had ended (the log was not read in time); \
                     emptied it and trusting it again"
                );
                metrics::counter!("latchkey_session_cache_lease_lapses_total").increment(1);
            }
        }
        *until = Some(started + self.inner.options.lease);
    }

    /// After a request that committed a change: waits until this server has read the log
    /// (so its own next request sees the change). Bounded by the lease.
    pub async fn wait_local(&self) {
        // An untrusted cache answers nothing: nothing to wait for (and no follower may be
        // running to wait on).
        if !self.trusted() {
            return;
        }
        let want = self.inner.rounds_started.load(Ordering::SeqCst) + 1;
        let mut done = self.inner.rounds_done.subscribe();
        self.inner.poke.notify_one();
        let _ = tokio::time::timeout(
            self.inner.options.lease,
            done.wait_for(|round| *round >= want),
        )
        .await;
    }

    /// After a request that revoked: waits until every replica whose lease is running has read
    /// the log since this commit, or its lease has ended. Bounded by the lease (twice, should a
    /// replica renew a lease without reading, which none does).
    pub async fn confirm(&self) -> Confirmation {
        // Even with this server's cache off: the other replicas' caches may be on.
        let started = Instant::now();
        let confirmed = match self.inner.backend {
            Backend::Sqlite => self.confirm_sqlite(started).await,
            Backend::Postgres => self.confirm_replicas(started).await,
        };
        let confirmation = match confirmed {
            Ok(lapsed) => Confirmation {
                waited: started.elapsed(),
                lapsed,
            },
            Err(e) => {
                // Unconfirmed: wait until every lease that was running has ended.
                tracing::error!(error = %e, "could not confirm a revocation with the replicas; waiting out their leases");
                tokio::time::sleep(self.bound().saturating_sub(started.elapsed())).await;
                Confirmation {
                    waited: started.elapsed(),
                    lapsed: 0,
                }
            }
        };
        metrics::histogram!("latchkey_revocation_confirm_seconds")
            .record(confirmation.waited.as_secs_f64());
        if confirmation.lapsed > 0 {
            metrics::counter!("latchkey_revocation_replicas_lapsed_total")
                .increment(confirmation.lapsed);
            tracing::warn!(
                replicas = confirmation.lapsed,
                waited_ms = confirmation.waited.as_millis() as u64,
                "a revocation was not confirmed by every replica: their leases ended first, so \
                 they serve from the database until they have read the log again"
            );
        }
        confirmation
    }

    /// SQLite: one writer commits at a time, so a replica whose `applied_seq` reached the
    /// log's head after this commit has applied it. This process's follower reads at once;
    /// another process's (or another server's on the same file) within its 50 ms.
    async fn confirm_sqlite(&self, started: Instant) -> Result<u64, sea_orm::DbErr> {
        // This server first, by its own reads (no clock involved); then the others by theirs.
        self.wait_local().await;
        let head = self.sqlite_head().await?;
        let mut rounds = self.inner.rounds_done.subscribe();
        self.inner.poke.notify_one();
        let bound = self.bound();
        loop {
            let now = micros_now();
            let row = self
                .inner
                .db
                .query_one_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Sqlite,
                    "SELECT COALESCE(SUM(CASE WHEN lease_until > ?1 AND applied_seq < ?2 THEN 1 ELSE 0 END), 0) AS waiting, \
                            COALESCE(SUM(CASE WHEN lease_until <= ?1 AND lease_until > ?3 AND applied_seq < ?2 THEN 1 ELSE 0 END), 0) AS lapsed \
                     FROM replicas",
                    [now.into(), head.into(), micros_of(started).into()],
                ))
                .await?
                .ok_or_else(|| sea_orm::DbErr::Custom("no count".into()))?;
            let waiting: i64 = row.try_get("", "waiting")?;
            let lapsed: i64 = row.try_get("", "lapsed")?;
            if waiting == 0 {
                return Ok(u64::try_from(lapsed).unwrap_or(0));
            }
            if started.elapsed() > bound {
                return Ok(u64::try_from(waiting + lapsed).unwrap_or(0));
            }
            rounds.mark_unchanged();
            let _ = tokio::time::timeout(Duration::from_millis(10), rounds.changed()).await;
        }
    }

    async fn confirm_replicas(&self, started: Instant) -> Result<u64, sea_orm::DbErr> {
        let db = &self.inner.db;
        let row = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                // The time after the commit, and a wake-up for every follower: a revocation
                // that changed nothing in the log (no live session) still answers at once.
                "SELECT now() AS t, \
                 pg_notify('latchkey_log_' || md5(current_schema()), '')::text AS woken",
            ))
            .await?
            .ok_or_else(|| sea_orm::DbErr::Custom("no time".into()))?;
        let committed: DateTime<Utc> = row.try_get("", "t")?;
        let mut acks = self.inner.acks.subscribe();
        let bound = self.bound();
        loop {
            let row = db
                .query_one_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    "SELECT count(*) FILTER (WHERE lease_until > now() \
                        AND read_at <= $1) AS waiting, \
                     count(*) FILTER (WHERE lease_until <= now() \
                        AND lease_until > $1 AND read_at <= $1) AS lapsed \
                     FROM replicas",
                    [committed.into()],
                ))
                .await?
                .ok_or_else(|| sea_orm::DbErr::Custom("no count".into()))?;
            let waiting: i64 = row.try_get("", "waiting")?;
            let lapsed: i64 = row.try_get("", "lapsed")?;
            if waiting == 0 {
                return Ok(u64::try_from(lapsed).unwrap_or(0));
            }
            if started.elapsed() > bound {
                tracing::error!(
                    replicas = waiting,
                    "replicas neither confirmed a revocation nor let their lease end in time"
                );
                return Ok(u64::try_from(waiting + lapsed).unwrap_or(0));
            }
            acks.mark_unchanged();
            let _ = tokio::time::timeout(Duration::from_millis(20), acks.changed()).await;
        }
    }

    /// Follows the log until `stop`: the reads that keep the cache true and the lease running.
    pub async fn follow(self, stop: watch::Receiver<bool>) {
        if !self.inner.enabled {
            return;
        }
        match self.inner.backend {
            Backend::Sqlite => self.follow_sqlite(stop).await,
            Backend::Postgres => self.follow_postgres(stop).await,
        }
    }

    /// The longest a revocation waits: every lease running at its commit has ended by then.
    fn bound(&self) -> Duration {
        self.inner.options.lease * 2 + Duration::from_millis(500)
    }

    /// How often the log is read when nothing wakes the follower: four times a lease; on
    /// SQLite at least every 50 ms too, since a command-line process writing the same file
    /// wakes nothing here.
    fn heartbeat(&self) -> Duration {
        let quarter = (self.inner.options.lease / 4).max(Duration::from_millis(10));
        match self.inner.backend {
            Backend::Sqlite => quarter.min(Duration::from_millis(50)),
            Backend::Postgres => quarter,
        }
    }

    async fn follow_sqlite(self, mut stop: watch::Receiver<bool>) {
        let mut watermark = match self.sqlite_head().await {
            Ok(head) => head,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the session log; the session cache stays off");
                return;
            }
        };
        let host = host();
        let mut last_ack: Option<Instant> = None;
        let mut last_prune = Instant::now();
        loop {
            let round = self.inner.rounds_started.fetch_add(1, Ordering::SeqCst) + 1;
            let started = Instant::now();
            match self.sqlite_round(watermark).await {
                Ok(head) => {
                    // The row in `replicas` is written when the log moved (someone may wait
                    // for it) and to renew the lease; not on every read.
                    let renew =
                        last_ack.is_none_or(|at| at.elapsed() >= self.inner.options.lease / 4);
                    if head != watermark || renew {
                        let lease = i64::try_from(self.inner.options.lease.as_micros())
                            .unwrap_or(i64::MAX / 2);
                        let read_at = micros_of(started);
                        let written = self
                            .inner
                            .db
                            .execute_raw(Statement::from_sql_and_values(
                                DatabaseBackend::Sqlite,
                                "INSERT INTO replicas (id, host, started_at, read_at, lease_until, applied_seq) \
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET \
                                 read_at = excluded.read_at, lease_until = excluded.lease_until, \
                                 applied_seq = excluded.applied_seq",
                                [
                                    self.inner.replica.into(),
                                    host.clone().into(),
                                    self.inner.started_at.timestamp_micros().into(),
                                    read_at.into(),
                                    read_at.saturating_add(lease).into(),
                                    head.into(),
                                ],
                            ))
                            .await;
                        match written {
                            // The lease is extended only as far as the row says: a revoking
                            // request stops waiting for this server when the row's lease ends.
                            Ok(_) => {
                                last_ack = Some(started);
                                self.renew(started);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "recording the session log read failed")
                            }
                        }
                    }
                    watermark = head;
                }
                Err(e) => tracing::warn!(error = %e, "reading the session log failed"),
            }
            self.inner.rounds_done.send_replace(round);
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = Instant::now();
                let _ = self
                    .inner
                    .db
                    .execute_raw(Statement::from_sql_and_values(
                        DatabaseBackend::Sqlite,
                        "DELETE FROM session_log WHERE seq <= (SELECT COALESCE(MIN(applied_seq), 0) \
                         FROM replicas WHERE lease_until > ?1)",
                        [micros_now().into()],
                    ))
                    .await;
                let _ = self
                    .inner
                    .db
                    .execute_raw(Statement::from_sql_and_values(
                        DatabaseBackend::Sqlite,
                        "DELETE FROM replicas WHERE lease_until < ?1",
                        [(micros_now() - 3_600_000_000).into()],
                    ))
                    .await;
            }
            tokio::select! {
                () = self.inner.poke.notified() => {}
                () = tokio::time::sleep(self.heartbeat()) => {}
                _ = stop.changed() => break,
            }
        }
        let _ = self
            .inner
            .db
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                "DELETE FROM replicas WHERE id = ?1",
                [self.inner.replica.into()],
            ))
            .await;
    }

    async fn sqlite_head(&self) -> Result<i64, sea_orm::DbErr> {
        let row = self
            .inner
            .db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "SELECT COALESCE(MAX(seq), 0) AS head FROM session_log",
            ))
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64>("", "head"))
            .transpose()?
            .unwrap_or(0))
    }

    async fn sqlite_round(&self, mut watermark: i64) -> Result<i64, sea_orm::DbErr> {
        loop {
            let rows = self
                .inner
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Sqlite,
                    "SELECT seq, kind, subject FROM session_log WHERE seq > ? ORDER BY seq LIMIT 10000",
                    [watermark.into()],
                ))
                .await?;
            let full = rows.len() == 10_000;
            for row in rows {
                let seq: i64 = row.try_get("", "seq")?;
                let kind: String = row.try_get("", "kind")?;
                let subject: Option<Uuid> = row.try_get("", "subject")?;
                self.apply(&kind, subject);
                watermark = watermark.max(seq);
            }
            if !full {
                return Ok(watermark);
            }
        }
    }

    async fn follow_postgres(self, mut stop: watch::Receiver<bool>) {
        use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        let Some(url) = self.inner.options.direct_url.clone() else {
            return;
        };
        let options = match url.parse::<PgConnectOptions>() {
            Ok(options) => {
                options.application_name(&format!("latchkey-log-{}", self.inner.replica.simple()))
            }
            Err(e) => {
                tracing::error!(error = %e, "the direct database URL does not parse; the session cache stays off");
                return;
            }
        };
        // No statement of the follower's waits longer than a lease, or a second (a stop is
        // seen in time).
        let timeout = self.inner.options.lease.as_millis().max(1000).to_string();
        let options = match &self.inner.options.schema {
            Some(schema) => options.options([
                ("search_path", schema.as_str()),
                ("statement_timeout", timeout.as_str()),
            ]),
            None => options.options([("statement_timeout", timeout.as_str())]),
        };
        let pool = |n| {
            PgPoolOptions::new()
                .max_connections(n)
                .min_connections(0)
                .acquire_timeout(self.inner.options.lease)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_lazy_with(options.clone())
        };
        let (reads, listens) = (pool(1), pool(1));
        let channels = loop {
            // The channels the triggers and the other servers use: the schema, hashed.
            match sea_orm::sqlx::query_scalar::<_, String>("SELECT md5(current_schema())")
                .fetch_one(&reads)
                .await
            {
                Ok(schema) => break Channels::of(&schema),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the database directly for the session log; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        let (notes_tx, mut notes) = watch::channel(0u64);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let listener =
            tokio::spawn(
                self.clone()
                    .listen(listens, channels.clone(), notes_tx, ready_tx),
            );
        // No read before the LISTEN is in place (a change committed between the two would
        // wake nobody); a server stopped meanwhile stops here.
        tokio::select! {
            _ = ready => {}
            _ = stop.changed() => {
                listener.abort();
                return;
            }
        }
        let mut log = LogReader::default();
        let host = host();
        let mut last_prune = Instant::now();
        loop {
            // What woke this read is seen by it; a change notified from here on wakes the next.
            notes.mark_unchanged();
            let round = self.inner.rounds_started.fetch_add(1, Ordering::SeqCst) + 1;
            let started = Instant::now();
            let listening = self.inner.listening.load(Ordering::SeqCst);
            let hearing = self
                .inner
                .heard_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|at| at.elapsed() < self.inner.options.lease);
            match self
                .postgres_round(&reads, &mut log, &host, &channels)
                .await
            {
                Ok(()) => {
                    // Trust only while the listener is proven to hear the log: it heard one of
                    // this server's acknowledgements within the lease (the first read follows
                    // a LISTEN that succeeded). A deaf server would still be safe (revoking
                    // requests wait for its reads, four a lease), only slow to learn.
                    if listening && (round == 1 || hearing) {
                        self.renew(started);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the session log failed"),
            }
            self.inner.rounds_done.send_replace(round);
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = Instant::now();
                let _ = sea_orm::sqlx::query(
                    "DELETE FROM session_log WHERE seq < (SELECT COALESCE(MIN(applied_seq), 0) \
                     FROM replicas WHERE lease_until > now()) AND created_at < now() - interval '1 minute'\
                     ",
                )
                .execute(&reads)
                .await;
                let _ = sea_orm::sqlx::query(
                    "DELETE FROM replicas WHERE lease_until < now() - interval '1 hour'",
                )
                .execute(&reads)
                .await;
            }
            tokio::select! {
                () = self.inner.poke.notified() => {}
                _ = notes.changed() => {}
                () = tokio::time::sleep(self.heartbeat()) => {}
                _ = stop.changed() => break,
            }
        }
        listener.abort();
        let _ = sea_orm::sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(self.inner.replica)
            .execute(&reads)
            .await;
    }

    async fn postgres_round(
        &self,
        reads: &sea_orm::sqlx::PgPool,
        log: &mut LogReader,
        host: &str,
        channels: &Channels,
    ) -> Result<(), sea_orm::sqlx::Error> {
        use sea_orm::sqlx::Row;
        // The first page's time stands for the whole read: every row committed before it is
        // on this page or a later one (numbered higher than this page's last). `now()` is the
        // statement's transaction start, which comes before its snapshot. Each page holds back
        // the watermark on its own (`LogReader::note`), until every transaction that had an id
        // when it ran has ended: its bound is a transaction id the page takes for itself
        // (`pg_current_xact_id()`, after its snapshot), not the snapshot's `xmax`, which is
        // only the latest *completed* id plus one (a running transaction may hold a higher
        // one). The round's first page asked for every missing number by name, so the
        // watermark moves by its snapshot's `xmin`.
        let mut at: Option<DateTime<Utc>> = None;
        let mut xmin: Option<i64> = None;
        let (mut after, mut gaps) = log.to_read();
        loop {
            let rows = sea_orm::sqlx::query(
                "SELECT s.xmin, s.next, s.at, l.seq, l.kind, l.subject FROM \
                 (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
                         pg_current_xact_id()::text::bigint AS next, \
                         now() AS at) s \
                 LEFT JOIN session_log l ON l.seq > $1 OR l.seq = ANY($2) ORDER BY l.seq LIMIT $3",
            )
            .bind(after)
            .bind(std::mem::take(&mut gaps))
            .bind(PAGE)
            .fetch_all(reads)
            .await?;
            let Some(first) = rows.first() else {
                return Ok(());
            };
            at.get_or_insert(first.try_get("at")?);
            if xmin.is_none() {
                xmin = Some(first.try_get("xmin")?);
            }
            let next: i64 = first.try_get("next")?;
            for row in &rows {
                let Some(seq) = row.try_get::<Option<i64>, _>("seq")? else {
                    continue;
                };
                after = after.max(seq);
                if log.seen.insert(seq) {
                    let kind: String = row.try_get("kind")?;
                    let subject: Option<Uuid> = row.try_get("subject")?;
                    self.apply(&kind, subject);
                }
            }
            log.note(next);
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < PAGE {
                break;
            }
        }
        if let Some(xmin) = xmin {
            log.advance(xmin);
        }
        let Some(at) = at else {
            return Ok(());
        };
        let lease = chrono::Duration::from_std(self.inner.options.lease)
            .unwrap_or(chrono::Duration::seconds(2));
        sea_orm::sqlx::query(
            "WITH up AS (INSERT INTO replicas (id, host, started_at, read_at, lease_until, applied_seq) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
             read_at = EXCLUDED.read_at, lease_until = EXCLUDED.lease_until, \
             applied_seq = EXCLUDED.applied_seq RETURNING 1) \
             SELECT pg_notify($7, $8) FROM up",
        )
        .bind(self.inner.replica)
        .bind(host)
        .bind(self.inner.started_at)
        .bind(at)
        .bind(at + lease)
        .bind(log.watermark)
        .bind(&channels.ack)
        .bind(self.inner.replica.to_string())
        .execute(reads)
        .await?;
        Ok(())
    }

    async fn listen(
        self,
        pool: sea_orm::sqlx::PgPool,
        channels: Channels,
        notes: watch::Sender<u64>,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        use sea_orm::sqlx::postgres::PgListener;
        let mut ready = Some(ready);
        let me = self.inner.replica.to_string();
        loop {
            let connected = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener
                    .listen_all([channels.log.as_str(), channels.ack.as_str()])
                    .await?;
                Ok::<_, sea_orm::sqlx::Error>(listener)
            }
            .await;
            let mut listener = match connected {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to the session log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.inner.listening.store(true, Ordering::SeqCst);
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(note)) => {
                        if note.channel() == channels.log {
                            notes.send_modify(|n| *n = n.wrapping_add(1));
                        } else {
                            self.inner.acks.send_modify(|n| *n = n.wrapping_add(1));
                            if note.payload() == me {
                                *self
                                    .inner
                                    .heard_at
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(Instant::now());
                            }
                        }
                    }
                    Ok(None) => {
                        // Reconnected (and listening again); what was sent meanwhile is lost,
                        // so no read is trusted until an acknowledgement is heard again.
                        self.forget_hearing();
                        tracing::warn!("the session log listener lost its connection");
                        metrics::counter!("latchkey_session_log_listener_reconnects_total")
                            .increment(1);
                        notes.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the session log listener failed; reconnecting");
                        self.inner.listening.store(false, Ordering::SeqCst);
                        self.forget_hearing();
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Log rows read per statement.
const PAGE: i64 = 50_000;

/// This process, for the `replicas` table: host name and process id.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "latchkey".into());
    format!("{name}:{}", std::process::id())
}

/// The host's clock in microseconds since 1970 (SQLite's `replicas` times).
fn micros_now() -> i64 {
    Utc::now().timestamp_micros()
}

/// The host's clock at `instant` (in the past), in microseconds since 1970.
fn micros_of(instant: Instant) -> i64 {
    let ago = i64::try_from(instant.elapsed().as_micros()).unwrap_or(0);
    micros_now() - ago
}

#[derive(Debug, Clone)]
struct Channels {
    log: String,
    ack: String,
}

impl Channels {
    /// `schema_md5`: the schema's name, hashed (a channel name is at most 63 bytes).
    fn of(schema_md5: &str) -> Self {
        Self {
            log: format!("latchkey_log_{schema_md5}"),
            ack: format!("latchkey_ack_{schema_md5}"),
        }
    }
}

/// Which log rows are applied (PostgreSQL; see the module documentation).
#[derive(Debug, Default)]
struct LogReader {
    /// Every row at or below it has been applied or will never commit.
    watermark: i64,
    /// Rows applied above the watermark.
    seen: BTreeSet<i64>,
    /// Earlier reads' pages: the highest number then known, and the transaction id the page
    /// took (every transaction holding a number not yet seen had a lower one).
    pending: VecDeque<(i64, i64)>,
}

/// Numbers missing between the watermark and the highest seen that a read asks for by name;
/// with more, it reads everything above the watermark again.
const MAX_GAPS: usize = 1_000;

impl LogReader {
    /// Where the next read starts: above the highest number seen, plus the missing numbers
    /// below it (a transaction still running, or one rolled back); or, with too many of those,
    /// everything above the watermark.
    fn to_read(&self) -> (i64, Vec<i64>) {
        let Some(&highest) = self.seen.last() else {
            return (self.watermark, Vec::new());
        };
        let mut gaps = Vec::new();
        let mut next = self.watermark + 1;
        for &seq in &self.seen {
            while next < seq {
                if gaps.len() == MAX_GAPS {
                    return (self.watermark, Vec::new());
                }
                gaps.push(next);
                next += 1;
            }
            next = seq + 1;
        }
        (highest, gaps)
    }

    /// After a page that took transaction id `next`: what is known now is final once every
    /// transaction with a lower id has ended.
    fn note(&mut self, next: i64) {
        let highest = self.seen.last().copied().unwrap_or(self.watermark);
        self.pending.push_back((highest, next));
    }

    /// With `xmin` the oldest transaction still running (of a snapshot whose read asked for
    /// every missing number): every page whose bound it has reached lets the watermark pass
    /// what that page knew.
    fn advance(&mut self, xmin: i64) {
        while let Some(&(known, bound)) = self.pending.front() {
            if bound > xmin {
                break;
            }
            self.pending.pop_front();
            self.watermark = self.watermark.max(known);
        }
        let watermark = self.watermark;
        self.seen.retain(|seq| *seq > watermark);
    }
}

#[cfg(test)]
mod tests {
    use super::LogReader;

    #[test]
    fn the_watermark_waits_for_transactions_running_at_an_earlier_read() {
        let mut log = LogReader::default();
        // Read 1 (which took id 105) sees 1 and 3 (2 belongs to transaction 100, running).
        log.seen.extend([1, 3]);
        log.note(105);
        log.advance(100);
        assert_eq!(log.watermark, 0, "2 may still commit");
        assert_eq!(
            log.to_read(),
            (3, vec![2]),
            "the next read asks for 2 by name"
        );
        // Read 2: transaction 100 still runs.
        log.note(110);
        log.advance(100);
        assert_eq!(log.watermark, 0);
        // Read 3: 2 committed and was applied; everything running at read 1 has ended.
        log.seen.insert(2);
        log.note(112);
        log.advance(106);
        assert_eq!(log.watermark, 3, "everything known at read 1 is final");
        assert!(log.seen.is_empty());
        assert_eq!(log.to_read(), (3, vec![]));
    }

    #[test]
    fn each_page_of_a_long_read_holds_the_watermark_back_on_its_own() {
        let mut log = LogReader::default();
        // Page 1 (which took id 100) sees 1..=2; page 2 (id 120, later) sees 4, while 3
        // belongs to transaction 110, which started between the pages.
        log.seen.extend([1, 2]);
        log.note(100);
        log.seen.insert(4);
        log.note(120);
        log.advance(105);
        assert_eq!(log.watermark, 2, "only page 1's knowledge is final");
        assert_eq!(log.to_read(), (4, vec![3]));
    }

    #[test]
    fn too_many_gaps_read_everything_above_the_watermark() {
        let mut log = LogReader::default();
        log.seen.insert(5_000);
        assert_eq!(log.to_read(), (0, vec![]));
    }
}
