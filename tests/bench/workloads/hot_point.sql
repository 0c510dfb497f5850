-- hot_point: a cheap primary-key read over 1,000 hot keys, where a cache usually loses to the
-- database.
\set aid random(1, 1000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
