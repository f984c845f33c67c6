"""Seeds the local FerretDB: database `catalog`, collection `products`, indexes on sku (unique) and category.

Idempotent: missing documents are inserted by sku (existing ones are not touched) and create_index is a no-op
when the index exists.
Usage: seed.py [MONGODB_URL]   (default mongodb://127.0.0.1:27117/)
"""
import sys
from datetime import datetime, timezone

from pymongo import ASCENDING, MongoClient, UpdateOne

URL = sys.argv[1] if len(sys.argv) > 1 else "mongodb://127.0.0.1:27117/"
T0 = datetime(2024, 1, 15, 9, 30, tzinfo=timezone.utc)

PRODUCTS = [
    {
        "sku": "LAP-001",
        "name": "UltraBook Pro 14",
        "category": "laptops",
        "brand": "Northwind",
        "specifications": {"cpu": "8-core 3.2 GHz", "ram_gb": 16, "storage_gb": 512, "screen_inches": 14.0,
                           "weight_kg": 1.3},
        "pricing": {"base_price": 1299.0, "currency": "USD",
                    "discounts": [{"type": "seasonal", "percent": 10, "valid_until": datetime(2024, 3, 1, tzinfo=timezone.utc)}]},
        "inventory": {"quantity": 42, "warehouse_locations": ["us-east-1a", "eu-west-1b"]},
        "reviews": [
            {"user_id": "u-1001", "rating": 5, "comment": "Fast and light.", "created_at": T0},
            {"user_id": "u-1002", "rating": 4, "comment": "Battery could be better.", "created_at": T0},
        ],
        "search_tags": ["laptop", "ultrabook", "portable"],
    },
    {
        "sku": "PHN-002",
        "name": "Pixelate 8",
        "category": "phones",
        "brand": "Contoso",
        "specifications": {"screen_inches": 6.1, "storage_gb": 128, "camera_mp": 50, "5g": True},
        "pricing": {"base_price": 699.0, "currency": "USD", "discounts": []},
        "inventory": {"quantity": 180, "warehouse_locations": ["us-west-2a"]},
        "reviews": [{"user_id": "u-1003", "rating": 5, "comment": "Great camera.", "created_at": T0}],
        "search_tags": ["phone", "android", "5g"],
    },
    {
        "sku": "HDP-003",
        "name": "QuietWave Headphones",
        "category": "audio",
        "brand": "Fabrikam",
        "specifications": {"type": "over-ear", "noise_cancelling": True, "battery_hours": 30},
        "pricing": {"base_price": 249.0, "currency": "EUR",
                    "discounts": [{"type": "bundle", "percent": 15}, {"type": "member", "percent": 5}]},
        "inventory": {"quantity": 0, "warehouse_locations": []},
        "reviews": [],
        "search_tags": ["headphones", "anc", "wireless"],
    },
    {
        "sku": "MON-004",
        "name": "ClearView 27 4K",
        "category": "monitors",
        "brand": "Northwind",
        "specifications": {"screen_inches": 27, "resolution": "3840x2160", "refresh_hz": 144, "panel": "IPS"},
        "pricing": {"base_price": 449.0, "currency": "USD", "discounts": [{"type": "clearance", "percent": 20}]},
        "inventory": {"quantity": 12, "warehouse_locations": ["us-east-1a", "us-east-1c", "ap-south-1a"]},
        "reviews": [
            {"user_id": "u-1004", "rating": 3, "comment": "Stand wobbles.", "created_at": T0},
            {"user_id": "u-1001", "rating": 4, "comment": "Sharp picture.", "created_at": T0},
        ],
        "search_tags": ["monitor", "4k", "ips"],
    },
    {
        "sku": "LAP-005",
        "name": "WorkStation 16",
        "category": "laptops",
        "brand": "Contoso",
        "specifications": {"cpu": "12-core 3.8 GHz", "ram_gb": 64, "storage_gb": 2048, "gpu": "16 GB"},
        "pricing": {"base_price": 3199.0, "currency": "USD", "discounts": []},
        "inventory": {"quantity": 5, "warehouse_locations": ["eu-west-1b"]},
        "reviews": [{"user_id": "u-1005", "rating": 5, "comment": "Compiles everything.", "created_at": T0}],
        "search_tags": ["laptop", "workstation"],
    },
]


def main() -> None:
    client = MongoClient(URL, serverSelectionTimeoutMS=5000)
    products = client["catalog"]["products"]
    products.create_index([("sku", ASCENDING)], unique=True, name="sku_1")
    products.create_index([("category", ASCENDING)], name="category_1")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # $setOnInsert only: a second run writes nothing (and leaves documents the tests changed alone).
    ops = [UpdateOne({"sku": p["sku"]}, {"$setOnInsert": {**p, "created_at": T0, "updated_at": now}}, upsert=True)
           for p in PRODUCTS]
    result = products.bulk_write(ops, ordered=True)
    print(f"[fleet] ferretdb: catalog.products seeded ({result.upserted_count} inserted, "
          f"{products.count_documents({})} documents)", file=sys.stderr)


if __name__ == "__main__":
    main()
