//! dbwatch-workload: traffic shaped like the seed's e-commerce flows, for the local fleet and the demo, and the
//! faults that make dbwatch's alerts fire.
//!
//!   eval "$(deploy/local/fleet env)"
//!   dbwatch-workload --rate 20 --duration 10m
//!   dbwatch-workload fault replica-lag start      # ... clear; --engine mysql --delay 30s for a delayed replica
//!
//! One module per store (`postgres.rs`, `mysql.rs`, `mongodb.rs`, `cassandra.rs`, `dynamodb.rs`); `driver.rs`
//! holds the clocks, counters, follow-up writes and shutdown they share; `faults.rs` the faults. The flows:
//! an order in MySQL, then its sale in the PostgreSQL warehouse; a user action in DynamoDB, then its event in
//! Cassandra; a catalog visit (page, search, review) in MongoDB. Database errors are counted and logged and
//! never stop the run, nor the other stores; SIGINT or SIGTERM (or --duration, or --count) stop it cleanly.

mod cassandra;
mod driver;
mod dynamodb;
mod faults;
mod mongodb;
mod mysql;
mod postgres;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::driver::{Quota, Sink, Stats};

#[derive(Parser, Debug)]
#[command(
    name = "dbwatch-workload",
    version,
    about = "Drives the seed's e-commerce traffic against the local fleet's five databases, and injects faults",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Stores to drive, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,mysql,mongodb,cassandra,dynamodb"
    )]
    stores: Vec<Store>,

    /// Ticks per second of each store: orders (MySQL; PostgreSQL alone without it), user actions (DynamoDB;
    /// Cassandra alone without it), catalog visits (MongoDB). Fractions allowed.
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    rate: f64,

    /// Stop after this long (e.g. 30s, 10m, 1h); by default run until SIGINT/SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// Stop once each driven store has done N ticks (and their follow-up writes are done).
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// Pause between two analytics queries of a store (they take turns).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    analytics_interval: Duration,

    /// Client-side deadline of one tick or one analytics query.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Ticks running at once per store; when all are busy a tick is skipped and counted as `skipped`.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_in_flight: usize,

    /// Interval of the progress line.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    progress_interval: Duration,

    /// Shoppers of the DynamoDB and Cassandra flows are drawn from 1..=N.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    users: u32,

    /// Log filter, as RUST_LOG (e.g. info, dbwatch_workload=debug).
    #[arg(
        long = "log-level",
        value_name = "FILTER",
        default_value = "info",
        global = true
    )]
    log_level: String,

    #[command(flatten)]
    postgres: postgres::PostgresArgs,

    #[command(flatten)]
    mysql: mysql::MysqlArgs,

    #[command(flatten)]
    mongodb: mongodb::MongodbArgs,

    #[command(flatten)]
    cassandra: cassandra::CassandraArgs,

    #[command(flatten)]
    dynamodb: dynamodb::DynamodbArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start or clear a fault (idempotent; the state is kept so that another process can clear it).
    Fault(faults::FaultArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// analytics.fact_sales / dim_customers through PgBouncer, reports on the replica.
    Postgres,
    /// shop.customers / orders / inventory / payments on the primary.
    Mysql,
    /// catalog.products: pages, tag searches, reviews.
    Mongodb,
    /// ecommerce_logs.user_events.
    Cassandra,
    /// UserSessions, ShoppingCart, Notifications.
    Dynamodb,
}

