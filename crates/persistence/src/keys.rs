//! Signing keys (`domain::keys`): one row per key, the private half sealed by the domain
//! before it gets here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Result,
    keys::{KeyStore, StoredKey},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    SqlErr, sea_query::Expr,
};

use crate::{db::WriteTurn, db::db_err, entities::signing_key};

/// Signing keys.
#[derive(Debug, Clone)]
pub struct SqlKeys {
    pub(crate) db: DatabaseConnection,
    /// SQLite's write turn, shared with the other writers that run all the time.
    pub(crate) write_turn: WriteTurn,
}

#[async_trait]
impl KeyStore for SqlKeys {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        Ok(signing_key::Entity::find()
            .order_by_asc(signing_key::Column::Generation)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|m| StoredKey {
                kid: m.kid,
                generation: m.generation,
                algorithm: m.algorithm,
                public_key: m.public_key,
                sealed_private_key: m.sealed_private_key,
                created_at: m.created_at,
                signs_from: m.signs_from,
                retired_at: m.retired_at,
            })
            .collect())
    }

    async fn add_signing_key(&self, key: StoredKey) -> Result<bool> {
        let _turn = self.write_turn.take(&self.db).await;
        let row = signing_key::ActiveModel {
            kid: Set(key.kid),
            generation: Set(key.generation),
            algorithm: Set(key.algorithm),
            public_key: Set(key.public_key),
            sealed_private_key: Set(key.sealed_private_key),
            created_at: Set(key.created_at),
            signs_from: Set(key.signs_from),
            retired_at: Set(key.retired_at),
        };
        match signing_key::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(false)
            }
            Err(e) => Err(db_err(e)),
        }
    }

    async fn retire_signing_key(&self, kid: &str, now: DateTime<Utc>) -> Result<bool> {
        let _turn = self.write_turn.take(&self.db).await;
        let done = signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Expr::value(Some(now)))
            .col_expr(
                signing_key::Column::SealedPrivateKey,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(signing_key::Column::RetiredAt.is_null())
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected == 1)
    }
}
