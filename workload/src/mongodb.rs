//! MongoDB (FerretDB locally): the seed's catalog, database `catalog`, collection `products`.
//!
//! The schema is the seed's product document (category, specifications, pricing with variants, embedded
//! reviews, search tags) with indexes on `sku` (unique, as the fleet creates it), `category.id` and
//! `search_tags`; the missing ones of `--mongodb-products` products are inserted at start (existing ones are
//! left alone, the fleet's own five included). A tick is a shopper's visit: a product page by SKU, a tag search, or (one in
//! ten) a review pushed onto a product.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::{ClientOptions, FindOptions, IndexOptions};
use mongodb::{Collection, IndexModel};
use rand::RngExt;

use crate::driver::Workload;

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "MongoDB")]
pub struct MongodbArgs {
    /// URL of the catalog's server.
    #[arg(
        id = "mongodb_url",
        long = "mongodb-url",
        value_name = "URL",
        env = "DBWATCH_MONGODB_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// Products in the catalog (SKU-000001 to SKU-N).
    #[arg(
        id = "mongodb_products",
        long = "mongodb-products",
        value_name = "N",
        default_value_t = 200
    )]
    pub products: u32,
}

const CATEGORIES: [(&str, &str, &str); 4] = [
    (
        "smartphones",
        "Smartphones",
        "electronics/mobile/smartphones",
    ),
    ("laptops", "Laptops", "electronics/computers/laptops"),
    ("headphones", "Headphones", "electronics/audio/headphones"),
    ("monitors", "Monitors", "electronics/computers/monitors"),
];

const TAGS: [&str; 8] = [
    "5g", "apple", "android", "portable", "wireless", "4k", "gaming", "office",
];

const COMMENTS: [&str; 4] = [
    "Excellent camera quality!",
    "Does what it says.",
    "Battery could be better.",
    "Arrived late, works fine.",
];

pub struct Mongodb {
    products: Collection<Document>,
    count: u32,
}

impl Mongodb {
    pub async fn new(args: &MongodbArgs, timeout: Duration) -> anyhow::Result<Self> {
        let url = args.url.as_deref().filter(|url| !url.is_empty()).context(
            "no MongoDB URL: pass --mongodb-url or set DBWATCH_MONGODB_URL \
             (eval \"$(deploy/local/fleet env)\" sets it for the local fleet)",
        )?;
        anyhow::ensure!(args.products >= 1, "--mongodb-products must be at least 1");
        // Parsing a mongodb:// URL does no IO (mongodb+srv:// would resolve DNS, bounded here).
        let mut options = tokio::time::timeout(timeout, ClientOptions::parse(url))
            .await
            .context("--mongodb-url not resolved in time")?
            .context("--mongodb-url is not a valid MongoDB URL")?;
        options.app_name = Some("dbwatch-workload".into());
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        options.max_pool_size = Some(8);
        tracing::info!("mongodb: catalog on {:?}", options.hosts);
        let client = mongodb::Client::with_options(options).context("mongodb client")?;
        Ok(Mongodb {
            products: client.database("catalog").collection("products"),
            count: args.products,
        })
    }
}

pub fn sku(n: u32) -> String {
    format!("SKU-{n:06}")
}

/// Product `n` as the seed describes a product document (reviews start empty).
pub fn product(n: u32, now: DateTime) -> Document {
    let (id, name, path) = CATEGORIES[n as usize % CATEGORIES.len()];
    let base_cents = 1999 + i64::from(n % 97) * 1000;
    let base = base_cents as f64 / 100.0;
    doc! {
        "sku": sku(n),
        "name": format!("{name} model {n}"),
        "category": { "id": id, "name": name, "path": path },
        "specifications": {
            "storage": ["128GB", "256GB"],
            "colors": ["Black", "Blue"],
            "display": { "size": "6.1 inches", "resolution": "2556 x 1179" },
        },
        "pricing": {
            "base_price": base,
            "variants": [
                { "storage": "128GB", "price": base },
                { "storage": "256GB", "price": base + 100.0 },
            ],
        },
        "reviews": [],
        "search_tags": [TAGS[n as usize % TAGS.len()], TAGS[(n as usize / 3) % TAGS.len()], id],
        "created_at": now,
        "updated_at": now,
    }
}

enum Visit {
    Page(u32),
    Search(&'static str),
    Review {
        product: u32,
        rating: i32,
        comment: &'static str,
        user: u32,
    },
}

impl Mongodb {
    fn visit(&self) -> Visit {
        let mut rng = rand::rng();
        let product = rng.random_range(1..=self.count);
        match rng.random_range(0..10) {
            0 => Visit::Review {
                product,
                rating: rng.random_range(1..=5),
                comment: COMMENTS[rng.random_range(0..COMMENTS.len())],
                user: rng.random_range(1..=10_000),
            },
            1..=3 => Visit::Search(TAGS[rng.random_range(0..TAGS.len())]),
            _ => Visit::Page(product),
        }
    }
}

impl Workload for Mongodb {
    fn name(&self) -> &'static str {
        "mongodb"
    }