impl Cli {
    fn settings(&self) -> anyhow::Result<driver::Settings> {
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0 && self.rate <= 10_000.0,
            "--rate must be above 0 and at most 10000 ticks/s"
        );
        anyhow::ensure!(
            self.max_in_flight >= 1,
            "--max-in-flight must be at least 1"
        );
        anyhow::ensure!(self.users >= 1, "--users must be at least 1");
        anyhow::ensure!(!self.stores.is_empty(), "--stores names no store");
        anyhow::ensure!(self.count != Some(0), "--count must be at least 1");
        for (flag, value) in [
            ("--analytics-interval", self.analytics_interval),
            ("--timeout", self.timeout),
            ("--progress-interval", self.progress_interval),
        ] {
            anyhow::ensure!(!value.is_zero(), "{flag} must be longer than 0");
        }
        Ok(driver::Settings {
            rate: Some(self.rate),
            analytics_interval: self.analytics_interval,
            timeout: self.timeout,
            max_in_flight: self.max_in_flight,
            drain_timeout: self.timeout,
            prepare_retry: Duration::from_secs(5),
        })
    }

    fn drives(&self, store: Store) -> bool {
        self.stores.contains(&store)
    }

    /// The settings of a store whose traffic arrives from another store's ticks: no tick loop of its own.
    fn fed(&self, settings: &driver::Settings, feeder: Store) -> driver::Settings {
        driver::Settings {
            rate: if self.drives(feeder) {
                None
            } else {
                settings.rate
            },
            ..settings.clone()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let outcome = match &cli.command {
        Some(Command::Fault(args)) => faults::main(args),
        None => run(cli),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dbwatch-workload: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(drive(&cli, settings))?;
    // Do not wait for blocking tasks (DNS lookups) of connections that never came up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn drive(cli: &Cli, settings: driver::Settings) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!("{signal} received, shutting down");
        signal_stop.cancel();
    });
    if let Some(duration) = cli.duration {
        let timer_stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(duration) => {
                    tracing::info!("--duration {} reached, shutting down", humantime::format_duration(duration));
                    timer_stop.cancel();
                }
                _ = timer_stop.cancelled() => {}
            }
        });
    }
    banner(cli);
    let started = Instant::now();

    // Build every driven store first, so a bad flag fails before any traffic.
    let pg_stats = Stats::new("postgres", "sales");
    let mysql_stats = Stats::new("mysql", "orders");
    let mongo_stats = Stats::new("mongodb", "visits");
    let cass_stats = Stats::new("cassandra", "events");
    let dynamo_stats = Stats::new("dynamodb", "actions");
    let postgres = match cli.drives(Store::Postgres) {
        true => Some(Arc::new(postgres::Postgres::new(
            &cli.postgres,
            cli.timeout,
        )?)),
        false => None,
    };
    let cassandra = match cli.drives(Store::Cassandra) {
        true => Some(Arc::new(cassandra::Cassandra::new(
            &cli.cassandra,
            cli.timeout,
            cli.users,
        )?)),
        false => None,
    };
    let sales = postgres
        .as_ref()
        .map(|pg| Sink::new(pg.clone(), pg_stats.clone(), cli.max_in_flight, cli.timeout));
    let events = cassandra.as_ref().map(|cass| {
        Sink::new(
            cass.clone(),
            cass_stats.clone(),
            cli.max_in_flight,
            cli.timeout,
        )
    });
    let mysql = match cli.drives(Store::Mysql) {
        true => Some(Arc::new(mysql::Mysql::new(&cli.mysql, cli.timeout, sales)?)),
        false => None,
    };
    let mongodb = match cli.drives(Store::Mongodb) {
        true => Some(Arc::new(
            mongodb::Mongodb::new(&cli.mongodb, cli.timeout).await?,
        )),
        false => None,
    };
    let dynamodb = match cli.drives(Store::Dynamodb) {
        true => Some(Arc::new(
            dynamodb::Dynamodb::new(
                &cli.dynamodb,
                cli.timeout,
                cli.users,
                cli.mongodb.products,
                events,
            )
            .await?,
        )),
        false => None,
    };

    let mut stats = Vec::new();
    let mut loops = 0;
    let pg_settings = cli.fed(&settings, Store::Mysql);
    let cass_settings = cli.fed(&settings, Store::Dynamodb);
    for (driven, store_settings, store_stats) in [
        (postgres.is_some(), &pg_settings, &pg_stats),
        (mysql.is_some(), &settings, &mysql_stats),
        (mongodb.is_some(), &settings, &mongo_stats),
        (cassandra.is_some(), &cass_settings, &cass_stats),
        (dynamodb.is_some(), &settings, &dynamo_stats),
    ] {
        if driven {
            stats.push(store_stats.clone());
            loops += usize::from(store_settings.rate.is_some());
        }
    }
    let quota = cli
        .count
        .map(|count| Quota::new(count, loops, stop.clone()));

    let progress_stop = CancellationToken::new();
    let progress = tokio::spawn(driver::progress_loop(
        stats.clone(),
        cli.progress_interval,
        progress_stop.clone(),
    ));
    if let Some(pg) = &postgres {
        pg.probe().await;
    }
    tokio::join!(
        async {
            if let Some(pg) = &postgres {
                driver::run(
                    pg.clone(),
                    pg_stats.clone(),
                    pg_settings.clone(),
                    quota.clone(),
                    stop.clone(),
                )
                .await;
            }
        },
        async {
            if let Some(mysql) = &mysql {
                driver::run(
                    mysql.clone(),
                    mysql_stats.clone(),
                    settings.clone(),
                    quota.clone(),
                    stop.clone(),
                )
                .await;
            }
        },
        async {
            if let Some(mongodb) = &mongodb {
                driver::run(
                    mongodb.clone(),
                    mongo_stats.clone(),
                    settings.clone(),
                    quota.clone(),
                    stop.clone(),
                )
                .await;
            }
        },
        async {
            if let Some(cassandra) = &cassandra {
                driver::run(
                    cassandra.clone(),
                    cass_stats.clone(),
                    cass_settings.clone(),
                    quota.clone(),
                    stop.clone(),
                )
                .await;
            }
        },
        async {
            if let Some(dynamodb) = &dynamodb {
                driver::run(
                    dynamodb.clone(),
                    dynamo_stats.clone(),
                    settings.clone(),
                    quota.clone(),
                    stop.clone(),
                )
                .await;
            }
        },
    );
    // The feeding stores first: their pending follow-ups still need the target's connections.
    if let Some(mysql) = &mysql {
        mysql.close(cli.timeout).await;
    }
    if let Some(dynamodb) = &dynamodb {
        dynamodb.close(cli.timeout).await;
    }
    if let Some(pg) = &postgres {
        pg.close().await;
    }
    progress_stop.cancel();
    if let Err(error) = progress.await {
        tracing::warn!("progress task ended abnormally: {error}");
    }
    driver::summarize(&stats, started.elapsed());
    Ok(())
}

