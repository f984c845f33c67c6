//! The replication fault.

use super::*;

pub(super) async fn replica_lag(args: &FaultArgs, start: bool) -> anyhow::Result<()> {
    if args.engine.postgres() {
        let url = url(
            &args.pg_replica_url,
            "--pg-replica-url",
            "DBWATCH_PG_REPLICA_ADMIN_URL",
        )?;
        let mut replica = pg_connect(url, "dbwatch-workload").await?;
        let (call, statement) = if start {
            ("pg_wal_replay_pause()", "SELECT pg_wal_replay_pause()")
        } else {
            ("pg_wal_replay_resume()", "SELECT pg_wal_replay_resume()")
        };
        sqlx::raw_sql(statement)
            .execute(&mut replica)
            .await
            .with_context(|| format!("postgres replica: {call}"))?;
        say(&format!("replica-lag: postgres replica {call}"));
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_replica_url,
            "--mysql-replica-url",
            "DBWATCH_MYSQL_REPLICA_ADMIN_URL",
        )?;
        let mut replica = mysql_connect(url).await?;
        let statements = match MysqlFlavour::of(&mut replica).await? {
            MysqlFlavour::MariaDb => mariadb_replica_lag(start, args.delay),
            MysqlFlavour::Mysql => mysql_replica_lag(start, args.delay),
        };
        for statement in &statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut replica)
                .await
                .with_context(|| format!("mysql replica: {statement}"))?;
        }
        say(&format!(
            "replica-lag: mysql replica {}",
            statements.join("; ")
        ));
    }
    Ok(())
}

/// The statements that start or clear replica lag on a MariaDB replica. A clear undoes either way of
/// starting it: MariaDB refuses CHANGE MASTER while a replica thread runs, hence the full stop first.
pub fn mariadb_replica_lag(start: bool, delay: Option<Duration>) -> Vec<String> {
    match (start, delay) {
        (true, None) => vec!["STOP SLAVE SQL_THREAD".to_owned()],
        (true, Some(delay)) => vec![
            "STOP SLAVE".to_owned(),
            format!("CHANGE MASTER TO MASTER_DELAY = {}", delay.as_secs().max(1)),
            "START SLAVE".to_owned(),
        ],
        (false, _) => vec![
            "STOP SLAVE".to_owned(),
            "CHANGE MASTER TO MASTER_DELAY = 0".to_owned(),
            "START SLAVE".to_owned(),
        ],
    }
}

/// The same, in MySQL 8's words (8.0.22+; 8.4 removed the SLAVE/MASTER spellings).
pub fn mysql_replica_lag(start: bool, delay: Option<Duration>) -> Vec<String> {
    match (start, delay) {
        (true, None) => vec!["STOP REPLICA SQL_THREAD".to_owned()],
        (true, Some(delay)) => vec![
            "STOP REPLICA".to_owned(),
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {}",
                delay.as_secs().max(1)
            ),
            "START REPLICA".to_owned(),
        ],
        (false, _) => vec![
            "STOP REPLICA".to_owned(),
            "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 0".to_owned(),
            "START REPLICA".to_owned(),
        ],
    }
}

/// Which replication statements a MySQL-protocol server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlFlavour {
    MariaDb,
    /// MySQL 8.0.22 or later (the fleet's 8.0.31).
    Mysql,
}

impl MysqlFlavour {
    pub fn from_version(version: &str) -> Self {
        match version.to_ascii_lowercase().contains("mariadb") {
            true => MysqlFlavour::MariaDb,
            false => MysqlFlavour::Mysql,
        }
    }

    pub(super) async fn of(connection: &mut MySqlConnection) -> anyhow::Result<Self> {
        let version: String = sqlx::query_scalar("SELECT @@version")
            .fetch_one(&mut *connection)
            .await
            .context("reading the server's @@version")?;
        Ok(MysqlFlavour::from_version(&version))
    }

