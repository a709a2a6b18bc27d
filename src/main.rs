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
    Schema {
        /// The subgraph SDL a federation gateway composes (`@link`, `@key`, `_entities`).
        #[arg(long)]
        federation: bool,
    },
    /// Manage admin users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Bring customers from another platform, with their password hashes.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Write every customer out, with the import's columns.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Credentials of the store's other services, for POST /introspect.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// The keys access tokens are signed with (published at /.well-known/jwks.json).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Make a credential; its secret is printed once (only a hash is kept).
    Create {
        name: String,
        /// Also answer it about admin tokens (a console or an admin tool); without this flag
        /// an admin token is `{"active": false}` to it.
        #[arg(long)]
        admin_tokens: bool,
    },
    /// Every credential's name and creation time.
    List,
    /// Delete a credential: its secret stops working at once.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Every key: generation, kid, state (signing, published, verifying, retired).
    List,
    /// Add a new signing key: published at once, signing after the JWKS max-age and two key
    /// refreshes. Nobody is signed out.
    Rotate,
    /// Retire keys whose tokens have all expired (or the one named).
    Retire {
        /// Only this key (a kid may start with '-': it is still taken as the kid).
        #[arg(allow_hyphen_values = true)]
        kid: Option<String>,
        /// Retire a superseded key now, though tokens it signed are still live (they stop
        /// working): for a key that leaked.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Every customer as CSV (header row) or JSON Lines, streamed.
    Customers {
        /// csv or jsonl (default: from --output's name, else csv).
        #[arg(long)]
        format: Option<String>,
        /// Include the password hashes (the file is then as sensitive as a database dump).
        #[arg(long)]
        with_password_hashes: bool,
        /// Where to write (default: standard output). Created with mode 0600; an existing
        /// file (or link) is refused unless `--force`.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// Replace whatever is at `--output`.
        #[arg(long)]
        force: bool,
        /// CSV cells exactly as stored: without it, a cell a spreadsheet would run as a formula
        /// (starting with = + - @, a tab or a carriage return) gets a leading `'`.
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import customers from CSV (header row) or JSON Lines. Columns: email, firstname,
    /// lastname, locale, created_at, password_hash, hash_format, external_id. Exit code 0 when
    /// every row was imported, updated or skipped; 2 when some were rejected.
    Customers {
        /// The file, or `-` for standard input.
        file: String,
        /// csv or jsonl (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        /// What to do when an address already has an account: skip, update or reject.
        #[arg(long, default_value = "skip")]
        on_conflict: String,
        /// Check the whole file and print the summary without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Where rejected rows go (default: FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<std::path::PathBuf>,
        /// PostgreSQL: connections that write at once (each address always on the same one; at
        /// most LATCHKEY_DATABASE_MAX_CONNECTIONS). SQLite always writes on one.
        #[arg(long, default_value_t = persistence::DEFAULT_PG_WRITERS as u16,
              value_parser = clap::value_parser!(u16).range(1..=16))]
        writers: u16,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin user. The password comes from LATCHKEY_ADMIN_PASSWORD or a prompt,
    /// never from an argument.
    Create {
        #[arg(long)]
        username: String,
        /// administrator, support or viewer.
        #[arg(long)]
        role: String,
        /// Where the console's "Forgot Your Password?" sends this admin a link (optional).
        #[arg(long)]
        email: Option<String>,
    },
    /// Remove every second factor and recovery code of an admin who lost them all (the last
    /// administrator, say), and sign them out everywhere; their next sign-in enrols a factor
    /// again. Audited as the OS user.
    #[command(name = "reset-2fa")]
    ResetTwoFactor { username: String },
}

