//! DescribeTable: size, item count, capacity mode and ceilings of a table and of each global secondary index, and
//! its global-table replicas. DynamoDB refreshes ItemCount and TableSizeBytes about every six hours, so the
//! collector re-reads descriptions every `describe_refresh`, not every poll.

use aws_sdk_dynamodb::types::{
    BillingMode, GlobalSecondaryIndexDescription, OnDemandThroughput,
    ProvisionedThroughputDescription, TableDescription,
};

use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};
use super::describe_time_to_live::TimeToLive;

pub const VIEW: &str = "describe_table";

pub static ITEMS: MetricDesc = MetricDesc {
    name: "dynamodb_table_items",
    help: "Items in the table or index (index empty for the table itself), as DynamoDB last counted them (about every six hours)",
    kind: MetricKind::Gauge,
    labels: &["table", "index"],
};
pub static SIZE_BYTES: MetricDesc = MetricDesc {
    name: "dynamodb_table_size_bytes",
    help: "Bytes stored by the table or index (index empty for the table itself), as DynamoDB last measured them (about every six hours)",
    kind: MetricKind::Gauge,
    labels: &["table", "index"],
};
pub static ACTIVE: MetricDesc = MetricDesc {
    name: "dynamodb_table_active",
    help: "1 when the table or index status is ACTIVE, 0 while it is being created, updated, backfilled or deleted",
    kind: MetricKind::Gauge,
    labels: &["table", "index"],
};
pub static ON_DEMAND: MetricDesc = MetricDesc {
    name: "dynamodb_table_on_demand",
    help: "1 when the table uses on-demand (PAY_PER_REQUEST) capacity, 0 when provisioned",
    kind: MetricKind::Gauge,
    labels: &["table"],
};
pub static PROVISIONED: MetricDesc = MetricDesc {
    name: "dynamodb_provisioned_capacity_units_per_second",
    help:
        "Provisioned read or write capacity units of the table or index; NaN for on-demand tables",
    kind: MetricKind::Gauge,
    labels: &["table", "index", "operation"],
};
pub static ON_DEMAND_MAX: MetricDesc = MetricDesc {
    name: "dynamodb_on_demand_max_units_per_second",
    help: "Maximum on-demand read or write request units configured on the table or index; NaN when none is configured or the table is provisioned",
    kind: MetricKind::Gauge,
    labels: &["table", "index", "operation"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &ITEMS,
    &SIZE_BYTES,
    &ACTIVE,
    &ON_DEMAND,
    &PROVISIONED,
    &ON_DEMAND_MAX,
];

/// Read or write: the `operation` label of capacity series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Read,
    Write,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Read, Direction::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    }
}

/// The throughput settings of a table or an index in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capacity {
    /// Provisioned capacity units; `None` for on-demand.
    pub provisioned: Option<f64>,
    /// The configured on-demand maximum; `None` when unset (DynamoDB reports -1 or omits it).
    pub on_demand_max: Option<f64>,
}

/// The table or one of its GSIs: the unit capacity is provisioned for and CloudWatch reports on.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// `None` for the table itself, the GSI name otherwise.
    pub index: Option<String>,
    pub active: bool,
    pub items: Option<f64>,
    pub size_bytes: Option<f64>,
    pub read: Capacity,
    pub write: Capacity,
}

impl Throughput {
    pub fn capacity(&self, direction: Direction) -> Capacity {
        match direction {
            Direction::Read => self.read,
            Direction::Write => self.write,
        }
    }

    pub fn index_label(&self) -> &str {
        self.index.as_deref().unwrap_or("")
    }
}

/// A global-table replica in another region: the `ReceivingRegion` of ReplicationLatency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub region: String,
    pub active: bool,
}

/// What DescribeTable says about one table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub name: String,
    pub on_demand: bool,
    /// The table first, then each GSI in DescribeTable's order.
    pub throughputs: Vec<Throughput>,
    pub replicas: Vec<Replica>,
    /// `None` until DescribeTimeToLive answered.
    pub ttl: Option<TimeToLive>,
}

