-- pgstash's scripted driver session (tests/clients/README.md) for psql: simple protocol, the
-- parameters as literals. Run by test_psql.py as
--   psql -X -A -v ON_ERROR_STOP=0 -v t=TABLE -v b=TABLE_big -f session.sql CONNINFO
-- with PGSTASH_CKPT (checkpoint URL), PGSTASH_T and PGSTASH_B (table names) in the environment.
-- Every step starts with an "@@ step" line; stdout and stderr must be identical through pgstash.
\set ON_ERROR_STOP 0
\pset null '<NULL>'

-- S0 setup
\echo @@ setup.drop
DROP TABLE IF EXISTS :t, :b;
\echo @@ setup.create
CREATE TABLE :t (id int PRIMARY KEY, big bigint, name text, amount numeric(14,4),
    ts timestamptz, data bytea, uid uuid, doc jsonb, nums int[], tags text[]);
\echo @@ setup.create_big
CREATE TABLE :b (id int PRIMARY KEY, label text NOT NULL, amount numeric(12,2) NOT NULL);
\echo @@ setup.fill_big
INSERT INTO :b SELECT g, 'row-' || g, g * 1.25 FROM generate_series(1, 50000) g;
\echo @@ setup.settings
SELECT current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds,
    current_setting('extra_float_digits') AS efd;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/ready?tables=$PGSTASH_T,$PGSTASH_B"

