-- churn: every read follows a write to the table it reads, so a cache can only miss (and must
-- never serve the value from before the write).
\set aid random(1, 1000)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
