-- The seed's analytics schema, in database `shop` on the fleet's primary.
-- Idempotent: deploy/local/components/postgres.sh runs it on every `fleet up`.
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS analytics.fact_sales (
    sale_id      SERIAL PRIMARY KEY,
    customer_id  INT NOT NULL,
    product_id   INT NOT NULL,
    order_date   DATE NOT NULL,
    quantity     INT NOT NULL,
    unit_price   DECIMAL(10,2) NOT NULL,
    total_amount DECIMAL(10,2) NOT NULL,
    created_at   TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS analytics.dim_customers (
    customer_id      INT PRIMARY KEY,
    customer_segment VARCHAR(50),
    registration_date DATE,
    lifetime_value   DECIMAL(10,2),
    last_updated     TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_fact_sales_order_date  ON analytics.fact_sales (order_date);
CREATE INDEX IF NOT EXISTS idx_fact_sales_customer_id ON analytics.fact_sales (customer_id);

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