pub async fn fetch(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    own_region: &str,
    usage: &mut PollUsage,
) -> Result<TableInfo, ApiError> {
    usage.call(Api::DescribeTable);
    let output = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|error| api_error(&error))?;
    let Some(description) = output.table() else {
        return Err(ApiError::decode(format!(
            "DescribeTable of {table} returned no table"
        )));
    };
    TableInfo::from_description(description, own_region)
}

impl TableInfo {
    pub fn from_description(
        description: &TableDescription,
        own_region: &str,
    ) -> Result<TableInfo, ApiError> {
        let Some(name) = description.table_name() else {
            return Err(ApiError::decode(
                "DescribeTable returned a table without a name",
            ));
        };
        // DynamoDB omits BillingModeSummary for tables that were always provisioned.
        let on_demand = description
            .billing_mode_summary()
            .and_then(|summary| summary.billing_mode())
            .is_some_and(|mode| *mode == BillingMode::PayPerRequest);
        let mut throughputs = vec![Throughput {
            index: None,
            active: description
                .table_status()
                .is_some_and(|status| status.as_str() == "ACTIVE"),
            items: description.item_count().map(|count| count as f64),
            size_bytes: description.table_size_bytes().map(|bytes| bytes as f64),
            read: capacity(
                on_demand,
                description.provisioned_throughput(),
                description.on_demand_throughput(),
                Direction::Read,
            ),
            write: capacity(
                on_demand,
                description.provisioned_throughput(),
                description.on_demand_throughput(),
                Direction::Write,
            ),
        }];
        for index in description.global_secondary_indexes() {
            throughputs.push(index_throughput(index, on_demand)?);
        }
        let replicas = description
            .replicas()
            .iter()
            .filter_map(|replica| {
                let region = replica.region_name()?;
                (region != own_region).then(|| Replica {
                    region: region.to_owned(),
                    active: replica
                        .replica_status()
                        .is_some_and(|status| status.as_str() == "ACTIVE"),
                })
            })
            .collect();
        Ok(TableInfo {
            name: name.to_owned(),
            on_demand,
            throughputs,
            replicas,
            ttl: None,
        })
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        let table = self.name.as_str();
        out.push(ON_DEMAND.sample_with([table], bool_value(self.on_demand)));
        for throughput in &self.throughputs {
            let index = throughput.index_label();
            out.push(ITEMS.sample_with([table, index], throughput.items.unwrap_or(f64::NAN)));
            out.push(
                SIZE_BYTES.sample_with([table, index], throughput.size_bytes.unwrap_or(f64::NAN)),
            );
            out.push(ACTIVE.sample_with([table, index], bool_value(throughput.active)));
            for direction in Direction::BOTH {
                let capacity = throughput.capacity(direction);
                let labels = [table, index, direction.as_str()];
                out.push(PROVISIONED.sample_with(labels, capacity.provisioned.unwrap_or(f64::NAN)));
                out.push(
                    ON_DEMAND_MAX.sample_with(labels, capacity.on_demand_max.unwrap_or(f64::NAN)),
                );
            }
        }
        if let Some(ttl) = &self.ttl {
            ttl.samples(table, out);
        }
    }
}

fn index_throughput(
    index: &GlobalSecondaryIndexDescription,
    on_demand: bool,
) -> Result<Throughput, ApiError> {
    let Some(name) = index.index_name() else {
        return Err(ApiError::decode(
            "DescribeTable returned an index without a name",
        ));
    };
    Ok(Throughput {
        index: Some(name.to_owned()),
        active: index
            .index_status()
            .is_some_and(|status| status.as_str() == "ACTIVE"),
        items: index.item_count().map(|count| count as f64),
        size_bytes: index.index_size_bytes().map(|bytes| bytes as f64),
        read: capacity(
            on_demand,
            index.provisioned_throughput(),
            index.on_demand_throughput(),
            Direction::Read,
        ),
        write: capacity(
            on_demand,
            index.provisioned_throughput(),
            index.on_demand_throughput(),
            Direction::Write,
        ),
    })
}

