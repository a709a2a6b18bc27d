//! The admin repository: admin users and sessions, the customers grid, batched admin-only
//! customer fields, Force Sign In, settings updates and the audit log.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Error, Result, SessionId,
    admin::{
        AdminStore, AdminUser, AuditAction, AuditCursor, AuditEntry, AuditQuery, CustomerCursor,
        CustomerQuery, CustomerSortField, NewAdmin, NewAudit, Page, PasswordFacts,
    },
    customer::Customer,
    settings::Settings,
    stored_hash::PasswordState,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, Value, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{
        access_token, admin_access_token, admin_user, audit_log, customer, password_reset_token,
        settings,
    },
    grid::Grid,
    rows::to_customer,
    rows::{insert_audit, to_admin},
};

/// `(c1, c2, …) > (v1, v2, …)` (or `<`), spelled out so both databases use their indexes.
fn after(columns: &[customer::Column], values: Vec<Value>, descending: bool) -> Condition {
    let mut any = Condition::any();
    for i in 0..columns.len() {
        let mut all = Condition::all();
        for j in 0..i {
            all = all.add(columns[j].eq(values[j].clone()));
        }
        let beyond = if descending {
            columns[i].lt(values[i].clone())
        } else {
            columns[i].gt(values[i].clone())
        };
        any = any.add(all.add(beyond));
    }
    any
}

fn sort_columns(field: CustomerSortField) -> Vec<customer::Column> {
    match field {
        CustomerSortField::CreatedAt => vec![customer::Column::CreatedAt, customer::Column::Id],
        CustomerSortField::Email => vec![customer::Column::EmailKey, customer::Column::Id],
        CustomerSortField::Name => vec![
            customer::Column::Lastname,
            customer::Column::Firstname,
            customer::Column::Id,
        ],
    }
}

fn cursor_of(m: &customer::Model, field: CustomerSortField, descending: bool) -> CustomerCursor {
    let values = match field {
        CustomerSortField::CreatedAt => vec![m.created_at.to_rfc3339()],
        CustomerSortField::Email => vec![m.email_key.clone()],
        CustomerSortField::Name => vec![m.lastname.clone(), m.firstname.clone()],
    };
    CustomerCursor {
        field,
        descending,
        values,
        id: m.id,
    }
}

fn cursor_values(c: &CustomerCursor) -> Result<Vec<Value>> {
    let bad = || Error::bad_input("after", "is not a cursor from this list");
    let mut values: Vec<Value> = match c.field {
        CustomerSortField::CreatedAt => {
            let at: DateTime<Utc> = c
                .values
                .first()
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .ok_or_else(bad)?
                .with_timezone(&Utc);
            vec![at.into()]
        }
        CustomerSortField::Email => vec![c.values.first().ok_or_else(bad)?.clone().into()],
        CustomerSortField::Name => {
            let [last, first] = c.values.as_slice() else {
                return Err(bad());
            };
            vec![last.clone().into(), first.clone().into()]
        }
    };
    values.push(c.id.into());
    Ok(values)
}

/// The admin repository: sessions, the customers grid, admin-only fields, settings, the audit log.
#[derive(Debug, Clone)]
pub struct SqlAdmin {
    pub(crate) db: DatabaseConnection,
    /// The customers grid's search state, shared with bulk jobs.
    pub(crate) grid: Grid,
}