fn banner(cli: &Cli) {
    let stores: Vec<String> = cli
        .stores
        .iter()
        .map(|store| format!("{store:?}").to_lowercase())
        .collect();
    tracing::info!(
        "dbwatch-workload {}: {}, {} ticks/s per store, {}",
        env!("CARGO_PKG_VERSION"),
        stores.join(", "),
        cli.rate,
        match cli.duration {
            Some(duration) => format!("for {}", humantime::format_duration(duration)),
            None => "until SIGINT/SIGTERM".to_owned(),
        }
    );
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn shutdown_signal() -> &'static str {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(
                    "cannot listen for SIGTERM ({error}); only SIGINT stops the workload"
                );
                let _ = interrupt.await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = interrupt => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        "Ctrl-C"
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: the demo writes the log to a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_20_orders_a_second_until_stopped() {
        let cli = Cli::try_parse_from(["dbwatch-workload", "--pg-url", "postgres://u:p@h/shop"])
            .expect("parses");
        assert_eq!(cli.rate, 20.0);
        assert_eq!(cli.duration, None);
        assert_eq!(cli.stores.len(), 5);
        assert!(cli.settings().is_ok());
    }

    #[test]
    fn a_fed_store_runs_no_tick_loop_of_its_own() {
        let cli = Cli::try_parse_from(["dbwatch-workload"]).expect("parses");
        let settings = cli.settings().expect("valid");
        assert_eq!(cli.fed(&settings, Store::Mysql).rate, None);
        let alone =
            Cli::try_parse_from(["dbwatch-workload", "--stores", "postgres"]).expect("parses");
        let settings = alone.settings().expect("valid");
        assert_eq!(alone.fed(&settings, Store::Mysql).rate, Some(20.0));
    }

    #[test]
    fn a_fault_is_a_subcommand() {
        let cli = Cli::try_parse_from(["dbwatch-workload", "fault", "replica-lag", "start"])
            .expect("parses");
        assert!(matches!(cli.command, Some(Command::Fault(_))));
    }

    #[test]
    fn a_zero_rate_is_refused() {
        let cli = Cli::try_parse_from(["dbwatch-workload", "--rate", "0"]).expect("parses");
        assert!(cli.settings().is_err());
    }
}
