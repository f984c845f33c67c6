//! `type: dynamodb` targets. Credentials come from the standard AWS chain (environment, profile, web identity,
//! instance metadata), never from this file.

use dbwatch_collectors::dynamodb::DynamoDbOptions;

use super::read::{Errors, TargetLimits, collector_fields, connection_fields};
use dbwatch_yaml::node::Mark;
use dbwatch_yaml::read::{Fields, Reader};

use super::TargetType;

/// `type: dynamodb`.
pub struct Dynamodb;

impl TargetType for Dynamodb {
    type Raw = DynamoDbOptions;
    type Options = DynamoDbOptions;
    const RULES: &'static [(&'static str, &'static str)] =
        &[("dynamodb.yml", include_str!("../../alerts/dynamodb.yml"))];

    fn read(reader: &mut Reader<'_>, fields: &mut Fields<'_>, target_mark: Mark) -> Option<DynamoDbOptions> {
        read_options(reader, fields, target_mark)
    }

    fn validate(
        mut options: DynamoDbOptions,
        target: TargetLimits<'_>,
        _errors: &mut Errors<'_>,
    ) -> Option<DynamoDbOptions> {
        options.target = target.name.to_owned();
        Some(options)
    }

    fn build(options: &DynamoDbOptions) -> Box<dyn dbwatch_collectors::Collector> {
        Box::new(dbwatch_collectors::dynamodb::DynamoDbCollector::new(options.clone()))
    }
}

fn read_options(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    target_mark: Mark,
) -> Option<DynamoDbOptions> {
    let mut options = DynamoDbOptions::default();
    let (mut connection, mark) = connection_fields(
        reader,
        fields,
        target_mark,
        "region, and endpoint_url for a local endpoint",
    )?;
    options.endpoint_url = connection.string(reader, "endpoint_url");
    match connection.string(reader, "region") {
        Some(region) => options.region = region,
        None => reader.error(
            mark,
            &format!("{}.region", connection.path()),
            "missing key region",
        ),
    }
    options.profile = connection.string(reader, "profile");
    if let Some(value) = connection.duration(reader, "connect_timeout") {
        options.connect_timeout = value;
    }
    if let Some(value) = connection.duration(reader, "api_timeout") {
        options.api_timeout = value;
    }
    if let Some(value) = connection.integer(reader, "max_attempts", "a number of attempts") {
        options.max_attempts = value;
    }
    connection.finish(reader);

    if let Some(mut collectors) = collector_fields(reader, fields) {
        if let Some(value) = collectors.strings(reader, "include_tables") {
            options.include_tables = value;
        }
        if let Some(value) = collectors.strings(reader, "exclude_tables") {
            options.exclude_tables = value;
        }
        if let Some(value) = collectors.integer(reader, "max_tables", "a number of tables") {
            options.max_tables = value;
        }
        if let Some(value) = collectors.duration(reader, "describe_refresh") {
            options.describe_refresh = value;
        }
        if let Some(value) = collectors.duration(reader, "period") {
            options.period = value;
        }
        if let Some(value) = collectors.duration(reader, "delay") {
            options.delay = Some(value);
        }
        if let Some(value) = collectors.strings(reader, "operations") {
            options.operations = value;
        }
        for (key, slot) in [
            ("item_size_sampling", &mut options.item_size_sampling),
            ("contributor_insights", &mut options.contributor_insights),
            ("hash_keys", &mut options.hash_keys),
        ] {
            if let Some(value) = collectors.boolean(reader, key) {
                *slot = value;
            }
        }
        if let Some(value) = collectors.duration(reader, "sample_every") {
            options.sample_every = value;
        }
        if let Some(value) = collectors.number(reader, "sample_read_capacity_budget") {
            options.sample_read_capacity_budget = value;
        }
        if let Some(value) = collectors.integer(reader, "sample_max_items", "a number of items") {
            options.sample_max_items = value;
        }
        if let Some(value) =
            collectors.integer(reader, "contributor_top_n", "a number of keys (1-100)")
        {
            options.contributor_top_n = value;
        }
        if let Some(value) = collectors.number(reader, "cost_per_1000_metrics") {
            options.cost_per_1000_metrics = value;
        }
        collectors.finish(reader);
    }
    Some(options)
}