    /// Both replication threads stopped, or started again.
    pub fn replication_threads(self, start: bool) -> &'static str {
        match (self, start) {
            (MysqlFlavour::MariaDb, true) => "START SLAVE",
            (MysqlFlavour::MariaDb, false) => "STOP SLAVE",
            (MysqlFlavour::Mysql, true) => "START REPLICA",
            (MysqlFlavour::Mysql, false) => "STOP REPLICA",
        }
    }
}

/// `primary_conninfo` with its port replaced by 1, where nothing listens.
pub fn dead_conninfo(conninfo: &str) -> String {
    let mut words: Vec<String> = conninfo
        .split_whitespace()
        .filter(|word| !word.starts_with("port="))
        .map(str::to_owned)
        .collect();
    words.push("port=1".into());
    words.join(" ")
}

pub(super) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub(super) async fn replication_broken(args: &FaultArgs, start: bool) -> anyhow::Result<()> {
    if args.engine.postgres() {
        let url = url(
            &args.pg_replica_url,
            "--pg-replica-url",
            "DBWATCH_PG_REPLICA_ADMIN_URL",
        )?;
        let mut replica = pg_connect(url, "dbwatch-workload").await?;
        let dir = state_dir(args);
        let saved = dir.join("replication-broken.primary_conninfo");
        if start {
            if saved.exists() {
                say("replication-broken: postgres replica already pointed at a dead port");
            } else {
                let current: String =
                    sqlx::query_scalar("SELECT current_setting('primary_conninfo')")
                        .fetch_one(&mut replica)
                        .await
                        .context("postgres replica: reading primary_conninfo")?;
                anyhow::ensure!(
                    !current.is_empty(),
                    "the postgres replica has no primary_conninfo: is it a replica?"
                );
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(&saved, &current)
                    .with_context(|| format!("writing {}", saved.display()))?;
                set_conninfo(&mut replica, &dead_conninfo(&current)).await?;
            }
            wait_wal_receiver(&mut replica, false).await?;
            say("replication-broken: postgres replica's primary_conninfo points at port 1, WAL receiver down");
        } else {
            if let Ok(original) = std::fs::read_to_string(&saved) {
                set_conninfo(&mut replica, &original).await?;
                std::fs::remove_file(&saved)
                    .with_context(|| format!("removing {}", saved.display()))?;
            }
            wait_wal_receiver(&mut replica, true).await?;
            say("replication-broken: postgres replica streams again");
        }
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_replica_url,
            "--mysql-replica-url",
            "DBWATCH_MYSQL_REPLICA_ADMIN_URL",
        )?;
        let mut replica = mysql_connect(url).await?;
        // Starting the fault stops the threads.
        let statement = MysqlFlavour::of(&mut replica)
            .await?
            .replication_threads(!start);
        sqlx::raw_sql(statement)
            .execute(&mut replica)
            .await
            .with_context(|| format!("mysql replica: {statement}"))?;
        say(&format!("replication-broken: mysql replica {statement}"));
    }
    Ok(())
}

pub(super) async fn set_conninfo(replica: &mut PgConnection, conninfo: &str) -> anyhow::Result<()> {
    // ALTER SYSTEM takes no parameters: the value is a quoted literal.
    let statement = format!(
        "ALTER SYSTEM SET primary_conninfo = {}",
        quote_literal(conninfo)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut *replica)
        .await
        .context("postgres replica: ALTER SYSTEM SET primary_conninfo")?;
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut *replica)
        .await
        .context("postgres replica: pg_reload_conf()")?;
    Ok(())
}

/// Waits (60 s at most) until the replica's WAL receiver streams, or does not.
pub(super) async fn wait_wal_receiver(
    replica: &mut PgConnection,
    streaming: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
        )
        .fetch_one(&mut *replica)
        .await?;
        if now == streaming {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the postgres replica's WAL receiver is {} streaming after 60s",
            if now { "still" } else { "not" }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
