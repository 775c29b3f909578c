//! The command line: parses, then calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};

use bizkit_mirror::admin::{keys_table, Admin, KeyRequest, WebhookRequest};
use bizkit_mirror::config::{DbConfig, LogConfig, ServeConfig};
use bizkit_mirror::contacts::ContactSettings;
use bizkit_mirror::server;
use bizkit_mirror::store::Mode;

#[derive(Parser)]
#[command(name = "bizkit-mirror", version, about = "BizKitHub's customer API, served from SQLite or PostgreSQL")]
struct Cli {
    #[command(flatten)]
    log: LogConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Parser)]
struct ServeOnly {
    #[command(flatten)]
    config: ServeConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeConfig>),
    /// Apply database migrations and exit.
    Migrate(DbConfig),
    /// Print the OpenAPI document this binary serves.
    Openapi,
    /// Manage organisations (in the configured database; audited as `cli`).
    Org {
        #[command(flatten)]
        db: DbConfig,
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Import contacts from a JSON array or NDJSON file (`-` for standard input), as the
    /// import endpoint does, straight into the configured database.
    Import {
        #[command(flatten)]
        db: DbConfig,
        /// The file to read; `-` reads standard input.
        file: std::path::PathBuf,
        /// The organisation whose data receives the contacts.
        #[arg(long, default_value = "default")]
        org: String,
        /// Write to the organisation's sandbox data instead of its live data.
        #[arg(long)]
        sandbox: bool,
        /// Region of phone numbers written without a country prefix.
        #[arg(long, env = "DEFAULT_PHONE_REGION", default_value = "CZ")]
        phone_region: String,
        /// Items written per transaction.
        #[arg(long, env = "IMPORT_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
    /// Manage API keys (in the configured database; audited as `cli`).
    Key {
        #[command(flatten)]
        db: DbConfig,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage webhook endpoints (in the configured database; audited as `cli`).
    Webhook {
        #[command(flatten)]
        db: DbConfig,
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Register an endpoint; its signing key is printed, once, on standard output.
    Add {
        #[arg(long)]
        org: String,
        /// http(s); public addresses only unless --allow-private.
        #[arg(long)]
        url: String,
        /// Comma-separated event types; every type when not given.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// The organisation's sandbox events instead of its live ones.
        #[arg(long)]
        sandbox: bool,
        /// Accept an endpoint on a private network or on this machine (the server must
        /// allow it too: WEBHOOK_ALLOW_PRIVATE_TARGETS).
        #[arg(long)]
        allow_private: bool,
    },
    /// List endpoints (never their keys), of one organisation or of all.
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Remove an endpoint and its queued deliveries.
    Delete { id: i64 },
    /// The latest attempts to deliver to an endpoint, newest first.
    Deliveries { id: i64 },
    /// Send an event again to every endpoint that wants it.
    Replay { event_id: i64 },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation with its live and sandbox data spaces.
    Create {
        /// 1 to 63 lower-case letters, digits or hyphens.
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// List every organisation.
    List,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key and print it, once, on standard output.
    Create {
        #[arg(long)]
        org: String,
        /// PROD, DEV (or DEV_) or ROOT.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        label: Option<String>,
        /// Comma-separated; defaults by kind.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// RFC 3339, in the future.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        rate_limit_per_minute: Option<i64>,
    },
    /// List an organisation's keys (never the keys themselves).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by id. Servers on PostgreSQL refuse it within a second; a server on
    /// SQLite, within KEY_CACHE_SECONDS.
    Revoke { id: i64 },
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    server::init_logging(cli.log.log_format);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // Through the logger, so LOG_FORMAT=json stays parseable to the last line.
            tracing::error!(error = format!("{err:#}"), "fatal");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives threads that allocate at the same time arenas of their own, up to
/// eight per core, and each keeps the memory freed into it: the runtime's workers and every
/// SQLite connection's thread spread one import's short-lived batches over a dozen arenas,
/// and the process held twice its heap (`bench/import.sh`). One arena keeps resident memory
/// near the heap, at no measured cost to request rates. `MALLOC_ARENA_MAX` in the
/// environment still decides where it is set.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first in `main`, before any other thread exists; mallopt only
        // changes a setting of the allocator, and on failure leaves it as it was.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::Openapi) => {
            print!("{}", bizkit_mirror::http::ops::OPENAPI_YAML);
            Ok(())
        }
        Some(Command::Migrate(db)) => runtime.block_on(async {
            open(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }),
        Some(Command::Org { db, command }) => runtime.block_on(async {
            let store = open(&db).await?;
            let admin = Admin::cli(&store);
            match command {
                OrgCommand::Create { slug, name } => {
                    let org = admin.create_organisation(Some(&slug), Some(&name)).await?;
                    println!("created organisation {} ({})", org.slug, org.name);
                }
                OrgCommand::List => {
                    for org in admin.list_organisations().await? {
                        println!("{}\t{}\t{}", org.slug, org.created_at.format("%Y-%m-%d %H:%M:%S"), org.name);
                    }
                }
            }
            Ok(())
        }),
        Some(Command::Import { db, file, org, sandbox, phone_region, batch_size }) => runtime.block_on(async {
            let phone_region = bizkit_mirror::normalize::parse_region(&phone_region)
                .with_context(|| format!("{phone_region:?} is not a region code such as CZ"))?;
            let store = open(&db).await?;
            let mode = if sandbox { Mode::Sandbox } else { Mode::Live };
            let space = store.space_of(&org, mode).await.with_context(|| format!("no organisation {org:?}"))?;
            // The operator's own file: no limit on its size or its failures.
            let import_limits = bizkit_mirror::import::ImportLimits::NONE;
            let settings = ContactSettings { phone_region, import_batch: batch_size as usize, import_limits };
            let report = |r: &bizkit_mirror::import::ItemResult| {
                if let Err(e) = &r.outcome {
                    eprintln!("item {}: {}", r.index, bizkit_mirror::http::import::item_error(e));
                }
            };
            let summary = bizkit_mirror::import::file::import_file(store, space, settings, &file, report).await?;
            println!(
                "imported {} items into {org} ({}): {} written, {} created, {} failed",
                summary.items,
                mode.as_str(),
                summary.ok,
                summary.created,
                summary.failed
            );
            if let Some(stop) = &summary.stop {
                anyhow::bail!("the import stopped early: {stop:?}");
            }
            if summary.failed > 0 {
                anyhow::bail!("{} items failed (listed above)", summary.failed);
            }
            Ok(())
        }),
        Some(Command::Key { db, command }) => runtime.block_on(async {
            let store = open(&db).await?;
            let admin = Admin::cli(&store);
            match command {
                KeyCommand::Create { org, kind, label, scopes, expires_at, rate_limit_per_minute } => {
                    let request = KeyRequest {
                        organisation: Some(org),
                        kind: Some(kind),
                        label,
                        scopes,
                        expires_at,
                        rate_limit_per_minute,
                    };
                    let created = admin.create_key(request).await?;
                    // The key alone on standard output, so scripts can capture it; it is
                    // stored nowhere and never shown again.
                    println!("{}", created.key.expose());
                    eprintln!(
                        "created key {} ({}, {}) for organisation {}; it is shown only now",
                        created.info.id,
                        created.info.prefix,
                        created.info.kind.as_str(),
                        created.organisation
                    );
                }
                KeyCommand::List { org } => print!("{}", keys_table(&admin.list_keys(Some(&org)).await?)),
                KeyCommand::Revoke { id } => {
                    let (revoked, _) = admin.revoke_key(Some(id)).await?;
                    println!(
                        "{}",
                        if revoked { format!("revoked key {id}") } else { format!("key {id} was already revoked") }
                    );
                }
            }
            Ok(())
        }),
        Some(Command::Webhook { db, command }) => runtime.block_on(async {
            let store = open(&db).await?;
            let admin = Admin::cli(&store);
            match command {
                WebhookCommand::Add { org, url, events, sandbox, allow_private } => {
                    let mode = Some(if sandbox { "sandbox" } else { "live" }.to_owned());
                    let request = WebhookRequest { organisation: Some(org), url: Some(url), events, mode };
                    let reach = if allow_private {
                        bizkit_mirror::webhooks::Reach::Private
                    } else {
                        bizkit_mirror::webhooks::Reach::Public
                    };
                    let created = admin.create_webhook(request, reach).await?;
                    println!("{}", created.secret);
                    eprintln!(
                        "created webhook endpoint {} for {} ({}); its signing key is shown only now",
                        created.endpoint.id,
                        created.endpoint.organisation,
                        created.endpoint.mode.as_str()
                    );
                }
                WebhookCommand::List { org } => {
                    for e in admin.list_webhooks(org.as_deref()).await? {
                        let events = e.events.map(|l| l.join(",")).unwrap_or_else(|| "*".into());
                        let state = match (&e.disabled_at, &e.disabled_reason) {
                            (Some(at), reason) => {
                                format!(
                                    "disabled {} ({})",
                                    at.format("%Y-%m-%d %H:%M:%S"),
                                    reason.as_deref().unwrap_or("")
                                )
                            }
                            (None, _) => "enabled".to_owned(),
                        };
                        println!("{}\t{}\t{}\t{}\t{events}\t{state}", e.id, e.organisation, e.mode.as_str(), e.url);
                    }
                }
                WebhookCommand::Delete { id } => {
                    let deleted = admin.delete_webhook(Some(id)).await?;
                    println!(
                        "{}",
                        if deleted { format!("deleted endpoint {id}") } else { format!("no endpoint {id}") }
                    );
                }
                WebhookCommand::Deliveries { id } => {
                    for a in admin.webhook_attempts(Some(id)).await? {
                        let status = a.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
                        println!(
                            "{}\tevent {}\t{}\t{status}\t{} ms\t{}\t{}",
                            a.attempted_at.format("%Y-%m-%d %H:%M:%S"),
                            a.event_id,
                            a.event_type,
                            a.latency_ms,
                            a.delivery_state,
                            a.error.unwrap_or_default()
                        );
                    }
                }
                WebhookCommand::Replay { event_id } => {
                    let n = admin.replay_event(Some(event_id)).await?;
                    println!("event {event_id} queued for {n} endpoint(s)");
                }
            }
            Ok(())
        }),
        command => {
            let config = match command {
                Some(Command::Serve(config)) => *config,
                // No command: serve with settings from the environment and defaults.
                _ => ServeOnly::parse_from(["bizkit-mirror"]).config,
            };
            runtime.block_on(server::run(config, server::shutdown_signal()))
        }
    }
}

async fn open(db: &DbConfig) -> anyhow::Result<bizkit_mirror::store::DynStore> {
    bizkit_mirror::store::connect(db.database_url.expose(), &db.pool_settings())
        .await
        .with_context(|| format!("cannot open DATABASE_URL {}", db.database_url))
}