#[async_trait]
impl AdminStore for SqlAdmin {
    async fn create_admin(&self, new: NewAdmin) -> Result<Option<AdminUser>> {
        let model = admin_user::ActiveModel {
            id: Set(new.id),
            username: Set(new.username.as_str().to_owned()),
            username_key: Set(new.username.key()),
            role: Set(new.role.as_str().to_owned()),
            password_hash: Set(new.password_hash),
            failed_sign_ins: Set(0),
            locked_until: Set(None),
            created_at: Set(new.now),
            email: Set(new.email.map(|e| e.as_str().to_owned())),
            disabled_at: Set(None),
        };
        match admin_user::Entity::insert(model).exec(&self.db).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Ok(None);
            }
            Err(e) => return Err(db_err(e)),
        }
        Ok(admin_user::Entity::find_by_id(new.id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .and_then(|m| to_admin(&m)))
    }

    async fn revoke_admin_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let revoked: Option<Uuid> = admin_access_token::Entity::update_many()
                    .col_expr(
                        admin_access_token::Column::RevokedAt,
                        Expr::value(Some(now)),
                    )
                    .filter(admin_access_token::Column::Id.eq(id.uuid()))
                    .filter(admin_access_token::Column::RevokedAt.is_null())
                    .filter(admin_access_token::Column::ExpiresAt.gt(now))
                    .exec_with_returning(txn)
                    .await
                    .map_err(db_err)?
                    .into_iter()
                    .next()
                    .map(|t| t.admin_id);
                let Some(admin_id) = revoked else {
                    return Ok(End::Rollback(false));
                };
                crate::events::record(
                    txn,
                    &[SecurityEvent::admin(
                        EventType::SessionRevoked,
                        admin_id,
                        Cause::new(Reason::SignOut, Actor::User),
                        now,
                    )
                    .for_session(id)],
                )
                .await?;
                Ok(End::Commit(true))
            })
        })
        .await
    }

    async fn customers_page(
        &self,
        q: &CustomerQuery,
        now: DateTime<Utc>,
    ) -> Result<Page<Customer>> {
        let filter = self.grid.filter_condition(&q.filter, now);
        let search = q.filter.search.as_ref();
        let columns = sort_columns(q.field);
        let mut select = customer::Entity::find().filter(filter.clone());
        if let Some(cursor) = &q.after {
            if cursor.field != q.field || cursor.descending != q.descending {
                return Err(Error::bad_input("after", "belongs to another sort order"));
            }
            select = select.filter(after(&columns, cursor_values(cursor)?, q.descending));
        }
        let order = if q.descending {
            Order::Desc
        } else {
            Order::Asc
        };
        let order: Vec<_> = columns.iter().map(|c| (*c, order.clone())).collect();
        for (column, order) in &order {
            select = select.order_by(*column, order.clone());
        }
        let (mut rows, common) = self
            .grid
            .search_page(select, search, q.first + 1, &order)
            .await?;
        let has_next_page = keep_page(&mut rows, q.first);
        // The first page and nothing after it: that is every match, counted.
        let (total_count, total_count_is_estimate) = if q.after.is_none() && !has_next_page {
            (rows.len() as u64, false)
        } else {
            let unfiltered = q.filter.is_search_only();
            self.grid
                .count_matching(filter, search, common && unfiltered, unfiltered)
                .await?
        };
        Ok(Page {
            items: rows
                .into_iter()
                .map(|m| {
                    (
                        cursor_of(&m, q.field, q.descending).encode(),
                        to_customer(m),
                    )
                })
                .collect(),
            has_next_page,
            total_count,
            total_count_is_estimate,
        })
    }

    async fn active_token_counts(
        &self,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<HashMap<Uuid, u64>> {
        let rows: Vec<(Uuid, i64)> = access_token::Entity::find()
            .select_only()
            .column(access_token::Column::CustomerId)
            .column_as(access_token::Column::Id.count(), "n")
            .filter(access_token::Column::CustomerId.is_in(ids.to_vec()))
            .filter(access_token::Column::RevokedAt.is_null())
            .filter(access_token::Column::ExpiresAt.gt(now))
            .group_by(access_token::Column::CustomerId)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(id, n)| (id, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn password_facts(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, PasswordFacts>> {
        let rows: Vec<(Uuid, String, Option<String>)> = customer::Entity::find()
            .select_only()
            .column(customer::Column::Id)
            .column(customer::Column::PasswordHash)
            .column(customer::Column::ExternalId)
            .filter(customer::Column::Id.is_in(ids.to_vec()))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(id, hash, external_id)| {
                (
                    id,
                    PasswordFacts {
                        state: PasswordState::of(&hash),
                        external_id,
                    },
                )
            })
            .collect())
    }

    async fn last_reset_requests(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DateTime<Utc>>> {
        let rows: Vec<(Uuid, Option<DateTime<Utc>>)> = password_reset_token::Entity::find()
            .select_only()
            .column(password_reset_token::Column::CustomerId)
            .column_as(password_reset_token::Column::CreatedAt.max(), "latest")
            .filter(password_reset_token::Column::CustomerId.is_in(ids.to_vec()))
            .group_by(password_reset_token::Column::CustomerId)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, at)| at.map(|at| (id, at)))
            .collect())
    }

    async fn revoke_all_sessions(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Option<u64>> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // In the transaction: a customer deleted meanwhile gets no event.
                if crate::rows::lock_customer(txn, customer_id)
                    .await?
                    .is_none()
                {
                    return Ok(End::Rollback(None));
                }
                let revoked = crate::rows::revoke_sessions(
                    txn,
                    [customer_id],
                    None,
                    now,
                    Cause::new(Reason::ForceSignIn, Actor::Admin),
                )
                .await?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(Some(revoked)))
            })
        })
        .await
    }

    async fn unlock_customer(&self, customer_id: Uuid, audit: NewAudit) -> Result<Option<String>> {
        crate::rows::unlock_customer(&self.db, customer_id, audit).await
    }

    async fn update_settings(&self, s: &Settings, audit: NewAudit) -> Result<()> {
        let int = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
        let s = s.clone();
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                settings::Entity::update_many()
                    .col_expr(
                        settings::Column::ResetLinkLifetimeHours,
                        Expr::value(int(s.reset.link_lifetime.num_hours())),
                    )
                    .col_expr(
                        settings::Column::ResetRequestLimitMethod,
                        Expr::value(s.reset.limit.method.as_str()),
                    )
                    .col_expr(
                        settings::Column::MaxResetRequestsPerHour,
                        Expr::value(int(i64::from(s.reset.limit.max_per_hour))),
                    )
                    .col_expr(
                        settings::Column::MinSecondsBetweenResetRequests,
                        Expr::value(int(s.reset.limit.min_interval.num_seconds())),
                    )
                    .col_expr(
                        settings::Column::MinPasswordLength,
                        Expr::value(int(i64::from(s.password.min_length))),
                    )
                    .col_expr(
                        settings::Column::RequiredCharacterClasses,
                        Expr::value(i32::from(s.password.required_character_classes)),
                    )
                    .col_expr(
                        settings::Column::AllowWhitespace,
                        Expr::value(s.password.allow_whitespace),
                    )
                    .col_expr(
                        settings::Column::LockoutFailures,
                        Expr::value(int(i64::from(s.lockout.failures))),
                    )
                    .col_expr(
                        settings::Column::LockoutMinutes,
                        Expr::value(int(s.lockout.duration.num_minutes())),
                    )
                    .col_expr(
                        settings::Column::CustomerTokenLifetimeMinutes,
                        Expr::value(int(s.customer_token_lifetime.num_minutes())),
                    )
                    .col_expr(
                        settings::Column::AdminTokenLifetimeMinutes,
                        Expr::value(int(s.admin_token_lifetime.num_minutes())),
                    )
                    .col_expr(
                        settings::Column::MinPasswordScore,
                        Expr::value(i32::from(s.password.min_score)),
                    )
                    .col_expr(
                        settings::Column::MaxFailedSignInsPerIpPerHour,
                        Expr::value(int(i64::from(s.clients.failed_sign_ins_per_ip_per_hour))),
                    )
                    .col_expr(
                        settings::Column::MaxRegistrationsPerIpPerHour,
                        Expr::value(int(i64::from(s.clients.registrations_per_ip_per_hour))),
                    )
                    .col_expr(settings::Column::ResetByLink, Expr::value(s.reset.by_link))
                    .col_expr(settings::Column::ResetByCode, Expr::value(s.reset.by_code))
                    .col_expr(
                        settings::Column::SignInByCode,
                        Expr::value(s.sign_in_by_code),
                    )
                    .col_expr(
                        settings::Column::ResetCodeLifetimeMinutes,
                        Expr::value(int(s.reset.code_lifetime.num_minutes())),
                    )
                    .col_expr(
                        settings::Column::RememberBrowserDays,
                        Expr::value(int(s.remember_browser.num_days())),
                    )
                    .col_expr(
                        settings::Column::NetworkV4Prefix,
                        Expr::value(i32::from(s.attack.network_v4_prefix)),
                    )
                    .col_expr(
                        settings::Column::NetworkV6Prefix,
                        Expr::value(i32::from(s.attack.network_v6_prefix)),
                    )
                    .col_expr(
                        settings::Column::ChallengeAfterNameFailures,
                        Expr::value(int(i64::from(s.attack.challenge_after_name_failures))),
                    )
                    .col_expr(
                        settings::Column::ChallengeAfterNetworkFailures,
                        Expr::value(int(i64::from(s.attack.challenge_after_network_failures))),
                    )
                    .col_expr(
                        settings::Column::BreachedPasswordSignIn,
                        Expr::value(s.breached_password.as_str()),
                    )
                    .col_expr(
                        settings::Column::ChallengeMaxNumber,
                        Expr::value(int(i64::from(s.attack.challenge_max_number))),
                    )
                    .filter(settings::Column::Id.eq(1))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                insert_audit(txn, audit).await?;
                // Every replica reads its settings from its cache: they count everywhere
                // before the answer, as a revocation does.
                crate::db::note_revocation();
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn undelivered_mail(
        &self,
        first: u64,
        lane: Option<domain::ports::MailLane>,
    ) -> Result<Vec<domain::admin::UndeliveredMail>> {
        let mut select = crate::entities::email_outbox::Entity::find();
        if let Some(lane) = lane {
            select = select.filter(crate::entities::email_outbox::Column::Lane.eq(lane.as_str()));
        }
        Ok(select
            .filter(crate::entities::email_outbox::Column::Status.ne("sent"))
            .order_by_asc(crate::entities::email_outbox::Column::CreatedAt)
            .limit(first)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|m| domain::admin::UndeliveredMail {
                id: m.id,
                lane: domain::ports::MailLane::parse(&m.lane)
                    .unwrap_or(domain::ports::MailLane::Interactive),
                kind: m.kind,
                recipient: m.recipient,
                status: m.status,
                attempts: u32::try_from(m.attempts).unwrap_or(0),
                last_error: m.last_error,
                created_at: m.created_at,
                next_attempt_at: m.next_attempt_at,
            })
            .collect())
    }

    async fn audit_page(&self, q: &AuditQuery) -> Result<Page<AuditEntry>> {
        let mut filter = Condition::all();
        if let Some(action) = q.action {
            filter = filter.add(audit_log::Column::Action.eq(action.as_str()));
        }
        if let Some(customer_id) = q.customer_id {
            filter = filter.add(audit_log::Column::CustomerId.eq(customer_id));
        }
        let total_count = audit_log::Entity::find()
            .filter(filter.clone())
            .count(&self.db)
            .await
            .map_err(db_err)?;
        let mut select = audit_log::Entity::find().filter(filter);
        if let Some(c) = &q.after {
            select = select.filter(
                Condition::any().add(audit_log::Column::At.lt(c.at)).add(
                    Condition::all()
                        .add(audit_log::Column::At.eq(c.at))
                        .add(audit_log::Column::Id.lt(c.id)),
                ),
            );
        }
        let mut rows = select
            .order_by_desc(audit_log::Column::At)
            .order_by_desc(audit_log::Column::Id)
            .limit(q.first + 1)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let has_next_page = keep_page(&mut rows, q.first);
        Ok(Page {
            items: rows
                .into_iter()
                .filter_map(|m| {
                    let action = AuditAction::parse(&m.action)?;
                    let cursor = AuditCursor { at: m.at, id: m.id }.encode();
                    Some((
                        cursor,
                        AuditEntry {
                            id: m.id,
                            at: m.at,
                            actor: m.actor,
                            action,
                            customer_id: m.customer_id,
                            client_ip: m.client_ip,
                            detail: m.detail,
                        },
                    ))
                })
                .collect(),
            has_next_page,
            total_count,
            total_count_is_estimate: false,
        })
    }
}

/// Keyset pages read `first + 1` rows: keeps `first` and says whether there was one more.
fn keep_page<T>(rows: &mut Vec<T>, first: u64) -> bool {
    let more = rows.len() as u64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    more
}
