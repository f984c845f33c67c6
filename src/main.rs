//! The dbwatch binary: flags, logging, exit codes. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "dbwatch",
    version,
    about = "Watches five kinds of databases and serves Prometheus metrics"
)]
struct Cli {
    /// Path to the configuration file.
    #[arg(
        long = "config.file",
        value_name = "FILE",
        default_value = "dbwatch.yml",
        global = true
    )]
    config_file: PathBuf,

    /// Address to serve /metrics, /-/healthy and /-/ready on.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = "127.0.0.1:9630"
    )]
    listen_address: SocketAddr,

    /// Log filter, as RUST_LOG (e.g. info, dbwatch=debug).
    #[arg(long = "log.level", value_name = "FILTER", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validates a configuration file and exits non-zero if it has problems.
    CheckConfig {
        /// The file to check (defaults to --config.file).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file.unwrap_or(cli.config_file)),
        None => match run(&cli.config_file, cli.listen_address) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("dbwatch: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match dbwatch::config::load_file(file) {
        Ok(config) => {
            println!(
                "{}: ok, {} target{}",
                file.display(),
                config.targets.len(),
                if config.targets.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run(config_file: &std::path::Path, listen: SocketAddr) -> anyhow::Result<()> {
    let config = dbwatch::config::load_file(config_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            dbwatch::app::shutdown_signal().await;
            tracing::info!("shutting down");
            signal_token.cancel();
        });
        dbwatch::app::run(config, listen, shutdown).await
    })?;
    Ok(())
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
