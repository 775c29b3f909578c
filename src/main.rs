//! The command line: parses, then calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};

use bizkit_mirror::config::{DbConfig, LogConfig, ServeConfig};
use bizkit_mirror::server;

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
    Serve(ServeConfig),
    /// Apply database migrations and exit.
    Migrate(DbConfig),
    /// Print the OpenAPI document this binary serves.
    Openapi,
}

fn main() -> std::process::ExitCode {
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

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::Openapi) => {
            print!("{}", bizkit_mirror::http::ops::OPENAPI_YAML);
            Ok(())
        }
        Some(Command::Migrate(db)) => runtime.block_on(async {
            bizkit_mirror::store::connect(db.database_url.expose(), &db.pool_settings())
                .await
                .with_context(|| format!("cannot open DATABASE_URL {}", db.database_url))?;
            tracing::info!("migrations applied");
            Ok(())
        }),
        command => {
            let config = match command {
                Some(Command::Serve(config)) => config,
                // No command: serve with settings from the environment and defaults.
                _ => ServeOnly::parse_from(["bizkit-mirror"]).config,
            };
            runtime.block_on(server::run(config, server::shutdown_signal()))
        }
    }
}
