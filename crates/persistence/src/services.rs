//! Service credentials (`domain::services`): a name and the SHA-256 of a secret.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Result,
    services::{ServiceCredential, ServiceStore},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};
use uuid::Uuid;

use crate::{db::WriteTurn, db::db_err, entities::service_credential};

fn to_credential(m: service_credential::Model) -> ServiceCredential {
    ServiceCredential {
        id: m.id,
        name: m.name,
        created_at: m.created_at,
        revoked_at: m.revoked_at,
        admin_tokens: m.admin_tokens,
    }
}

/// Service credentials.
#[derive(Debug, Clone)]
pub struct SqlServices {
    pub(crate) db: DatabaseConnection,
    /// SQLite's write turn, shared with the other writers that run all the time.
    pub(crate) write_turn: WriteTurn,
}

#[async_trait]
impl ServiceStore for SqlServices {
    async fn add_service(
        &self,
        name: &str,
        secret_hash: &str,
        admin_tokens: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<ServiceCredential>> {
        let _turn = self.write_turn.take(&self.db).await;
        let row = service_credential::Model {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            secret_hash: secret_hash.to_owned(),
            created_at: now,
            revoked_at: None,
            admin_tokens,
        };
        let active = service_credential::ActiveModel {
            id: Set(row.id),
            name: Set(row.name.clone()),
            secret_hash: Set(row.secret_hash.clone()),
            created_at: Set(now),
            revoked_at: Set(None),
            admin_tokens: Set(admin_tokens),
        };
        match service_credential::Entity::insert(active)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(Some(to_credential(row))),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(None),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn service_by_secret_hash(&self, secret_hash: &str) -> Result<Option<ServiceCredential>> {
        Ok(service_credential::Entity::find()
            .filter(service_credential::Column::SecretHash.eq(secret_hash))
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(to_credential))
    }

    async fn services(&self) -> Result<Vec<ServiceCredential>> {
        Ok(service_credential::Entity::find()
            .order_by_asc(service_credential::Column::Name)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_credential)
            .collect())
    }

    async fn revoke_service(&self, name: &str, _now: DateTime<Utc>) -> Result<bool> {
        // Gone, not marked: the name is free for the service's next credential.
        let _turn = self.write_turn.take(&self.db).await;
        let done = service_credential::Entity::delete_many()
            .filter(service_credential::Column::Name.eq(name))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected == 1)
    }
}
