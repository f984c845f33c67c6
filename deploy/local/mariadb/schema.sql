-- The `shop` database: the transactional tables of the seed. Run once on the primary; replicated to the replica.
-- Idempotent (IF NOT EXISTS everywhere).
CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
USE shop;

CREATE TABLE IF NOT EXISTS customers (
  customer_id   BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email         VARCHAR(255) NOT NULL UNIQUE,
  password_hash VARCHAR(255) NOT NULL,
  first_name    VARCHAR(100),
  last_name     VARCHAR(100),
  phone         VARCHAR(20),
  created_at    TIMESTAMP    DEFAULT CURRENT_TIMESTAMP,
  updated_at    TIMESTAMP    DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  INDEX idx_email (email),
  INDEX idx_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS orders (
  order_id     BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id  BIGINT        NOT NULL,
  order_status ENUM('pending','confirmed','shipped','delivered','cancelled') DEFAULT 'pending',
  total_amount DECIMAL(12,2) NOT NULL,
  currency     CHAR(3)       DEFAULT 'USD',
  created_at   TIMESTAMP     DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (customer_id),
  INDEX idx_customer_status (customer_id, order_status),
  INDEX idx_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS inventory (
  product_id BIGINT      NOT NULL PRIMARY KEY,
  sku        VARCHAR(64) UNIQUE,
  quantity   INT         NOT NULL,
  updated_at TIMESTAMP   DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS payments (
  payment_id BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_id   BIGINT        NOT NULL,
  amount     DECIMAL(12,2),
  status     ENUM('authorized','captured','refunded','failed'),
  created_at TIMESTAMP     DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT fk_payments_order FOREIGN KEY (order_id) REFERENCES orders (order_id),
  INDEX idx_order (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
