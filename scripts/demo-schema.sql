-- demo-schema.sql — the small shop `make run` loads into its throwaway database `demo`:
-- 200 products, 300 customers, 800 orders. Deterministic: every run has the same rows.
--
-- Things to try through pgstash (psql postgresql://USER@127.0.0.1:6432/demo):
--   SELECT * FROM products WHERE category = 'books' ORDER BY price LIMIT 5;   -- run it twice
--   SELECT c.name, count(*) FROM orders o JOIN customers c ON c.id = o.customer_id
--     GROUP BY c.name ORDER BY 2 DESC LIMIT 5;
--   UPDATE products SET price = price * 1.1 WHERE id = 1;   -- invalidates reads of products
--   SELECT * FROM order_totals ORDER BY total DESC LIMIT 5;  -- a view over orders+products

\set ON_ERROR_STOP on
SET client_min_messages = warning;

DROP VIEW IF EXISTS order_totals;
DROP TABLE IF EXISTS orders, customers, products CASCADE;

CREATE TABLE products (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    category    text NOT NULL,
    price       numeric(10, 2) NOT NULL CHECK (price >= 0),
    stock       integer NOT NULL DEFAULT 0
);

CREATE TABLE customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL UNIQUE,
    city        text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    product_id  integer NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    status      text NOT NULL DEFAULT 'new',
    ordered_at  timestamptz NOT NULL
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_product_idx ON orders (product_id);

INSERT INTO products (id, name, category, price, stock)
SELECT g,
       (ARRAY['Classic', 'Deluxe', 'Compact', 'Eco', 'Pro'])[1 + g % 5] || ' '
           || (ARRAY['lamp', 'novel', 'kettle', 'backpack', 'headphones', 'mug', 'atlas',
                     'drill'])[1 + g % 8] || ' #' || g,
       (ARRAY['home', 'books', 'kitchen', 'outdoor', 'audio', 'kitchen', 'books',
              'tools'])[1 + g % 8],
       round((5 + (g * 37 % 200) + (g % 100) / 100.0)::numeric, 2),
       (g * 13) % 120
FROM generate_series(1, 200) AS g;

INSERT INTO customers (id, name, email, city, created_at)
SELECT g,
       (ARRAY['Ada', 'Grace', 'Linus', 'Barbara', 'Ken', 'Margaret', 'Dennis', 'Frances',
              'Edsger', 'Radia'])[1 + g % 10] || ' '
           || (ARRAY['Lovelace', 'Hopper', 'Torvalds', 'Liskov', 'Thompson', 'Hamilton',
                     'Ritchie', 'Allen', 'Dijkstra', 'Perlman', 'Knuth'])[1 + g % 11],
       'customer' || g || '@example.com',
       (ARRAY['Lisbon', 'Oslo', 'Kyoto', 'Austin', 'Nairobi', 'Lyon', 'Quito'])[1 + g % 7],
       timestamptz '2023-01-01 00:00:00+00' + (g * interval '1 day 3 hours')
FROM generate_series(1, 300) AS g;

INSERT INTO orders (id, customer_id, product_id, quantity, status, ordered_at)
SELECT g,
       1 + (g * 7) % 300,
       1 + (g * 11) % 200,
       1 + g % 4,
       (ARRAY['new', 'paid', 'shipped', 'delivered', 'delivered', 'cancelled'])[1 + g % 6],
       timestamptz '2024-01-01 00:00:00+00' + (g * interval '7 hours 13 minutes')
FROM generate_series(1, 800) AS g;

CREATE VIEW order_totals AS
SELECT o.id AS order_id, c.name AS customer, p.name AS product, o.quantity,
       o.quantity * p.price AS total, o.status
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN products p ON p.id = o.product_id;

ANALYZE products;
ANALYZE customers;
ANALYZE orders;
