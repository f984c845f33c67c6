//! The slow queries fault.

use super::*;

/// Marks the MariaDB sleeps in the process list, so a clear can end the ones still running.
pub(super) const MYSQL_SLEEP_TAG: &str = "dbwatch-fault-slow-queries";

pub(super) async fn hold_slow_queries(args: &FaultArgs) -> anyhow::Result<()> {
    let application_name = Fault::SlowQueries.application_name();
    let sleep = args.sleep.as_secs_f64();
    let mut sessions = tokio::task::JoinSet::new();
    if args.engine.postgres() {
        let url = url(
            &args.pg_primary_url,
            "--pg-primary-url",
            "DBWATCH_PG_ADMIN_URL",
        )?;
        for _ in 0..args.sessions {
            let mut connection = pg_connect(url, &application_name).await?;
            sessions.spawn(async move {
                loop {
                    if let Err(error) = sqlx::query("SELECT pg_sleep($1)")
                        .bind(sleep)
                        .execute(&mut connection)
                        .await
                    {
                        tracing::warn!("postgres: pg_sleep failed: {error}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_primary_url,
            "--mysql-primary-url",
            "DBWATCH_MYSQL_ADMIN_URL",
        )?;
        for _ in 0..args.sessions {
            let mut connection = mysql_connect(url).await?;
            sessions.spawn(async move {
                loop {
                    // The comment is MYSQL_SLEEP_TAG.
                    let statement = sqlx::query("SELECT /* dbwatch-fault-slow-queries */ SLEEP(?)");
                    if let Err(error) = statement.bind(sleep).execute(&mut connection).await {
                        tracing::warn!("mysql: SLEEP failed: {error}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
    }
    ready(&format!(
        "{} sessions sleeping {} per statement",
        sessions.len(),
        humantime::format_duration(args.sleep)
    ));
    shutdown_signal().await;
    sessions.abort_all();
    Ok(())
}