    /// Creates the missing indexes and inserts the missing products, in a few round trips: FerretDB answers
    /// slowly under load, and an index build or an upsert per product could outlast the attempt's deadline.
    async fn prepare(&self) -> anyhow::Result<()> {
        let indexes: HashSet<String> = self
            .products
            .list_index_names()
            .await
            .context("list the indexes of catalog.products")?
            .into_iter()
            .collect();
        for (keys, unique, name) in [
            (doc! { "sku": 1 }, true, "sku_1"),
            (doc! { "category.id": 1 }, false, "category.id_1"),
            (doc! { "search_tags": 1 }, false, "search_tags_1"),
        ] {
            if indexes.contains(name) {
                continue;
            }
            let index = IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .unique(unique)
                        .name(name.to_owned())
                        .build(),
                )
                .build();
            self.products
                .create_index(index)
                .await
                .with_context(|| format!("create index {name} on catalog.products"))?;
        }
        let present: HashSet<String> = self
            .products
            .distinct("sku", doc! {})
            .await
            .context("list the SKUs of catalog.products")?
            .into_iter()
            .filter_map(|sku| match sku {
                Bson::String(sku) => Some(sku),
                _ => None,
            })
            .collect();
        let now = DateTime::now();
        let missing: Vec<Document> = (1..=self.count)
            .filter(|&n| !present.contains(&sku(n)))
            .map(|n| product(n, now))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Unordered: a product another writer inserted meanwhile fails alone, on the unique `sku` index, and
        // the next attempt finds it present.
        self.products
            .insert_many(&missing)
            .ordered(false)
            .await
            .with_context(|| format!("insert {} products", missing.len()))?;
        Ok(())
    }

    async fn tick(&self) -> anyhow::Result<()> {
        match self.visit() {
            Visit::Page(n) => {
                self.products
                    .find_one(doc! { "sku": sku(n) })
                    .await
                    .context("product page")?;
            }
            Visit::Search(tag) => {
                let mut cursor = self
                    .products
                    .find(doc! { "search_tags": tag })
                    .with_options(
                        FindOptions::builder()
                            .limit(10)
                            .projection(doc! { "sku": 1, "name": 1, "pricing.base_price": 1 })
                            .build(),
                    )
                    .await
                    .context("tag search")?;
                while cursor.advance().await.context("tag search")? {}
            }
            Visit::Review {
                product,
                rating,
                comment,
                user,
            } => {
                let now = DateTime::now();
                self.products
                    .update_one(
                        doc! { "sku": sku(product) },
                        doc! {
                            "$push": { "reviews": {
                                "user_id": format!("user{user}"),
                                "rating": rating,
                                "comment": comment,
                                "date": now,
                            } },
                            "$set": { "updated_at": now },
                        },
                    )
                    .await
                    .context("add a review")?;
            }
        }
        Ok(())
    }

    fn analytics_queries(&self) -> &'static [&'static str] {
        &["products_per_category", "recently_reviewed"]
    }

    async fn analytics(&self, index: usize) -> anyhow::Result<()> {
        match index {
            0 => {
                for (id, _, _) in CATEGORIES {
                    self.products
                        .count_documents(doc! { "category.id": id })
                        .await?;
                }
            }
            _ => {
                let mut cursor = self
                    .products
                    .find(doc! { "reviews.0": { "$exists": true } })
                    .with_options(
                        FindOptions::builder()
                            .sort(doc! { "updated_at": -1 })
                            .limit(10)
                            .projection(doc! { "sku": 1, "reviews": 1 })
                            .build(),
                    )
                    .await?;
                while cursor.advance().await? {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_follow_the_seed_document() {
        let document = product(5, DateTime::from_millis(0));
        assert_eq!(document.get_str("sku").ok(), Some("SKU-000005"));
        let category = document.get_document("category").expect("category");
        assert_eq!(category.get_str("id").ok(), Some("laptops"));
        assert_eq!(
            category.get_str("path").ok(),
            Some("electronics/computers/laptops")
        );
        assert_eq!(document.get_array("reviews").map(Vec::len).ok(), Some(0));
        let tags = document.get_array("search_tags").expect("tags");
        assert_eq!(tags.len(), 3);
        let pricing = document.get_document("pricing").expect("pricing");
        assert_eq!(pricing.get_f64("base_price").ok(), Some(69.99));
        assert_eq!(pricing.get_array("variants").map(Vec::len).ok(), Some(2));
    }
}