fn admin_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("LATCHKEY_ADMIN_PASSWORD") {
        return Ok(p);
    }
    let first = rpassword::prompt_password("Password: ").context("reading the password")?;
    let again = rpassword::prompt_password("Password again: ").context("reading the password")?;
    anyhow::ensure!(first == again, "the passwords differ");
    Ok(first)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Schema { federation }) = cli.command {
        if federation {
            print!("{}", graphql::federation_sdl());
        } else {
            print!("{}", graphql::sdl());
        }
        return Ok(());
    }
    let config = Config::load().context("reading configuration")?;
    telemetry::init_logging(config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            latchkey::migrate(&config).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => serve(&config).await?,
        Command::Service { command } => service(&config, command).await?,
        Command::Keys { command } => {
            let out = match command {
                KeysCommand::List => latchkey::keys::list(&config).await?,
                KeysCommand::Rotate => latchkey::keys::rotate(&config).await?,
                KeysCommand::Retire { kid, force } => {
                    latchkey::keys::retire(&config, kid.as_deref(), force).await?
                }
            };
            print!("{out}");
        }
        Command::Admin { command } => admin(&config, command).await?,
        Command::Import { command } => import(&config, command).await?,
        Command::Export { command } => export(&config, command).await?,
        Command::Schema { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let server = latchkey::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let base = config.public_base_url();
    let metrics = server
        .metrics_addr()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    tracing::info!(
        address = %listener.local_addr()?,
        metrics = %metrics,
        graphiql = config.graphiql_enabled(),
        storefront = %format!("{base}/account/sign-in"),
        admin_console = %format!("{base}/admin"),
        "Latchkey is listening: POST /graphql"
    );
    latchkey::serve(server, listener, latchkey::shutdown_signal()).await
}

async fn service(config: &Config, command: ServiceCommand) -> anyhow::Result<()> {
    let services = latchkey::introspect::services(config).await?;
    let fail = |e: domain::Error| anyhow::anyhow!("{e}");
    match command {
        ServiceCommand::Create { name, admin_tokens } => {
            let (credential, secret) = services.create(&name, admin_tokens).await.map_err(fail)?;
            println!(
                "created service {}; its secret, shown only now (HTTP Basic {}:<secret> on POST /introspect):\n{}",
                credential.name,
                credential.name,
                secret.expose()
            );
        }
        ServiceCommand::List => {
            for c in services.list().await.map_err(fail)? {
                let scope = if c.admin_tokens {
                    "customer and admin tokens"
                } else {
                    "customer tokens"
                };
                println!("{}\t{}\t{scope}", c.name, c.created_at.to_rfc3339());
            }
        }
        ServiceCommand::Revoke { name } => {
            services.revoke(&name).await.map_err(|e| match e {
                domain::Error::NotFound => anyhow::anyhow!("no service named {name}"),
                e => fail(e),
            })?;
            println!("revoked service {name}");
        }
    }
    Ok(())
}

async fn admin(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let (username, role, email) = match command {
        AdminCommand::Create {
            username,
            role,
            email,
        } => (username, role, email),
        AdminCommand::ResetTwoFactor { username } => {
            let ended = latchkey::reset_admin_factors(config, &username).await?;
            println!(
                "removed every second factor of {username} and ended {ended} sessions; their next sign-in enrols one again"
            );
            return Ok(());
        }
    };
    let password = admin_password()?;
    let admin =
        latchkey::create_admin_with_email(config, &username, &role, &password, email.as_deref())
            .await?;
    println!(
        "created admin {} with role {}",
        admin.username,
        admin.role.as_str()
    );
    Ok(())
}

async fn import(config: &Config, command: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Customers {
        file,
        format,
        on_conflict,
        dry_run,
        rejects,
        writers,
    } = command;
    let format = match format.as_deref() {
        None => None,
        Some(f) => {
            Some(latchkey::import::Format::parse(f).context("--format: expected csv or jsonl")?)
        }
    };
    let on_conflict = domain::import::OnConflict::parse(&on_conflict)
        .context("--on-conflict: expected skip, update or reject")?;
    let summary = latchkey::import::run(
        config,
        latchkey::import::Options {
            file,
            format,
            on_conflict,
            dry_run,
            rejects,
            writers: usize::from(writers),
        },
    )
    .await?;
    summary.print(dry_run);
    if summary.counts.rejected > 0 {
        std::process::exit(2);
    }
    Ok(())
}

async fn export(config: &Config, command: ExportCommand) -> anyhow::Result<()> {
    use latchkey::import::Format;
    let ExportCommand::Customers {
        format,
        with_password_hashes,
        output,
        force,
        raw,
    } = command;
    let format = match format.as_deref() {
        Some(f) => Format::parse(f).context("--format: expected csv or jsonl")?,
        None => output
            .as_ref()
            .and_then(|p| p.to_str())
            .and_then(Format::of_path)
            .unwrap_or(Format::Csv),
    };
    let out: Box<dyn std::io::Write> = match &output {
        Some(path) => Box::new(
            latchkey::files::create_private(path, force)
                .with_context(|| format!("creating {} (--force replaces it)", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let n = latchkey::export::run(config, format, with_password_hashes, raw, out).await?;
    eprintln!("exported {n} customers");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retire_args(args: &[&str]) -> (Option<String>, bool) {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Some(Command::Keys {
                command: KeysCommand::Retire { kid, force },
            }) => (kid, force),
            _ => panic!("not keys retire"),
        }
    }

    /// A kid is a JWK thumbprint in base64url, so one in 64 starts with '-': the operator
    /// pastes it from `keys list` and it must be taken as the kid, not as an unknown option.
    #[test]
    fn keys_retire_takes_a_kid_that_starts_with_a_hyphen() {
        let kid = "-kQ3x9v2_abc";
        assert_eq!(
            retire_args(&["latchkey", "keys", "retire", kid]),
            (Some(kid.to_owned()), false)
        );
        assert_eq!(
            retire_args(&["latchkey", "keys", "retire", "--force", kid]),
            (Some(kid.to_owned()), true)
        );
        assert_eq!(
            retire_args(&["latchkey", "keys", "retire", kid, "--force"]),
            (Some(kid.to_owned()), true)
        );
        assert_eq!(retire_args(&["latchkey", "keys", "retire"]), (None, false));
        assert_eq!(
            retire_args(&["latchkey", "keys", "retire", "--force"]),
            (None, true)
        );
    }
}
