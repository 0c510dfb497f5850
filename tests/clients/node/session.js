'use strict';
// node-postgres (pg) running pgstash's scripted driver session (tests/clients/README.md).
//
//   node session.js '{"host": ..., "port": ..., "user": ..., "database": ..., "table": ...,
//                     "ckpt": "http://127.0.0.1:PORT"}'
//
// Prints the transcript as JSON on stdout: [step, value] pairs holding what pg returned
// (values with their JavaScript types, field descriptions, command tags, errors).
// Parameterised queries use the extended protocol (unnamed statements); the repeated read
// uses a named prepared statement (`name:`), parsed once per connection.

const crypto = require('crypto');
const http = require('http');
const { Client } = require('pg');

const cfg = JSON.parse(process.argv[2]);
const T = cfg.table;
const B = cfg.table + '_big';
const out = [];

function rec(step, value) {
  out.push([step, value]);
}

function norm(v) {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return ['Buffer', v.toString('hex')];
  if (v instanceof Date) return ['Date', isNaN(v) ? 'Invalid Date' : v.toISOString()];
  if (Array.isArray(v)) return ['Array', v.map(norm)];
  if (typeof v === 'object') return [v.constructor ? v.constructor.name : 'Object', JSON.stringify(v)];
  return [typeof v, String(v)];
}

function describe(res) {
  if (!res.fields || res.fields.length === 0) return null;
  // tableID left out: the two runs create their tables afresh
  return res.fields.map((f) => [f.name, f.columnID, f.dataTypeID, f.dataTypeSize,
    f.dataTypeModifier, f.format]);
}

// the status byte of the last ReadyForQuery ('I', 'T', 'E'), kept by pg 8.x (not public API)
function txStatus(client) {
  return client._txStatus === undefined ? 'n/a' : client._txStatus;
}

// pg 8.x sets client.readyForQuery (and _txStatus) when the ReadyForQuery arrives
async function untilReady(client) {
  const deadline = Date.now() + 10000;
  while (client.readyForQuery === false && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function errValue(e) {
  if (!e.code) throw e; // not a server error: a bug in this script or a broken connection
  return {
    error: e.code, severity: e.severity, message: e.message, detail: e.detail || null,
    hint: e.hint || null, position: e.position || null, constraint: e.constraint || null,
  };
}

async function execute(client, text, values, name) {
  const q = { text, rowMode: 'array' };
  if (values !== undefined) q.values = values;
  if (name) q.name = name;
  try {
    const res = await client.query(q);
    return {
      desc: describe(res), rows: res.rows ? res.rows.map((r) => r.map(norm)) : null,
      rowCount: res.rowCount, command: res.command, tx: txStatus(client),
    };
  } catch (e) {
    const err = errValue(e);
    // pg rejects on the ErrorResponse, before the ReadyForQuery that follows it has been read
    await untilReady(client);
    return Object.assign(err, { tx: txStatus(client) });
  }
}

async function q(client, step, text, values, name) {
  rec(step, await execute(client, text, values, name));
}

function ckpt(path) {
  rec('ck', path.split('?')[0].replace('/', ''));
  return new Promise((resolve, reject) => {
    http.get(cfg.ckpt + path, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(
        'checkpoint ' + path + ': HTTP ' + res.statusCode))));
    }).on('error', reject);
  });
}
const ck = {
  ready: (tables) => ckpt('/ready?tables=' + tables.join(',')),
  mark: () => ckpt('/mark'),
  check: (tag, reads) => ckpt('/check?tag=' + tag + '&reads=' + reads),
};

// amounts come back as strings ("1.25"): sum them exactly in hundredths
function cents(s) {
  const neg = s.startsWith('-');
  const [i, f = ''] = (neg ? s.slice(1) : s).split('.');
  const v = BigInt(i) * 100n + BigInt((f + '00').slice(0, 2));
  return neg ? -v : v;
}
function fromCents(v) {
  const neg = v < 0n;
  const a = neg ? -v : v;
  return (neg ? '-' : '') + (a / 100n).toString() + '.' + (a % 100n).toString().padStart(2, '0');
}

