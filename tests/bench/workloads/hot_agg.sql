-- hot_agg: an expensive read (a sequential scan of 100,000 of the 1,000,000 rows at scale 10)
-- over only 10 distinct keys: it caches well.
\set bid random(1, 10)
SELECT count(*), sum(abalance), avg(abalance) FROM pgbench_accounts WHERE bid = :bid;
