//! dbwatch-workload: traffic shaped like the seed's e-commerce flows, for the local fleet and the demo.
//!
//!   eval "$(deploy/local/fleet env)"
//!   dbwatch-workload --rate 20 --duration 10m
//!
//! One module per engine (`postgres.rs`); `driver.rs` holds the clocks, counters and shutdown they share.
//! Database errors are counted and logged and never stop the run; SIGINT or SIGTERM (or --duration) stop it
//! cleanly: no new orders, the ones in flight finish, a summary line is logged.

mod driver;
mod postgres;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "dbwatch-workload",
    version,
    about = "Drives e-commerce traffic against the local fleet's databases (orders, then analytics reads)"
)]
struct Cli {
    /// Which database's flow to run.
    #[arg(long, value_enum, default_value_t = Engine::Postgres)]
    engine: Engine,

    /// Orders per second (fractions allowed).
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    rate: f64,

    /// Stop after this long (e.g. 30s, 10m, 1h); by default run until SIGINT/SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// Pause between two analytics queries (they take turns).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    analytics_interval: Duration,

    /// Client-side deadline of one order or one analytics query.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Orders running at once; when all are busy a tick is skipped and counted as `skipped`.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_in_flight: usize,

    /// Interval of the progress line.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    progress_interval: Duration,

    /// Log filter, as RUST_LOG (e.g. info, dbwatch_workload=debug).
    #[arg(long = "log-level", value_name = "FILTER", default_value = "info")]
    log_level: String,

    #[command(flatten)]
    postgres: postgres::PostgresArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// analytics.fact_sales / analytics.dim_customers through PgBouncer, reports on the replica.
    Postgres,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
        }
    }
}

impl Cli {
    fn settings(&self) -> anyhow::Result<driver::Settings> {
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0 && self.rate <= 10_000.0,
            "--rate must be above 0 and at most 10000 orders/s"
        );
        anyhow::ensure!(
            self.max_in_flight >= 1,
            "--max-in-flight must be at least 1"
        );
        for (flag, value) in [
            ("--analytics-interval", self.analytics_interval),
            ("--timeout", self.timeout),
            ("--progress-interval", self.progress_interval),
        ] {
            anyhow::ensure!(!value.is_zero(), "{flag} must be longer than 0");
        }
        Ok(driver::Settings {
            rate: self.rate,
            analytics_interval: self.analytics_interval,
            timeout: self.timeout,
            max_in_flight: self.max_in_flight,
            progress_interval: self.progress_interval,
            drain_timeout: self.timeout,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match run(cli) {
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
    runtime.block_on(async {
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
        banner(&cli);
        match cli.engine {
            Engine::Postgres => {
                let workload = Arc::new(postgres::Postgres::new(&cli.postgres, cli.timeout)?);
                tokio::select! {
                    _ = workload.probe() => {}
                    _ = stop.cancelled() => {}
                }
                driver::run(workload, settings, stop).await;
            }
        }
        anyhow::Ok(())
    })?;
    // Do not wait for blocking tasks (DNS lookups) of connections that never came up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn banner(cli: &Cli) {
    tracing::info!(
        "dbwatch-workload {}: engine {}, {} orders/s, {}",
        env!("CARGO_PKG_VERSION"),
        cli.engine.name(),
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
        assert_eq!(cli.engine, Engine::Postgres);
        assert!(cli.settings().is_ok());
    }

    #[test]
    fn a_zero_rate_is_refused() {
        let cli = Cli::try_parse_from(["dbwatch-workload", "--rate", "0"]).expect("parses");
        assert!(cli.settings().is_err());
    }
}
