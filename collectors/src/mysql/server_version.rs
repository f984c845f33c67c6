//! The server's flavour and version, read once per connection, and the statements chosen from them.
//!
//! MariaDB and MySQL diverged on the statements a monitor needs: the replica status statement (MariaDB's
//! `SHOW ALL SLAVES STATUS` for multi-source; MySQL 8.0.22+ `SHOW REPLICA STATUS`, the only form left in 8.4)
//! and the server-side statement timeout (MariaDB `max_statement_time` in seconds for every statement, MySQL
//! `max_execution_time` in milliseconds for SELECT only). Knowing the server up front means each poll sends
//! exactly the statements that work, never a try-and-fall-back sequence.

use std::time::Duration;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::row::{ShapeError, TextRow};

pub const VIEW: &str = "server_version";
pub const QUERY: &str = "SELECT @@version AS version, @@version_comment AS version_comment";

pub static VERSION_NUM: MetricDesc = MetricDesc {
    name: "mysql_server_version_num",
    help: "The server's version as major * 10000 + minor * 100 + patch, e.g. 101119 for 10.11.19",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static INFO: MetricDesc = MetricDesc {
    name: "mysql_server_info",
    help:
        "Always 1; the flavour label says whether the server is MySQL (Percona included) or MariaDB",
    kind: MetricKind::Gauge,
    labels: &["flavour"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&VERSION_NUM, &INFO];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Mysql,
    MariaDb,
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Mysql => "mysql",
            Flavour::MariaDb => "mariadb",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    pub flavour: Flavour,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `@@version` (e.g. `10.11.19-MariaDB-0+deb12u1-log`, `8.4.3`) and `@@version_comment`.
    pub fn parse(version: &str, comment: &str) -> Result<Self, ShapeError> {
        let mariadb = version.to_ascii_lowercase().contains("mariadb")
            || comment.to_ascii_lowercase().contains("mariadb");
        let numeric: &str = version
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or_default();
        let mut parts = numeric.split('.').map(str::parse::<u32>);
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            return Err(ShapeError::Other(format!(
                "cannot read a version number from {version:?}"
            )));
        };
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Ok(ServerVersion {
            flavour: if mariadb {
                Flavour::MariaDb
            } else {
                Flavour::Mysql
            },
            major,
            minor,
            patch,
        })
    }

    pub fn from_row(row: &TextRow) -> Result<Self, ShapeError> {
        let version = row.column(&["version"])?.unwrap_or_default();
        let comment = row.column(&["version_comment"])?.unwrap_or_default();
        ServerVersion::parse(version, comment)
    }

    pub fn version_num(&self) -> u32 {
        self.major * 10_000 + self.minor * 100 + self.patch
    }

    fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }

    /// The one replica status statement this server understands, listing every channel.
    pub fn replica_status_statement(&self) -> &'static str {
        match self.flavour {
            // Multi-source since 10.0: one row per connection, with Connection_name.
            Flavour::MariaDb => "SHOW ALL SLAVES STATUS",
            // 8.0.22 introduced the Source/Replica names; 8.4 removed SHOW SLAVE STATUS.
            Flavour::Mysql if self.at_least(8, 0, 22) => "SHOW REPLICA STATUS",
            Flavour::Mysql => "SHOW SLAVE STATUS",
        }
    }

    /// Whether the server can cut a statement by itself (MariaDB 10.1+, MySQL 5.7.8+).
    pub fn has_statement_timeout(&self) -> bool {
        match self.flavour {
            Flavour::MariaDb => self.at_least(10, 1, 0),
            Flavour::Mysql => self.at_least(5, 7, 8),
        }
    }

    /// The session settings sent once per connection.
    ///
    /// Lock waits are bounded for the statements the server-side timeout does not cover (MySQL's only covers
    /// SELECT). `long_query_time` is raised for this session alone so that dbwatch's own statements never
    /// count in the `Slow_queries` it reports (mysqld_exporter#775). The UTC time zone makes the heartbeat's
    /// `NOW(6)` comparable between servers.
    pub fn session_settings(&self, statement_timeout: Duration) -> String {
        let lock_wait_seconds = statement_timeout.as_secs_f64().ceil().max(1.0) as u64;
        let mut settings = vec![
            "time_zone = '+00:00'".to_owned(),
            format!("lock_wait_timeout = {lock_wait_seconds}"),
            format!("innodb_lock_wait_timeout = {lock_wait_seconds}"),
            "long_query_time = 31536000".to_owned(),
        ];
        if self.has_statement_timeout() {
            settings.push(match self.flavour {
                Flavour::MariaDb => format!(
                    "max_statement_time = {:.3}",
                    statement_timeout.as_secs_f64().max(0.001)
                ),
                Flavour::Mysql => format!(
                    "max_execution_time = {}",
                    statement_timeout.as_millis().max(1)
                ),
            });
        }
        format!("SET SESSION {}", settings.join(", "))
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(VERSION_NUM.sample(f64::from(self.version_num())));
        out.push(INFO.sample_with([self.flavour.as_str()], 1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavour_and_version_come_from_the_version_string() {
        let mariadb = ServerVersion::parse("10.11.19-MariaDB-0+deb12u1-log", "Debian 12")
            .expect("mariadb version");
        assert_eq!(mariadb.flavour, Flavour::MariaDb);
        assert_eq!(mariadb.version_num(), 101_119);
        let mysql = ServerVersion::parse("8.4.3", "MySQL Community Server - GPL").expect("mysql");
        assert_eq!(mysql.flavour, Flavour::Mysql);
        assert_eq!(mysql.version_num(), 80_403);
        let percona =
            ServerVersion::parse("8.0.36-28", "Percona Server (GPL), Release 28").expect("percona");
        assert_eq!(percona.flavour, Flavour::Mysql);
        assert!(ServerVersion::parse("unknown", "").is_err());
    }

    #[test]
    fn the_replica_statement_follows_flavour_and_version() {
        let statement = |version: &str| {
            ServerVersion::parse(version, "")
                .expect("version")
                .replica_status_statement()
        };
        assert_eq!(statement("10.11.19-MariaDB"), "SHOW ALL SLAVES STATUS");
        assert_eq!(statement("8.0.21"), "SHOW SLAVE STATUS");
        assert_eq!(statement("8.0.22"), "SHOW REPLICA STATUS");
        assert_eq!(statement("8.4.3"), "SHOW REPLICA STATUS");
        assert_eq!(statement("5.7.44-log"), "SHOW SLAVE STATUS");
    }

    #[test]
    fn the_statement_timeout_uses_each_flavours_variable_and_unit() {
        let timeout = Duration::from_millis(2500);
        let mariadb = ServerVersion::parse("10.11.19-MariaDB", "").expect("mariadb");
        assert!(mariadb
            .session_settings(timeout)
            .contains("max_statement_time = 2.500"));
        let mysql = ServerVersion::parse("8.0.36", "").expect("mysql");
        let settings = mysql.session_settings(timeout);
        assert!(settings.contains("max_execution_time = 2500"));
        assert!(settings.contains("lock_wait_timeout = 3"));
        let old = ServerVersion::parse("5.6.51", "").expect("old mysql");
        assert!(!old.session_settings(timeout).contains("max_"));
    }
}
