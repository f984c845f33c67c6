//! Wraparound: per database, the age of the oldest unfrozen transaction ID and multixact, from `pg_database`,
//! against `autovacuum_freeze_max_age` and `autovacuum_multixact_freeze_max_age`. A database whose XID age
//! reaches about 2^31 stops accepting writes; autovacuum starts forced freezing at the setting.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_database";
const QUERY: &str = include_str!("pg_database.sql");

pub static XID_AGE: MetricDesc = MetricDesc {
    name: "pg_database_xid_age",
    help: "Transactions since the database's oldest unfrozen transaction ID (age(datfrozenxid)); writes stop near 2^31",
    kind: MetricKind::Gauge,
    labels: &["database"],
};
pub static MULTIXACT_AGE: MetricDesc = MetricDesc {
    name: "pg_database_multixact_age",
    help: "Multixacts since the database's oldest unfrozen multixact (mxid_age(datminmxid))",
    kind: MetricKind::Gauge,
    labels: &["database"],
};
pub static FREEZE_MAX_AGE: MetricDesc = MetricDesc {
    name: "pg_settings_autovacuum_freeze_max_age",
    help: "The XID age at which autovacuum forces an anti-wraparound vacuum",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static MULTIXACT_FREEZE_MAX_AGE: MetricDesc = MetricDesc {
    name: "pg_settings_autovacuum_multixact_freeze_max_age",
    help: "The multixact age at which autovacuum forces an anti-wraparound vacuum",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &XID_AGE,
    &MULTIXACT_AGE,
    &FREEZE_MAX_AGE,
    &MULTIXACT_FREEZE_MAX_AGE,
];

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseAge {
    pub database: String,
    pub xid_age: f64,
    pub multixact_age: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wraparound {
    pub databases: Vec<DatabaseAge>,
    pub freeze_max_age: Option<f64>,
    pub multixact_freeze_max_age: Option<f64>,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Wraparound, sqlx::Error> {
    let rows = sqlx::query(QUERY).fetch_all(connection).await?;
    let mut wraparound = Wraparound {
        databases: Vec::with_capacity(rows.len()),
        freeze_max_age: None,
        multixact_freeze_max_age: None,
    };
    for row in rows {
        wraparound.freeze_max_age = Some(row.try_get("freeze_max_age")?);
        wraparound.multixact_freeze_max_age = Some(row.try_get("multixact_freeze_max_age")?);
        wraparound.databases.push(DatabaseAge {
            database: row.try_get("datname")?,
            xid_age: row.try_get("xid_age")?,
            multixact_age: row.try_get("multixact_age")?,
        });
    }
    Ok(wraparound)
}

impl Wraparound {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        for database in &self.databases {
            out.push(XID_AGE.sample_with([database.database.as_str()], database.xid_age));
            out.push(
                MULTIXACT_AGE.sample_with([database.database.as_str()], database.multixact_age),
            );
        }
        // The settings come with the rows; with no connectable database they are unknown, not zero.
        out.push(FREEZE_MAX_AGE.sample(self.freeze_max_age.unwrap_or(f64::NAN)));
        out.push(
            MULTIXACT_FREEZE_MAX_AGE.sample(self.multixact_freeze_max_age.unwrap_or(f64::NAN)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_age_pair_per_database_and_the_settings_once() {
        let wraparound = Wraparound {
            databases: vec![
                DatabaseAge {
                    database: "orders".into(),
                    xid_age: 1_500_000.0,
                    multixact_age: 3.0,
                },
                DatabaseAge {
                    database: "postgres".into(),
                    xid_age: 1_499_000.0,
                    multixact_age: 0.0,
                },
            ],
            freeze_max_age: Some(200_000_000.0),
            multixact_freeze_max_age: Some(400_000_000.0),
        };
        let mut samples = Vec::new();
        wraparound.samples(&mut samples);
        assert_eq!(samples.len(), 6);
        assert_eq!(samples[0].desc.name, "pg_database_xid_age");
        assert_eq!(samples[0].labels.get("database"), Some("orders"));
        assert_eq!(samples[0].value, 1_500_000.0);
        assert_eq!(samples[3].value, 0.0);
        assert_eq!(samples[4].value, 200_000_000.0);
        assert_eq!(samples[5].value, 400_000_000.0);
    }

    #[test]
    fn no_database_leaves_the_settings_unknown() {
        let wraparound = Wraparound {
            databases: Vec::new(),
            freeze_max_age: None,
            multixact_freeze_max_age: None,
        };
        let mut samples = Vec::new();
        wraparound.samples(&mut samples);
        assert_eq!(samples.len(), 2);
        assert!(samples.iter().all(|sample| sample.value.is_nan()));
    }
}
