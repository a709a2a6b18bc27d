//! `latchkey`: `serve` (default), `migrate`, `schema`.

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::clock::SystemClock;
use latchkey::{config::Config, telemetry};

#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Customer password reset and session control, over GraphQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Schema) = cli.command {
        print!("{}", graphql::sdl());
        return Ok(());
    }
    let config = Config::load().context("reading configuration")?;
    telemetry::init_logging(config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            latchkey::migrate(&config).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let server = latchkey::build(&config, Arc::new(SystemClock)).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            tracing::info!(
                address = %listener.local_addr()?,
                graphiql = config.graphiql_enabled(),
                "Latchkey is listening: POST /graphql"
            );
            latchkey::serve(server, listener, latchkey::shutdown_signal()).await?;
        }
        Command::Schema => unreachable!("handled above"),
    }
    Ok(())
}