async function big(client, step, text, values) {
  try {
    const res = await client.query({ text, values, rowMode: 'array' });
    const h = crypto.createHash('sha256');
    let sumId = 0;
    let sumAmount = 0n;
    for (const r of res.rows) {
      h.update(`${r[0]}|${r[1]}|${r[2]}\n`);
      sumId += r[0];
      sumAmount += cents(String(r[2]));
    }
    const n = res.rows.length;
    rec(step, {
      desc: describe(res), count: n, sum_id: sumId, sum_amount: fromCents(sumAmount),
      checksum: h.digest('hex'), first: n ? res.rows[0].map(norm) : null,
      last: n ? res.rows[n - 1].map(norm) : null, command: res.command, rowCount: res.rowCount,
    });
  } catch (e) {
    rec(step, errValue(e));
  }
}

const COLS = 'id, big, name, amount, ts, data, uid, doc, nums, tags';
const ROW1 = [1, '9007199254740993', 'alpha', '12345.6789', '2024-02-29T13:14:15.123456+02:00',
  Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x27, 0x5c]), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  { k: 'v', n: [1, 2.5, { x: null }], u: 'ü' }, [1, 2, 3], ['a', 'b c', '"q"', '{x}']];
const ROW2 = [2, -5, 'beta ü', '-0.5', new Date(Date.UTC(1999, 11, 31, 23, 59, 59)), Buffer.alloc(0),
  '00000000-0000-0000-0000-000000000000', [], [], [null, 'x']];
