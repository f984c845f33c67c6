//! The holders: start, clear, state faults.

use super::*;

pub(super) fn state_dir(args: &FaultArgs) -> PathBuf {
    if let Some(dir) = &args.state_dir {
        return dir.clone();
    }
    if let Some(fleet) = std::env::var_os("DBWATCH_FLEET_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(fleet).join("faults");
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|dir| dir.join(".fleet").is_dir())
        .unwrap_or(&cwd)
        .join(".fleet")
        .join("faults")
}

pub(super) fn pid_file(dir: &Path, fault: Fault) -> PathBuf {
    dir.join(format!("{}.pid", fault.name()))
}

/// The holder's pid when the pid file names a live holder of this fault (not a recycled pid).
pub(super) fn live_holder(dir: &Path, fault: Fault) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(dir, fault))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    let is_holder = words.iter().any(|word| *word == b"hold")
        && words.iter().any(|word| *word == fault.name().as_bytes());
    is_holder.then_some(pid)
}

/// Tells the `start` that spawned this holder that the fault is in place.
pub(super) fn ready(report: &str) {
    tracing::info!("{report}");
    println!("ready {report}");
}

pub(super) async fn start_holder(args: &FaultArgs) -> anyhow::Result<()> {
    let fault = args.fault;
    let dir = state_dir(args);
    if let Some(pid) = live_holder(&dir, fault) {
        say(&format!(
            "{}: already started (holder pid {pid})",
            fault.name()
        ));
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join(format!("{}.log", fault.name()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut command = Command::new(exe);
    command
        .args(["fault", fault.name(), "hold"])
        .args(["--engine", &format!("{:?}", args.engine).to_lowercase()])
        .args(["--fraction", &args.fraction.to_string()])
        .args(["--sessions", &args.sessions.to_string()])
        .args([
            "--sleep",
            &humantime::format_duration(args.sleep).to_string(),
        ])
        .args(["--table", &args.table])
        .args(["--throttle-rate", &args.throttle_rate.to_string()])
        .arg("--state-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .env("NO_COLOR", "1");
    // URLs travel in the environment, never on a command line every user can read in ps.
    for (value, env) in [
        (&args.pg_primary_url, "DBWATCH_PG_ADMIN_URL"),
        (&args.mysql_primary_url, "DBWATCH_MYSQL_ADMIN_URL"),
        (&args.aws_endpoint_url, "DBWATCH_AWS_ENDPOINT_URL"),
    ] {
        if let Some(value) = value {
            command.env(env, value);
        }
    }
    // Its own process group: a Ctrl-C in the terminal that ran `start` does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("starting the holder")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("the holder's output")?;
    // The holder says `ready ...` once the fault is in place; a blocking read, so on a thread of its own.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let outcome = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = sender.send(outcome);
    });
    let answer =
        tokio::task::spawn_blocking(move || receiver.recv_timeout(Duration::from_secs(120)))
            .await
            .context("waiting for the holder")?;
    match answer {
        Ok(Ok(line)) if line.starts_with("ready") => {
            std::fs::write(pid_file(&dir, fault), format!("{pid}\n"))
                .with_context(|| format!("writing the pid file in {}", dir.display()))?;
            say(&format!(
                "{}: started (holder pid {pid}, log {}): {}",
                fault.name(),
                log_path.display(),
                line.trim_start_matches("ready").trim()
            ));
            Ok(())
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let mut tail = String::new();
            if let Ok(mut file) = std::fs::File::open(&log_path) {
                let _ = file.read_to_string(&mut tail);
            }
            let tail: Vec<&str> = tail
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let why = match other {
                Err(_) => "not ready within 120s".to_owned(),
                _ => "exited before it was ready".to_owned(),
            };
            anyhow::bail!(
                "{}: the holder {why} (log {}):\n{}",
                fault.name(),
                log_path.display(),
                tail.join("\n")
            )
        }
    }
}

pub(super) async fn clear_holder(args: &FaultArgs) -> anyhow::Result<()> {
    let fault = args.fault;
    let dir = state_dir(args);
    if let Some(pid) = live_holder(&dir, fault) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        say(&format!("{}: holder pid {pid} stopped", fault.name()));
    } else {
        say(&format!("{}: no holder running", fault.name()));
    }
    let _ = std::fs::remove_file(pid_file(&dir, fault));
    // A sleep in progress outlives its client's exit on the server: end those now, so that clear means clear.
    if fault == Fault::SlowQueries || fault == Fault::Connections {
        if args.engine.postgres() {
            let url = url(
                &args.pg_primary_url,
                "--pg-primary-url",
                "DBWATCH_PG_ADMIN_URL",
            )?;
            let mut connection = pg_connect(url, "dbwatch-workload").await?;
            sqlx::query(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(fault.application_name())
            .execute(&mut connection)
            .await
            .context("ending the fault's PostgreSQL sessions")?;
            wait_until_zero_pg(&mut connection, &fault.application_name()).await?;
        }
        if args.engine.mysql() && fault == Fault::SlowQueries {
            let url = url(
                &args.mysql_primary_url,
                "--mysql-primary-url",
                "DBWATCH_MYSQL_ADMIN_URL",
            )?;
            let mut connection = mysql_connect(url).await?;
            let rows = sqlx::query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND ID <> CONNECTION_ID()")
                .bind(format!("%{MYSQL_SLEEP_TAG}%"))
                .fetch_all(&mut connection)
                .await
                .context("finding the fault's MySQL sleeps")?;
            for row in rows {
                // MariaDB types PROCESSLIST.ID as a signed BIGINT, MySQL 8 as BIGINT UNSIGNED.
                let id: u64 = match row.try_get::<i64, _>(0) {
                    Ok(id) => u64::try_from(id).context("a negative process id")?,
                    Err(_) => row.try_get(0)?,
                };
                // Gone in between is fine.
                // An integer from the server: nothing to escape.
                let kill = sqlx::AssertSqlSafe(format!("KILL QUERY {id}"));
                let _ = sqlx::raw_sql(kill).execute(&mut connection).await;
            }
        }
    }
    say(&format!("{}: cleared", fault.name()));
    Ok(())
}

pub(super) async fn wait_until_zero_pg(
    connection: &mut PgConnection,
    application_name: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(application_name)
                .fetch_one(&mut *connection)
                .await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{left} sessions named {application_name} still open after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
