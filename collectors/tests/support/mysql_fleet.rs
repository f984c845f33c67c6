//! What the MariaDB and MySQL 8.0 suites share: the fleet's connection URLs, one statement as the admin, and
//! reading one sample of a poll.

use dbwatch_collectors::Collected;
use sqlx::mysql::MySqlConnection;

/// A connection URL from the fleet's environment, split into the collector's options.
pub struct Url {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub raw: String,
}

/// The URL in `variable`, set by `deploy/local/fleet env <component>`.
pub fn fleet_url(variable: &str, component: &str) -> Url {
    let raw = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run `eval \"$(deploy/local/fleet env {component})\"` after `deploy/local/fleet up {component}`")
    });
    let rest = raw
        .strip_prefix("mysql://")
        .unwrap_or_else(|| panic!("{variable} is not a mysql:// URL"));
    let (credentials, rest) = rest.split_once('@').expect("user:password@ in the URL");
    let (user, password) = credentials
        .split_once(':')
        .expect("user:password in the URL");
    let address = rest.split('/').next().expect("host:port in the URL");
    let (host, port) = address.split_once(':').expect("host:port in the URL");
    Url {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.parse().expect("numeric port"),
        raw,
    }
}

pub async fn run(connection: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The value of the first sample named `name` with these labels.
pub fn value(collected: &Collected, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    collected
        .samples
        .iter()
        .find(|sample| {
            sample.name() == name
                && labels
                    .iter()
                    .all(|(label, wanted)| sample.label(label) == Some(*wanted))
        })
        .map(|sample| sample.value)
}