const ROW3 = [3, null, null, null, null, null, null, null, null, null];
const ROW10 = [10, 10, 'committed', '10.01', '1999-12-31T23:59:59Z', Buffer.from([0x10]),
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', { c: 10 }, [10], ['ten']];

// jsonb parameters: pg turns plain objects into JSON but arrays into PostgreSQL array literals,
// so a JSON array goes as its JSON text.
function params(row) {
  return row.map((v, i) => (i === 7 && v !== null ? JSON.stringify(v) : v));
}

function insert(client, step, row) {
  const ph = row.map((_, i) => '$' + (i + 1)).join(', ');
  return q(client, step, `INSERT INTO ${T} (${COLS}) VALUES (${ph}) RETURNING id, name, ts`,
    params(row));
}

async function session(c1, c2) {
  // S0 setup
  await q(c1, 'setup.drop', `DROP TABLE IF EXISTS ${T}, ${B}`);
  await q(c1, 'setup.create', `CREATE TABLE ${T} (id int PRIMARY KEY, big bigint, name text, `
    + 'amount numeric(14,4), ts timestamptz, data bytea, uid uuid, doc jsonb, nums int[], '
    + 'tags text[])');
  await q(c1, 'setup.create_big', `CREATE TABLE ${B} (id int PRIMARY KEY, label text NOT NULL, `
    + 'amount numeric(12,2) NOT NULL)');
  await q(c1, 'setup.fill_big', `INSERT INTO ${B} SELECT g, 'row-' || g, g * 1.25 `
    + 'FROM generate_series(1, 50000) g');
  await q(c1, 'setup.settings', "SELECT current_setting('TimeZone') AS tz, "
    + "current_setting('DateStyle') AS ds, current_setting('extra_float_digits') AS efd");
  await ck.ready([T, B]);

  // S1 parameters of every type, and NULL parameters
  await insert(c1, 'insert.1', ROW1);
  await insert(c1, 'insert.2', ROW2);
  await insert(c1, 'insert.3', ROW3);

  // S2 every row back (NULL results included)
  await q(c1, 'select.all', `SELECT ${COLS} FROM ${T} ORDER BY id`);

  // S3 parameters echoed with explicit types, with values and all NULL
  const echo = 'SELECT $1::int AS i, $2::bigint AS b, $3::text AS t, $4::numeric AS n, '
    + '$5::timestamptz AS ts, $6::bytea AS by, $7::uuid AS u, $8::jsonb AS j, '
    + '$9::int[] AS ia, $10::text[] AS ta';
  await q(c1, 'echo.values', echo, params(ROW1));
  await q(c1, 'echo.nulls', echo, new Array(10).fill(null));

  // S4 typed filters
  const filters = [
    ['filter.uuid', 'uid = $1', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    ['filter.jsonb', 'doc @> $1', { k: 'v' }],
    ['filter.textarr', 'tags && $1', ['x', 'a']],
    ['filter.intarr', 'nums @> $1', [2]],
    ['filter.ts', 'ts > $1', new Date(Date.UTC(1999, 11, 31, 23, 59, 59))],
    ['filter.bytea', 'data = $1', Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x27, 0x5c])],
    ['filter.numeric', 'amount = $1', '-0.5000'],
    ['filter.bigint', 'big = $1', '9007199254740993'],
    ['filter.null', 'name IS NOT DISTINCT FROM $1', null],
    ['filter.text', 'name = $1', 'beta ü'],
  ];
  for (const [step, where, p] of filters) {
    await q(c1, step, `SELECT id FROM ${T} WHERE ${where} ORDER BY id`, [p]);
  }

  // S5 the same parameterised read, as a named prepared statement
  const byId = `SELECT ${COLS} FROM ${T} WHERE id = $1`;
  await q(c1, 'repeat.prime.1', byId, [1], 'by_id');
  await q(c1, 'repeat.prime.3', byId, [3], 'by_id');
  await ck.mark();
  const results = { 1: [], 3: [] };
  for (let i = 0; i < 6; i++) {
    for (const k of [1, 3]) results[k].push(await execute(c1, byId, [k], 'by_id'));
  }
  const s = (v) => JSON.stringify(v);
  rec('repeat.results', {
    1: results[1][0], 3: results[3][0],
    all_equal: [1, 3].every((k) => results[k].every((r) => s(r) === s(results[k][0]))),
  });
  await ck.check('repeat', 12);
  await ck.mark();
  for (const k of [1, 3, 1, 3]) await q(c1, `repeat_prepared.${k}`, byId, [k], 'by_id');
  await ck.check('repeat_prepared', 4);

  // S6 ROLLBACK: the cached read comes back unchanged
  const nameById = `SELECT name FROM ${T} WHERE id = $1`;
  await q(c1, 'rollback.prime', nameById, [2]);
  await ck.mark();
  await q(c1, 'rollback.cached', nameById, [2]);
  await ck.check('cached_before_tx', 1);
  await q(c1, 'rollback.begin', 'BEGIN');
  await q(c1, 'rollback.update', `UPDATE ${T} SET name = $1 WHERE id = $2`, ['changed', 2]);
  await ck.mark();
  await q(c1, 'rollback.read_own_write', nameById, [2]);
  await ck.check('in_tx_after_write', 1);
  await q(c1, 'rollback.rollback', 'ROLLBACK');
  await ck.mark();
  await q(c1, 'rollback.after', nameById, [2]);
  await ck.check('after_rollback', 1);

  // S7 COMMIT: another connection sees the row afterwards
  const listing = `SELECT id, name FROM ${T} ORDER BY id`;
  await q(c2, 'commit.conn2.prime', listing);
  await ck.mark();
  await q(c2, 'commit.conn2.cached', listing);
  await ck.check('conn2_cached', 1);
  await q(c1, 'commit.prime', nameById, [1]);
  await q(c1, 'commit.begin', 'BEGIN');
  await q(c1, 'commit.first_in_tx', `SELECT count(*) AS n FROM ${T}`);
  await ck.mark();
  await q(c1, 'commit.read_before_write', nameById, [1]);
  await ck.check('in_tx_before_write', 1);
  await insert(c1, 'commit.insert', ROW10);
  await q(c1, 'commit.count_own_write', `SELECT count(*) FROM ${T}`);
  await q(c1, 'commit.commit', 'COMMIT');
  await ck.mark();
  await q(c2, 'commit.after.conn2', listing);
  await ck.check('conn2_after_commit', 1);
  await q(c1, 'commit.after.conn1', listing);

  // S8 an error mid-transaction, ROLLBACK, and the connection goes on (and still hits)
  await q(c1, 'error.prime', byId, [1], 'by_id');
  await q(c1, 'error.begin', 'BEGIN');
  await insert(c1, 'error.insert_ok', [20, null, 'doomed', null, null, null, null, null, null, null]);
  await insert(c1, 'error.unique_violation', [1, null, 'dup', null, null, null, null, null, null, null]);
  await q(c1, 'error.in_failed_tx', 'SELECT 1 AS one');
  await q(c1, 'error.rollback', 'ROLLBACK');
  await q(c1, 'error.after_rollback', `SELECT count(*) FROM ${T} WHERE id = $1`, [20]);
  await q(c1, 'error.begin2', 'BEGIN');
  await q(c1, 'error.division_by_zero', `SELECT id / $1 AS r FROM ${T} WHERE id = 1`, [0]);
  await q(c1, 'error.rollback2', 'ROLLBACK');
  await ck.mark();
  await q(c1, 'error.continue', byId, [1], 'by_id');
  await ck.check('after_error', 1);

  // S9 a 50k-row result (twice), and a 5k-row one that is cached
  for (const i of [1, 2]) {
    await big(c1, `big50k.${i}`, `SELECT id, label, amount FROM ${B} WHERE id > $1 ORDER BY id`, [0]);
  }
  const bigish = `SELECT id, label, amount FROM ${B} WHERE id <= $1 ORDER BY id`;
  await big(c1, 'bigish.1', bigish, [5000]);
  await ck.mark();
  await big(c1, 'bigish.2', bigish, [5000]);
  await ck.check('bigish', 1);

  // S10 writes followed by reads that must see them
  const totals = `SELECT count(*) AS n, sum(amount) AS s FROM ${T}`;
  await q(c1, 'write.prime', totals, [], 'totals');
  await ck.mark();
  await q(c1, 'write.cached', totals, [], 'totals');
  await ck.check('primed', 1);
  await q(c1, 'write.update', `UPDATE ${T} SET amount = amount + $1, name = $2 WHERE id = $3`,
    ['1.5', 'alpha2', 1]);
  await ck.mark();
  await q(c1, 'write.totals_after_update', totals, [], 'totals');
  await q(c1, 'write.by_id_after_update', byId, [1], 'by_id');
  await ck.check('after_update', 2);
  await ck.mark();
  await q(c1, 'write.totals_again', totals, [], 'totals');
  await q(c1, 'write.by_id_again', byId, [1], 'by_id');
  await ck.check('after_update_repeat', 2);
  await ck.mark();
  await q(c2, 'write.conn2_by_id', byId, [1], 'by_id');
  await ck.check('conn2_by_id', 1);
  await q(c1, 'write.delete', `DELETE FROM ${T} WHERE id = $1`, [3]);
  await ck.mark();
  await q(c1, 'write.totals_after_delete', totals, [], 'totals');
  await q(c2, 'write.conn2_after_delete', listing);
  await q(c2, 'write.conn2_by_id_after_delete', byId, [1], 'by_id');
  await ck.check('after_delete', 3);

  // S11 clean up
  await q(c1, 'cleanup', `DROP TABLE ${T}, ${B}`);
}

async function main() {
  const opts = {
    host: cfg.host, port: cfg.port, user: cfg.user, database: cfg.database,
    application_name: 'clients-node-pg', connectionTimeoutMillis: 10000,
  };
  const c1 = new Client(opts);
  const c2 = new Client(opts);
  await c1.connect();
  await c2.connect();
  try {
    await session(c1, c2);
  } finally {
    await c1.end();
    await c2.end();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write('session.js: ' + (e && e.stack ? e.stack : e) + '\n');
  process.stderr.write('transcript so far: ' + JSON.stringify(out).slice(-2000) + '\n');
  process.exit(1);
});
