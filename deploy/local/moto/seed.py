"""Creates the seed's DynamoDB tables on the local moto server (idempotent: existing tables are left alone,
TTL is (re)enabled only when not already on).

Usage: seed.py [ENDPOINT_URL]   (default http://127.0.0.1:15000; credentials from the environment)
"""
import sys

import boto3

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:15000"

TABLES = [
    {
        "TableName": "UserSessions",
        "AttributeDefinitions": [
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "session_id", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": "session_id", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "SessionIdIndex",
                "KeySchema": [{"AttributeName": "session_id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 50, "WriteCapacityUnits": 25},
            }
        ],
        "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {"ReadCapacityUnits": 100, "WriteCapacityUnits": 50},
        "_ttl": "expires_at",
    },
    {
        "TableName": "ShoppingCart",
        "AttributeDefinitions": [
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "product_id", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": "product_id", "KeyType": "RANGE"},
        ],
        "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {"ReadCapacityUnits": 50, "WriteCapacityUnits": 50},
        "_ttl": "expires_at",
    },
    {
        "TableName": "Notifications",
        "AttributeDefinitions": [
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "notification_id", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": "notification_id", "KeyType": "RANGE"},
        ],
        "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {"ReadCapacityUnits": 25, "WriteCapacityUnits": 25},
        "_ttl": "ttl",
    },
]


def main() -> None:
    ddb = boto3.client("dynamodb", endpoint_url=URL)
    existing = set()
    for page in ddb.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])
    created = []
    for spec in TABLES:
        spec = dict(spec)
        ttl_attr = spec.pop("_ttl")
        name = spec["TableName"]
        if name not in existing:
            ddb.create_table(**spec)
            ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
            created.append(name)
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(TableName=name,
                                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attr})
    print(f"[fleet] moto: DynamoDB tables ready ({', '.join(t['TableName'] for t in TABLES)}; "
          f"created now: {', '.join(created) or 'none'})", file=sys.stderr)


if __name__ == "__main__":
    main()
