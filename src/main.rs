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

    /// TLS and basic-auth settings for the HTTP endpoint, in the Prometheus exporter-toolkit format, plus
    /// `write_users`: the users who may create and expire silences.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,

    /// Without basic_auth_users in --web.config.file, accept writes (creating and expiring silences) from
    /// anyone who can reach the listen address. Off by default: such writes are refused with 403.
    #[arg(long = "web.enable-unauthenticated-writes")]
    enable_unauthenticated_writes: bool,

    /// The URL users reach dbwatch at, for the links in notifications (default: http://<listen address>, https
    /// with TLS).
    #[arg(long = "web.external-url", value_name = "URL", value_parser = dbwatch::app::parse_external_url)]
    external_url: Option<String>,

    /// Folder for state kept across restarts (alert state; the notification outbox).
    #[arg(long = "storage.path", value_name = "DIR", default_value = "data")]
    storage_path: PathBuf,

    /// Log filter, as RUST_LOG (e.g. info, dbwatch=debug). The default quiets the Cassandra driver's echo of
    /// server warnings, which repeats on every poll for the virtual tables' aggregations.
    #[arg(
        long = "log.level",
        value_name = "FILTER",
        default_value = "info,scylla::network::connection=error"
    )]
    log_level: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validates a configuration file and the rule files it names; exits non-zero if they have problems.
    CheckConfig {
        /// The file to check (defaults to --config.file).
        file: Option<PathBuf>,
    },
    /// Alerting rules: check, unit-test (promtool's format) and export.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Checks rule files as `promtool check rules` does, plus dbwatch's supported PromQL subset.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Runs rule unit-test files in `promtool test rules` format.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Writes rules as one Prometheus rule file (default: the shipped rules built into the binary).
    Export {
        /// Rule files to export instead of the shipped ones.
        files: Vec<PathBuf>,
        /// Write a Prometheus Operator PrometheusRule object with this name.
        #[arg(long, value_name = "NAME")]
        prometheus_rule: Option<String>,
        /// The PrometheusRule's namespace.
        #[arg(long, value_name = "NAMESPACE", requires = "prometheus_rule")]
        namespace: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file.unwrap_or(cli.config_file)),
        Some(Command::Rules(command)) => rules_command(command),
        None => match run(
            &cli.config_file,
            cli.listen_address,
            cli.web_config_file.as_deref(),
            cli.storage_path,
            WebFlags {
                external_url: cli.external_url,
                unauthenticated_writes: cli.enable_unauthenticated_writes,
            },
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("dbwatch: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match dbwatch::app::load(file) {
        Ok(loaded) => {
            println!(
                "{}: ok, {} target{}, {} rule{} in {} rule file{}{}",
                file.display(),
                loaded.config.targets.len(),
                plural(loaded.config.targets.len()),
                loaded.rules.rule_count(),
                plural(loaded.rules.rule_count()),
                loaded.rule_files.len(),
                plural(loaded.rule_files.len()),
                match &loaded.config.alerting.routing_file {
                    Some(file) => format!(", routing from {}", file.display()),
                    None => String::new(),
                },
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

fn rules_command(command: RulesCommand) -> ExitCode {
    use dbwatch_rules as rules;
    match command {
        RulesCommand::Check { files } => match rules::load_rule_files(&files) {
            Ok(set) => {
                println!(
                    "SUCCESS: {} rule{} found in {} file{}",
                    set.rule_count(),
                    plural(set.rule_count()),
                    files.len(),
                    plural(files.len())
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        RulesCommand::Test { files } => match rules::run_tests(&files) {
            Ok(report) => {
                print!("{report}");
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                eprintln!("dbwatch: {error}");
                ExitCode::FAILURE
            }
        },
        RulesCommand::Export {
            files,
            prometheus_rule,
            namespace,
        } => {
            let set = if files.is_empty() {
                dbwatch::engines::shipped_rules()
            } else {
                rules::load_rule_files(&files)
            };
            let set = match set {
                Ok(set) => set,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            let format = match prometheus_rule {
                Some(name) => rules::ExportFormat::PrometheusOperator { name, namespace },
                None => rules::ExportFormat::Prometheus,
            };
            match rules::export(&set, &format) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("dbwatch: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The web flags beyond the listen address and the web config file.
struct WebFlags {
    external_url: Option<String>,
    unauthenticated_writes: bool,
}

/// After the daemon returned (within its shutdown deadline), how long blocking work still running (a bcrypt
/// verification, a rules evaluation, a save) may hold the exit.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

fn run(
    config_file: &std::path::Path,
    listen: SocketAddr,
    web_config_file: Option<&std::path::Path>,
    storage_path: PathBuf,
    flags: WebFlags,
) -> anyhow::Result<()> {
    // First of all: a storage folder that cannot be created or written, or that another dbwatch holds, ends
    // the start here with one line, before any poll, evaluation or notification could come to depend on it.
    // This function keeps a reference until it returns: locals drop in reverse order, so the runtime (and any
    // state write still running on its blocking pool) is gone before the lock is released.
    let storage = std::sync::Arc::new(dbwatch_storage::Storage::open(&storage_path)?);
    let loaded = dbwatch::app::load(config_file)?;
    let web = web_config_file
        .map(dbwatch::web::WebConfig::load)
        .transpose()?;
    let options = dbwatch::app::RunOptions {
        config_file: config_file.to_owned(),
        listen,
        web,
        storage: std::sync::Arc::clone(&storage),
        external_url: flags.external_url,
        unauthenticated_writes: flags.unauthenticated_writes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            dbwatch::app::shutdown_signal().await;
            tracing::info!("shutting down");
            signal_token.cancel();
        });
        dbwatch::app::run(loaded, options, shutdown).await
    });
    // Dropping the runtime would wait for every blocking task without limit.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result?;
    Ok(())
}

fn init_logging(filter: &str) {
    // `RUST_LOG` or the flag, with reqwest/hyper held below debug: their records can carry webhook URLs.
    dbwatch::logging::init(filter);
}