fn capacity(
    on_demand: bool,
    provisioned: Option<&ProvisionedThroughputDescription>,
    maximum: Option<&OnDemandThroughput>,
    direction: Direction,
) -> Capacity {
    // On-demand tables report provisioned throughput 0: a ceiling of 0 would read as saturated, so it is None.
    let provisioned = if on_demand {
        None
    } else {
        provisioned
            .and_then(|throughput| match direction {
                Direction::Read => throughput.read_capacity_units(),
                Direction::Write => throughput.write_capacity_units(),
            })
            .filter(|units| *units > 0)
            .map(|units| units as f64)
    };
    let on_demand_max = if on_demand {
        maximum
            .and_then(|throughput| match direction {
                Direction::Read => throughput.max_read_request_units(),
                Direction::Write => throughput.max_write_request_units(),
            })
            .filter(|units| *units > 0)
            .map(|units| units as f64)
    } else {
        None
    };
    Capacity {
        provisioned,
        on_demand_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{
        BillingModeSummary, IndexStatus, ReplicaDescription, ReplicaStatus, TableStatus,
    };

    fn provisioned(read: i64, write: i64) -> ProvisionedThroughputDescription {
        ProvisionedThroughputDescription::builder()
            .read_capacity_units(read)
            .write_capacity_units(write)
            .build()
    }

    #[test]
    fn provisioned_table_with_a_gsi() {
        let description = TableDescription::builder()
            .table_name("UserSessions")
            .table_status(TableStatus::Active)
            .item_count(3)
            .table_size_bytes(300)
            .provisioned_throughput(provisioned(100, 50))
            .global_secondary_indexes(
                GlobalSecondaryIndexDescription::builder()
                    .index_name("SessionIdIndex")
                    .index_status(IndexStatus::Active)
                    .provisioned_throughput(provisioned(50, 25))
                    .build(),
            )
            .build();
        let info =
            TableInfo::from_description(&description, "us-east-1").expect("valid description");
        assert!(!info.on_demand);
        assert_eq!(info.throughputs.len(), 2);
        assert_eq!(info.throughputs[0].read.provisioned, Some(100.0));
        assert_eq!(info.throughputs[0].write.provisioned, Some(50.0));
        assert_eq!(info.throughputs[1].index.as_deref(), Some("SessionIdIndex"));
        assert_eq!(info.throughputs[1].read.provisioned, Some(50.0));
        assert_eq!(info.throughputs[1].write.provisioned, Some(25.0));
        assert_eq!(info.throughputs[1].items, None);
        assert!(info.replicas.is_empty());
    }

    #[test]
    fn on_demand_table_has_no_provisioned_ceiling_but_may_have_a_maximum() {
        let description = TableDescription::builder()
            .table_name("Events")
            .billing_mode_summary(
                BillingModeSummary::builder()
                    .billing_mode(BillingMode::PayPerRequest)
                    .build(),
            )
            .provisioned_throughput(provisioned(0, 0))
            .on_demand_throughput(
                OnDemandThroughput::builder()
                    .max_read_request_units(1000)
                    .max_write_request_units(-1)
                    .build(),
            )
            .replicas(
                ReplicaDescription::builder()
                    .region_name("us-east-1")
                    .replica_status(ReplicaStatus::Active)
                    .build(),
            )
            .replicas(
                ReplicaDescription::builder()
                    .region_name("eu-west-1")
                    .replica_status(ReplicaStatus::Active)
                    .build(),
            )
            .build();
        let info =
            TableInfo::from_description(&description, "us-east-1").expect("valid description");
        assert!(info.on_demand);
        let table = &info.throughputs[0];
        assert_eq!(table.read.provisioned, None);
        assert_eq!(table.read.on_demand_max, Some(1000.0));
        assert_eq!(table.write.on_demand_max, None);
        assert_eq!(
            info.replicas,
            vec![Replica {
                region: "eu-west-1".into(),
                active: true
            }]
        );
    }

    #[test]
    fn a_table_without_a_name_is_a_decode_error() {
        let description = TableDescription::builder().build();
        let error = TableInfo::from_description(&description, "us-east-1").expect_err("no name");
        assert_eq!(error.kind, crate::error::ErrorKind::Decode);
    }
}