-- S1 every type, and NULLs
\echo @@ insert.1
INSERT INTO :t (id, big, name, amount, ts, data, uid, doc, nums, tags) VALUES
    (1, 9007199254740993, 'alpha', 12345.6789, '2024-02-29 13:14:15.123456+02',
     '\x0001feff275c', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{"k": "v", "n": [1, 2.5, {"x": null}], "u": "ü"}', '{1,2,3}', '{a,"b c","\"q\"","{x}"}')
    RETURNING id, name, ts;
\echo @@ insert.2
INSERT INTO :t (id, big, name, amount, ts, data, uid, doc, nums, tags) VALUES
    (2, -5, 'beta ü', -0.5, '1999-12-31 23:59:59+00', '', '00000000-0000-0000-0000-000000000000',
     '[]', '{}', '{NULL,x}')
    RETURNING id, name, ts;
\echo @@ insert.3
INSERT INTO :t (id, big, name, amount, ts, data, uid, doc, nums, tags) VALUES
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
    RETURNING id, name, ts;

-- S2 every row back
\echo @@ select.all
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t ORDER BY id;

-- S3 typed values, and typed NULLs
\echo @@ echo.values
SELECT 1::int AS i, 9007199254740993::bigint AS b, 'alpha'::text AS t, 12345.6789::numeric AS n,
    '2024-02-29 13:14:15.123456+02'::timestamptz AS ts, '\x0001feff275c'::bytea AS by,
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '{"k": "v"}'::jsonb AS j,
    '{1,2,3}'::int[] AS ia, '{a,NULL}'::text[] AS ta;
\echo @@ echo.nulls
SELECT NULL::int AS i, NULL::bigint AS b, NULL::text AS t, NULL::numeric AS n,
    NULL::timestamptz AS ts, NULL::bytea AS by, NULL::uuid AS u, NULL::jsonb AS j,
    NULL::int[] AS ia, NULL::text[] AS ta;

-- S4 typed filters
\echo @@ filter.uuid
SELECT id FROM :t WHERE uid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' ORDER BY id;
\echo @@ filter.jsonb
SELECT id FROM :t WHERE doc @> '{"k": "v"}' ORDER BY id;
\echo @@ filter.textarr
SELECT id FROM :t WHERE tags && '{x,a}' ORDER BY id;
\echo @@ filter.intarr
SELECT id FROM :t WHERE nums @> '{2}' ORDER BY id;
\echo @@ filter.ts
SELECT id FROM :t WHERE ts > '1999-12-31 23:59:59+00' ORDER BY id;
\echo @@ filter.bytea
SELECT id FROM :t WHERE data = '\x0001feff275c' ORDER BY id;
\echo @@ filter.numeric
SELECT id FROM :t WHERE amount = -0.5000 ORDER BY id;
\echo @@ filter.bigint
SELECT id FROM :t WHERE big = 9007199254740993 ORDER BY id;
\echo @@ filter.null
SELECT id FROM :t WHERE name IS NOT DISTINCT FROM NULL ORDER BY id;
\echo @@ filter.text
SELECT id FROM :t WHERE name = 'beta ü' ORDER BY id;

-- S5 the same read, repeated
\echo @@ repeat.prime.1
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
\echo @@ repeat.prime.3
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ repeat
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=repeat&reads=12"
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ repeat_prepared
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 3;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=repeat_prepared&reads=4"

-- S6 ROLLBACK
\echo @@ rollback.prime
SELECT name FROM :t WHERE id = 2;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ rollback.cached
SELECT name FROM :t WHERE id = 2;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=cached_before_tx&reads=1"
\echo @@ rollback.update
BEGIN;
UPDATE :t SET name = 'changed' WHERE id = 2;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ rollback.read_own_write
SELECT name FROM :t WHERE id = 2;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=in_tx_after_write&reads=1"
\echo @@ rollback.rollback
ROLLBACK;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ rollback.after
SELECT name FROM :t WHERE id = 2;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=after_rollback&reads=1"

-- S7 COMMIT (psql has one connection: "conn2" is the same one)
\echo @@ commit.conn2.prime
SELECT id, name FROM :t ORDER BY id;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ commit.conn2.cached
SELECT id, name FROM :t ORDER BY id;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=conn2_cached&reads=1"
\echo @@ commit.prime
SELECT name FROM :t WHERE id = 1;
\echo @@ commit.tx
BEGIN;
SELECT count(*) AS n FROM :t;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ commit.read_before_write
SELECT name FROM :t WHERE id = 1;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=in_tx_before_write&reads=1"
\echo @@ commit.tx_write
INSERT INTO :t (id, big, name, amount, ts, data, uid, doc, nums, tags) VALUES
    (10, 10, 'committed', 10.01, '1999-12-31 23:59:59+00', '\x10',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"c": 10}', '{10}', '{ten}')
    RETURNING id, name, ts;
SELECT count(*) FROM :t;
COMMIT;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ commit.after
SELECT id, name FROM :t ORDER BY id;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=conn2_after_commit&reads=1"

-- S8 errors mid-transaction
\echo @@ error.prime
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
\echo @@ error.tx
BEGIN;
INSERT INTO :t (id, name) VALUES (20, 'doomed') RETURNING id, name, ts;
INSERT INTO :t (id, name) VALUES (1, 'dup') RETURNING id, name, ts;
SELECT 1 AS one;
ROLLBACK;
SELECT count(*) FROM :t WHERE id = 20;
BEGIN;
SELECT id / 0 AS r FROM :t WHERE id = 1;
ROLLBACK;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ error.continue
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=after_error&reads=1"

-- S9 the big results
\echo @@ big50k.1
SELECT id, label, amount FROM :b WHERE id > 0 ORDER BY id;
\echo @@ big50k.2
SELECT id, label, amount FROM :b WHERE id > 0 ORDER BY id;
\echo @@ bigish.1
SELECT id, label, amount FROM :b WHERE id <= 5000 ORDER BY id;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ bigish.2
SELECT id, label, amount FROM :b WHERE id <= 5000 ORDER BY id;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=bigish&reads=1"

-- S10 writes, then reads that must see them
\echo @@ write.prime
SELECT count(*) AS n, sum(amount) AS s FROM :t;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ write.cached
SELECT count(*) AS n, sum(amount) AS s FROM :t;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=primed&reads=1"
\echo @@ write.update
UPDATE :t SET amount = amount + 1.5, name = 'alpha2' WHERE id = 1;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ write.after_update
SELECT count(*) AS n, sum(amount) AS s FROM :t;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=after_update&reads=2"
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ write.again
SELECT count(*) AS n, sum(amount) AS s FROM :t;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=after_update_repeat&reads=2"
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ write.conn2_by_id
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=conn2_by_id&reads=1"
\echo @@ write.delete
DELETE FROM :t WHERE id = 3;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/mark"
\echo @@ write.after_delete
SELECT count(*) AS n, sum(amount) AS s FROM :t;
SELECT id, name FROM :t ORDER BY id;
SELECT id, big, name, amount, ts, data, uid, doc, nums, tags FROM :t WHERE id = 1;
\echo @@ ck
\! curl -sf -o /dev/null "$PGSTASH_CKPT/check?tag=after_delete&reads=3"

-- psql extras (no cache expectations): several statements in one Query message, and
-- SQL-level prepared statements (EXECUTE counts as a possible write: it comes last)
\echo @@ multi
SELECT count(*) AS n FROM :t \; SELECT name FROM :t WHERE id = 2 \; SELECT 3 AS three;
\echo @@ prepare
PREPARE by_id_p(int) AS SELECT id, name, amount FROM :t WHERE id = $1;
EXECUTE by_id_p(1);
EXECUTE by_id_p(1);
UPDATE :t SET name = 'alpha3' WHERE id = 1;
EXECUTE by_id_p(1);
DEALLOCATE by_id_p;

-- S11 clean up
\echo @@ cleanup
DROP TABLE :t, :b;
