-- rw_mix: four point reads (cacheable: pgbench_accounts is never written here) and one write
-- to another table per transaction; 8 clients contend on the one branch row.
\set aid random(1, 1000)
\set aid2 :aid + 1
\set aid3 :aid + 2
\set aid4 :aid + 3
\set r random(-5000, 5000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid2;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid3;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid4;
UPDATE pgbench_branches SET bbalance = bbalance + :r WHERE bid = 1;
