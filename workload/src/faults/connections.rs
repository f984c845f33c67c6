//! The connections fault.

use super::*;

/// Connections to open so that `fraction` of `usable` are in use, `in_use` being open already.
pub fn connections_to_open(fraction: f64, usable: f64, in_use: f64) -> u32 {
    let wanted = (fraction * usable).ceil();
    (wanted - in_use).clamp(0.0, 1000.0) as u32
}

/// The holder of `connections`: opens the connections, says `ready`, holds them until SIGTERM.
pub(super) async fn hold_connections(args: &FaultArgs) -> anyhow::Result<()> {
    let application_name = Fault::Connections.application_name();
    let mut pg = Vec::new();
    let mut mysql = Vec::new();
    let mut report = Vec::new();
    if args.engine.postgres() {
        let url = url(
            &args.pg_primary_url,
            "--pg-primary-url",
            "DBWATCH_PG_ADMIN_URL",
        )?;
        let mut first = pg_connect(url, &application_name).await?;
        let row = sqlx::raw_sql(
            "SELECT current_setting('max_connections')::float8
                  - current_setting('superuser_reserved_connections')::float8
                  - COALESCE(current_setting('reserved_connections', true), '0')::float8,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8",
        )
        .fetch_one(&mut first)
        .await
        .context("reading PostgreSQL's connection limit")?;
        let (usable, in_use): (f64, f64) = (row.try_get(0)?, row.try_get(1)?);
        // `first` is already one of the in_use connections.
        let more = connections_to_open(args.fraction, usable, in_use);
        pg.push(first);
        for _ in 0..more {
            pg.push(pg_connect(url, &application_name).await?);
        }
        report.push(format!(
            "postgres: holding {} connections ({} in use of {usable} before)",
            pg.len(),
            in_use - 1.0
        ));
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_primary_url,
            "--mysql-primary-url",
            "DBWATCH_MYSQL_ADMIN_URL",
        )?;
        let mut first = mysql_connect(url).await?;
        // MySQL 8 has no information_schema.GLOBAL_STATUS any more (performance_schema's replaces it);
        // MariaDB keeps it, and has the other only with performance_schema on.
        let statement = match MysqlFlavour::of(&mut first).await? {
            MysqlFlavour::MariaDb => {
                "SELECT CAST(@@global.max_connections AS DOUBLE),
                        CAST((SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
                               WHERE VARIABLE_NAME = 'THREADS_CONNECTED') AS DOUBLE)"
            }
            MysqlFlavour::Mysql => {
                "SELECT CAST(@@global.max_connections AS DOUBLE),
                        CAST((SELECT VARIABLE_VALUE FROM performance_schema.global_status
                               WHERE VARIABLE_NAME = 'Threads_connected') AS DOUBLE)"
            }
        };
        let row = sqlx::raw_sql(statement)
            .fetch_one(&mut first)
            .await
            .context("reading the MySQL server's connection limit")?;
        let (usable, in_use): (f64, f64) = (row.try_get(0)?, row.try_get(1)?);
        let more = connections_to_open(args.fraction, usable, in_use);
        mysql.push(first);
        for _ in 0..more {
            mysql.push(mysql_connect(url).await?);
        }
        report.push(format!(
            "mysql: holding {} connections ({} in use of {usable} before)",
            mysql.len(),
            in_use - 1.0
        ));
    }
    ready(&report.join("; "));
    shutdown_signal().await;
    for connection in pg {
        let _ = connection.close().await;
    }
    for connection in mysql {
        let _ = connection.close().await;
    }
    Ok(())
}
