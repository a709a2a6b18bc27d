//! The administrators' side of security events (`domain::events::EventStore`): subscriptions
//! and their deliveries as the Integrations page reads and changes them, each change with its
//! audit entry. What changes record and what the worker claims is `events.rs`, a floor below.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Result,
    admin::NewAudit,
    events::{Delivery, DeliveryStatus, EventStore, SecurityEvent, Subscription},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{event_delivery, event_subscription},
    events::{
        DEAD, PENDING, SqlEvents, delivery_row, to_delivery, to_subscription, types_to_column,
    },
    rows::insert_audit,
};

fn subscription_row(s: &Subscription) -> event_subscription::ActiveModel {
    event_subscription::ActiveModel {
        id: Set(s.id),
        name: Set(s.name.clone()),
        url: Set(s.url.clone()),
        format: Set(s.format.as_str().to_owned()),
        event_types: Set(types_to_column(&s.event_types)),
        enabled: Set(s.enabled),
        include_email: Set(s.include_email),
        audience: Set(s.audience.clone()),
        max_in_flight: Set(s.max_in_flight),
        secret_sealed: sea_orm::ActiveValue::NotSet,
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
    }
}

#[async_trait]
impl EventStore for SqlEvents {
    async fn subscriptions(&self) -> Result<Vec<Subscription>> {
        Ok(event_subscription::Entity::find()
            .order_by_asc(event_subscription::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .iter()
            .filter_map(to_subscription)
            .collect())
    }

    async fn subscription(&self, id: Uuid) -> Result<Option<Subscription>> {
        Ok(event_subscription::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .as_ref()
            .and_then(to_subscription))
    }

    async fn create_subscription(
        &self,
        s: &Subscription,
        sealed_secret: Option<Vec<u8>>,
        audit: NewAudit,
    ) -> Result<()> {
        let mut row = subscription_row(s);
        row.secret_sealed = Set(sealed_secret);
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                event_subscription::Entity::insert(row)
                    .exec_without_returning(txn)
                    .await
                    .map_err(db_err)?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn update_subscription(&self, s: &Subscription, audit: NewAudit) -> Result<()> {
        let row = subscription_row(s);
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                event_subscription::Entity::update(row)
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn delete_subscription(&self, id: Uuid, audit: NewAudit) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                event_delivery::Entity::delete_many()
                    .filter(event_delivery::Column::SubscriptionId.eq(id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                let gone = event_subscription::Entity::delete_by_id(id)
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected
                    > 0;
                if !gone {
                    return Ok(End::Rollback(false));
                }
                insert_audit(txn, audit).await?;
                Ok(End::Commit(true))
            })
        })
        .await
    }

    async fn set_secret(&self, id: Uuid, sealed: Vec<u8>, audit: NewAudit) -> Result<()> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                event_subscription::Entity::update_many()
                    .col_expr(
                        event_subscription::Column::SecretSealed,
                        Expr::value(Some(sealed)),
                    )
                    .col_expr(event_subscription::Column::UpdatedAt, Expr::value(audit.at))
                    .filter(event_subscription::Column::Id.eq(id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn queue_test(
        &self,
        subscription: Uuid,
        event: &SecurityEvent,
        audit: NewAudit,
    ) -> Result<Delivery> {
        let row = delivery_row(subscription, event, None, None);
        let _turn = self.write_turn.take(&self.db).await;
        let seq = unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let seq = event_delivery::Entity::insert(row)
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .last_insert_id;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(seq))
            })
        })
        .await?;
        event_delivery::Entity::find_by_id(seq)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .and_then(to_delivery)
            .ok_or_else(|| domain::Error::internal("a test delivery vanished"))
    }

    async fn deliveries(
        &self,
        subscription: Uuid,
        status: Option<DeliveryStatus>,
        first: u64,
    ) -> Result<Vec<Delivery>> {
        let mut find = event_delivery::Entity::find()
            .filter(event_delivery::Column::SubscriptionId.eq(subscription));
        if let Some(status) = status {
            find = find.filter(event_delivery::Column::Status.eq(status.as_str()));
        }
        Ok(find
            .order_by_desc(event_delivery::Column::Seq)
            .limit(first)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .filter_map(to_delivery)
            .collect())
    }

    async fn replay(
        &self,
        subscription: Uuid,
        seqs: Option<Vec<i64>>,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<u64> {
        let _turn = self.write_turn.take(&self.db).await;
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                use event_delivery::Column as C;
                let mut replay = event_delivery::Entity::update_many()
                    .col_expr(C::Status, Expr::value(PENDING))
                    .col_expr(C::Attempts, Expr::value(0))
                    .col_expr(C::NextAttemptAt, Expr::value(now))
                    .filter(C::SubscriptionId.eq(subscription))
                    .filter(C::Status.eq(DEAD));
                if let Some(seqs) = seqs {
                    replay = replay.filter(C::Seq.is_in(seqs));
                }
                let n = replay.exec(txn).await.map_err(db_err)?.rows_affected;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(n))
            })
        })
        .await
    }
}
