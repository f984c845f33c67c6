//! `buildInfo`: the server's version and flavour, read once per connection.
//!
//! FerretDB answers with MongoDB's fields plus its own `ferretdbVersion` and `ferretdbFeatures.aggregationStages`
//! (the stages it implements), which is how it is told apart from MongoDB without trying commands that fail.

use mongodb::bson::{doc, Bson, Document};

use super::connection::{Conn, MongoError};
use super::fields;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "build_info";

pub static BUILD_INFO: MetricDesc = MetricDesc {
    name: "mongodb_build_info",
    help: "Always 1; the labels carry the MongoDB version the server reports and its flavour (mongodb or ferretdb)",
    kind: MetricKind::Gauge,
    labels: &["version", "flavor"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&BUILD_INFO];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The MongoDB version the server implements (FerretDB reports the one it emulates).
    pub version: String,
    /// Major, minor, patch.
    pub version_parts: [u32; 3],
    pub ferretdb: Option<FerretDb>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FerretDb {
    pub version: String,
    pub aggregation_stages: Vec<String>,
}

pub async fn fetch(conn: &Conn) -> Result<BuildInfo, MongoError> {
    let answer = conn.command("admin", doc! { "buildInfo": 1 }).await?;
    parse(&answer).map_err(MongoError::Decode)
}

pub fn parse(answer: &Document) -> Result<BuildInfo, fields::Missing> {
    let version = fields::str_at(answer, "version")
        .ok_or("buildInfo has no version")?
        .to_owned();
    let version_parts = match answer.get("versionArray").and_then(Bson::as_array) {
        Some(parts) => {
            let mut numbers = parts
                .iter()
                .filter_map(fields::number)
                .map(|part| part.max(0.0) as u32);
            [
                numbers.next().unwrap_or(0),
                numbers.next().unwrap_or(0),
                numbers.next().unwrap_or(0),
            ]
        }
        None => parse_version(&version),
    };
    let ferretdb = fields::str_at(answer, "ferretdbVersion").map(|ferret_version| FerretDb {
        version: ferret_version.to_owned(),
        aggregation_stages: fields::at(answer, "ferretdbFeatures.aggregationStages")
            .and_then(Bson::as_array)
            .map(|stages| {
                stages
                    .iter()
                    .filter_map(Bson::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    });
    Ok(BuildInfo {
        version,
        version_parts,
        ferretdb,
    })
}

/// "6.0.3-rc1" → [6, 0, 3]; missing or odd parts read as 0.
fn parse_version(version: &str) -> [u32; 3] {
    let mut parts = version.split('.').map(|part| {
        part.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    });
    [
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ]
}

impl BuildInfo {
    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.version_parts >= [major, minor, patch]
    }

    pub fn flavor(&self) -> &'static str {
        if self.ferretdb.is_some() {
            "ferretdb"
        } else {
            "mongodb"
        }
    }

    /// Whether the server implements an aggregation stage. FerretDB lists its stages; MongoDB is assumed to have
    /// the ones this collector uses for the versions that introduced them, and a refusal is caught at run time.
    pub fn has_stage(&self, stage: &str) -> bool {
        match &self.ferretdb {
            Some(ferretdb) => ferretdb
                .aggregation_stages
                .iter()
                .any(|known| known == stage),
            None => true,
        }
    }

    pub fn sample(&self) -> Sample {
        BUILD_INFO.sample_with([self.version.as_str(), self.flavor()], 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongodb_and_ferretdb_are_told_apart() {
        let mongodb = parse(&doc! {
            "version": "6.0.3", "versionArray": [6, 0, 3, 0], "ok": 1.0
        })
        .expect("mongodb buildInfo");
        assert_eq!(mongodb.flavor(), "mongodb");
        assert!(mongodb.at_least(6, 0, 3));
        assert!(!mongodb.at_least(6, 0, 4));
        assert!(mongodb.has_stage("$indexStats"));

        let ferretdb = parse(&doc! {
            "version": "7.0.77", "versionArray": [7, 0, 77, 0],
            "ferretdbVersion": "v1.24.2",
            "ferretdbFeatures": { "aggregationStages": ["$match", "$collStats"] },
            "ok": 1.0
        })
        .expect("ferretdb buildInfo");
        assert_eq!(ferretdb.flavor(), "ferretdb");
        assert!(ferretdb.has_stage("$collStats"));
        assert!(!ferretdb.has_stage("$indexStats"));
    }

    #[test]
    fn version_string_is_the_fallback() {
        let info = parse(&doc! { "version": "5.0.14-rc1" }).expect("buildInfo");
        assert_eq!(info.version_parts, [5, 0, 14]);
        assert!(parse(&doc! { "ok": 1.0 }).is_err());
    }
}
