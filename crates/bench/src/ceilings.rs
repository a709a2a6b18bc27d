//! The ceilings, run as processes of their own like the real server: a bare axum JSON
//! endpoint, and a minimal async-graphql server that reads one customer by primary key through
//! sea-orm (plus `POST /tx`: a bare sea-orm transaction with two inserts, the floor under
//! `requestPasswordReset`).

use std::net::SocketAddr;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::header,
    response::IntoResponse,
    routing::{get, post},
};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, EntityTrait, Statement, TransactionTrait,
    entity::prelude::*,
};

mod customer {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "customers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub firstname: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub async fn axum_json(addr: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route(
        "/json",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"ok":true}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[derive(SimpleObject)]
struct Customer {
    id: String,
    email: String,
}

struct Query;

#[Object]
impl Query {
    async fn customer(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Customer>> {
        let db = ctx.data::<DatabaseConnection>()?;
        let id = Uuid::parse_str(&id)?;
        Ok(customer::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|m| Customer {
                id: m.id.to_string(),
                email: m.email,
            }))
    }

    /// The signed-in check's SQL alone, without its HTTP stack, JWT or domain code: a live
    /// session by primary key joined with its customer, the same ten columns the server reads.
    async fn session(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Customer>> {
        let db = ctx.data::<DatabaseConnection>()?;
        let id = Uuid::parse_str(&id)?;
        let backend = db.get_database_backend();
        let sql = "SELECT t.last_used_at, c.id, c.email, c.firstname, c.lastname, c.locale, \
                   c.created_at, c.password_changed_at, c.locked_until, c.frozen_at \
                   FROM access_tokens t JOIN customers c ON c.id = t.customer_id \
                   WHERE t.id = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 LIMIT 1";
        let sql = match backend {
            sea_orm::DatabaseBackend::Postgres => sql.to_owned(),
            _ => sql.replace("$1", "?").replace("$2", "?"),
        };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [id.into(), chrono::Utc::now().into()],
            ))
            .await?;
        Ok(match row {
            Some(row) => Some(Customer {
                id: row.try_get::<Uuid>("", "id")?.to_string(),
                email: row.try_get("", "email")?,
            }),
            None => None,
        })
    }
}

#[derive(Clone)]
struct AppState {
    schema: Schema<Query, EmptyMutation, EmptySubscription>,
    db: DatabaseConnection,
}

async fn graphql(State(s): State<AppState>, body: Bytes) -> impl IntoResponse {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return (axum::http::StatusCode::BAD_REQUEST, Vec::new()),
    };
    let response = s.schema.execute(request).await;
    (
        axum::http::StatusCode::OK,
        serde_json::to_vec(&response).unwrap_or_default(),
    )
}

async fn two_inserts(State(s): State<AppState>) -> impl IntoResponse {
    let result = async {
        let txn = s.db.begin().await?;
        let backend = txn.get_database_backend();
        for _ in 0..2 {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                match backend {
                    sea_orm::DatabaseBackend::Postgres => {
                        "INSERT INTO bench_scratch (id) VALUES ($1)"
                    }
                    _ => "INSERT INTO bench_scratch (id) VALUES (?)",
                },
                [Uuid::now_v7().into()],
            ))
            .await?;
        }
        txn.commit().await
    }
    .await;
    match result {
        Ok(()) => (axum::http::StatusCode::OK, "{}"),
        Err(_) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "{}"),
    }
}

pub async fn graphql_lookup(addr: SocketAddr, url: String) -> anyhow::Result<()> {
    let mut options = sea_orm::ConnectOptions::new(url);
    options
        .max_connections(8)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(10))
        });
    let db = Database::connect(options).await?;
    let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(db.clone())
        .finish();
    let app = Router::new()
        .route("/graphql", post(graphql))
        .route("/tx", post(two_inserts))
        .with_state(AppState { schema, db });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
