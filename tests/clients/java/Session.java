// The PostgreSQL JDBC driver (pgjdbc, Debian's libpostgresql-jdbc-java) running pgstash's
// scripted driver session (tests/clients/README.md).
//
//   java -cp BUILD:/usr/share/java/postgresql.jar Session HOST PORT USER DB TABLE CKPT_URL VARIANT
//
// VARIANT: "default" (extended protocol; prepareThreshold 5, so the reused PreparedStatements
// become server-side named statements S_n with binary transfer from their 5th execution) or
// "simple" (preferQueryMode=simple: parameters interpolated by the driver).
// Prints the transcript as JSON on stdout: [step, value] pairs with what the driver returned
// (getObject() classes and values, getString(), metadata, update counts, SQLSTATEs).

import java.io.InputStream;
import java.math.BigDecimal;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.postgresql.PGStatement;
import org.postgresql.core.BaseConnection;
import org.postgresql.util.PGobject;
import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public class Session {
    static final List<Object> out = new ArrayList<>();
    static String ckptUrl;
    static String T, B;
    static boolean simpleMode;

    // ---------------------------------------------------------------- recording
    static void rec(String step, Object value) {
        out.add(Arrays.asList(step, value));
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x & 0xff));
        return sb.toString();
    }

    static Object norm(Object v) throws SQLException {
        if (v == null) return null;
        String cls = v.getClass().getName();
        if (v instanceof byte[]) return Arrays.asList(cls, hex((byte[]) v));
        if (v instanceof Array) {
            Array a = (Array) v;
            Object[] items = (Object[]) a.getArray();
            List<Object> n = new ArrayList<>();
            for (Object x : items) n.add(norm(x));
            return Arrays.asList(cls, a.getBaseTypeName(), n);
        }
        if (v instanceof PGobject) {
            PGobject o = (PGobject) v;
            return Arrays.asList(cls, o.getType(), o.getValue());
        }
        return Arrays.asList(cls, v.toString());
    }

    static List<Object> describe(ResultSetMetaData md) throws SQLException {
        List<Object> cols = new ArrayList<>();
        for (int i = 1; i <= md.getColumnCount(); i++) {
            cols.add(Arrays.asList(md.getColumnLabel(i), md.getColumnType(i),
                    md.getColumnTypeName(i), md.getPrecision(i), md.getScale(i),
                    md.getColumnClassName(i)));
        }
        return cols;
    }

    static Map<String, Object> rows(ResultSet rs) throws SQLException {
        Map<String, Object> m = new LinkedHashMap<>();
        ResultSetMetaData md = rs.getMetaData();
        m.put("desc", describe(md));
        List<Object> rows = new ArrayList<>();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= md.getColumnCount(); i++) {
                Object o = rs.getObject(i);
                row.add(Arrays.asList(norm(o), rs.getString(i), rs.wasNull()));
            }
            rows.add(row);
        }
        m.put("rows", rows);
        return m;
    }

    static Map<String, Object> error(SQLException e) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("error", e.getSQLState());
        m.put("class", e.getClass().getName());
        m.put("message", e.getMessage());
        if (e instanceof PSQLException && ((PSQLException) e).getServerErrorMessage() != null) {
            ServerErrorMessage s = ((PSQLException) e).getServerErrorMessage();
            m.put("primary", s.getMessage());
            m.put("detail", s.getDetail());
            m.put("constraint", s.getConstraint());
            m.put("position", s.getPosition());
            m.put("severity", s.getSeverity());
        }
        return m;
    }

    /** Runs an already bound PreparedStatement (or a Statement with sql) and describes it. */
    static Map<String, Object> run(Statement st, String sql) {
        try {
            boolean hasRs = sql == null ? ((PreparedStatement) st).execute() : st.execute(sql);
            Map<String, Object> m;
            if (hasRs) {
                try (ResultSet rs = st.getResultSet()) {
                    m = rows(rs);
                }
            } else {
                m = new LinkedHashMap<>();
            }
            m.put("updateCount", st.getUpdateCount());
            m.put("tx", txState(st));
            if (st instanceof PGStatement && sql == null) {
                // whether pgjdbc uses a server-side named statement for it by now
                m.put("serverPrepared", ((PGStatement) st).isUseServerPrepare());
            }
            return m;
        } catch (SQLException e) {
            Map<String, Object> m = error(e);
            m.put("tx", txState(st));
            return m;
        }
    }

    /** The transaction state pgjdbc keeps from the last ReadyForQuery. */
    static String txState(Statement st) {
        try {
            return ((BaseConnection) st.getConnection()).getTransactionState().name();
        } catch (SQLException e) {
            return "? " + e.getMessage();
        }
    }

    static void q(Connection c, String step, String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            rec(step, run(st, sql));
        }
    }

    static void qp(PreparedStatement ps, String step, Object... params) throws SQLException {
        bind(ps, params);
        rec(step, run(ps, null));
    }

    static void qp(Connection c, String step, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            qp(ps, step, params);
        }
    }

    /** A typed NULL parameter. */
    static final class Null {
        final int type;

        Null(int type) {
            this.type = type;
        }
    }

    static void bind(PreparedStatement ps, Object... params) throws SQLException {
        for (int i = 0; i < params.length; i++) {
            Object p = params[i];
            int k = i + 1;
            if (p instanceof Null) ps.setNull(k, ((Null) p).type);
            else if (p instanceof Integer) ps.setInt(k, (Integer) p);
            else if (p instanceof Long) ps.setLong(k, (Long) p);
            else if (p instanceof String) ps.setString(k, (String) p);
            else if (p instanceof BigDecimal) ps.setBigDecimal(k, (BigDecimal) p);
            else if (p instanceof byte[] && simpleMode)
                // pgjdbc 42.5 in preferQueryMode=simple cannot inline setBytes() (it leaves
                // the '?' in the statement): send bytea's hex text form instead
                ps.setString(k, "\\x" + hex((byte[]) p));
            else if (p instanceof byte[]) ps.setBytes(k, (byte[]) p);
            else if (p instanceof Array) ps.setArray(k, (Array) p);
            else ps.setObject(k, p);   // OffsetDateTime, UUID, PGobject
        }
    }

    static PGobject jsonb(String text) throws SQLException {
        PGobject o = new PGobject();
        o.setType("jsonb");
        o.setValue(text);
        return o;
    }

    // ---------------------------------------------------------------- checkpoints
    static void ckpt(String path) throws Exception {
        rec("ck", path.replaceAll("\\?.*", "").substring(1));
        HttpURLConnection h = (HttpURLConnection) new URL(ckptUrl + path).openConnection();
        h.setConnectTimeout(10000);
        h.setReadTimeout(60000);
        int code = h.getResponseCode();
        try (InputStream in = code == 200 ? h.getInputStream() : h.getErrorStream()) {
            if (in != null) in.readAllBytes();
        }
        if (code != 200) throw new RuntimeException("checkpoint " + path + ": HTTP " + code);
    }

    static void ready(String... tables) throws Exception {
        ckpt("/ready?tables=" + String.join(",", tables));
    }

    static void mark() throws Exception {
        ckpt("/mark");
    }

    static void check(String tag, int reads) throws Exception {
        ckpt("/check?tag=" + tag + "&reads=" + reads);
    }

    // ---------------------------------------------------------------- the big results
    static void big(PreparedStatement ps, String step, int param) throws Exception {
        ps.setInt(1, param);
        try (ResultSet rs = ps.executeQuery()) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            long n = 0, sumId = 0;
            BigDecimal sumAmount = BigDecimal.ZERO;
            List<Object> first = null, last = null;
            while (rs.next()) {
                int id = rs.getInt(1);
                String label = rs.getString(2);
                BigDecimal amount = rs.getBigDecimal(3);
                md.update((id + "|" + label + "|" + amount.toPlainString() + "\n")
                        .getBytes(StandardCharsets.UTF_8));
                n++;
                sumId += id;
                sumAmount = sumAmount.add(amount);
                last = Arrays.asList(norm(rs.getObject(1)), norm(rs.getObject(2)),
                        norm(rs.getObject(3)));
                if (first == null) first = last;
            }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("desc", describe(rs.getMetaData()));
            m.put("count", n);
            m.put("sum_id", sumId);
            m.put("sum_amount", sumAmount.toPlainString());
            m.put("checksum", hex(md.digest()));
            m.put("first", first);
            m.put("last", last);
            rec(step, m);
        } catch (SQLException e) {
            rec(step, error(e));
        }
    }

    // ---------------------------------------------------------------- the session
    static final String COLS = "id, big, name, amount, ts, data, uid, doc, nums, tags";

    static Object[] row1(Connection c) throws SQLException {
        return new Object[] {1, 9007199254740993L, "alpha", new BigDecimal("12345.6789"),
            OffsetDateTime.of(2024, 2, 29, 13, 14, 15, 123456000, ZoneOffset.ofHours(2)),
            new byte[] {0x00, 0x01, (byte) 0xfe, (byte) 0xff, 0x27, 0x5c},
            UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            jsonb("{\"k\": \"v\", \"n\": [1, 2.5, {\"x\": null}], \"u\": \"\u00fc\"}"),
            c.createArrayOf("int4", new Integer[] {1, 2, 3}),
            c.createArrayOf("text", new String[] {"a", "b c", "\"q\"", "{x}"})};
    }

    static Object[] row2(Connection c) throws SQLException {
        return new Object[] {2, -5L, "beta \u00fc", new BigDecimal("-0.5"),
            OffsetDateTime.of(1999, 12, 31, 23, 59, 59, 0, ZoneOffset.UTC), new byte[0],
            UUID.fromString("00000000-0000-0000-0000-000000000000"), jsonb("[]"),
            c.createArrayOf("int4", new Integer[] {}),
            c.createArrayOf("text", new String[] {null, "x"})};
    }

    static Object[] nullsFrom(int id, String name) {
        return new Object[] {id, new Null(Types.BIGINT),
            name == null ? new Null(Types.VARCHAR) : name, new Null(Types.NUMERIC),
            new Null(Types.TIMESTAMP_WITH_TIMEZONE), new Null(Types.BINARY),
            new Null(Types.OTHER), new Null(Types.OTHER), new Null(Types.ARRAY),
            new Null(Types.ARRAY)};
    }

    static Object[] row10(Connection c) throws SQLException {
        return new Object[] {10, 10L, "committed", new BigDecimal("10.01"),
            OffsetDateTime.of(1999, 12, 31, 23, 59, 59, 0, ZoneOffset.UTC), new byte[] {0x10},
            UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), jsonb("{\"c\": 10}"),
            c.createArrayOf("int4", new Integer[] {10}),
            c.createArrayOf("text", new String[] {"ten"})};
    }

    static void session(Connection c1, Connection c2) throws Exception {
        // S0 setup
        q(c1, "setup.drop", "DROP TABLE IF EXISTS " + T + ", " + B);
        q(c1, "setup.create", "CREATE TABLE " + T + " (id int PRIMARY KEY, big bigint, "
                + "name text, amount numeric(14,4), ts timestamptz, data bytea, uid uuid, "
                + "doc jsonb, nums int[], tags text[])");
        q(c1, "setup.create_big", "CREATE TABLE " + B + " (id int PRIMARY KEY, label text "
                + "NOT NULL, amount numeric(12,2) NOT NULL)");
        q(c1, "setup.fill_big", "INSERT INTO " + B + " SELECT g, 'row-' || g, g * 1.25 "
                + "FROM generate_series(1, 50000) g");
        q(c1, "setup.settings", "SELECT current_setting('TimeZone') AS tz, "
                + "current_setting('DateStyle') AS ds, "
                + "current_setting('extra_float_digits') AS efd");
        ready(T, B);
        // pgjdbc looks up type names (uuid, jsonb, arrays) in pg_type on first use per
        // connection: let both connections do that here, not inside a checkpoint window
        q(c1, "setup.types.1", "SELECT " + COLS + " FROM " + T + " WHERE false");
        q(c2, "setup.types.2", "SELECT " + COLS + " FROM " + T + " WHERE false");

        // S1 parameters of every type, and NULL parameters (one PreparedStatement, reused)
        String insertSql = "INSERT INTO " + T + " (" + COLS + ") VALUES (?, ?, ?, ?, ?, ?, ?, "
                + "?, ?, ?) RETURNING id, name, ts";
        try (PreparedStatement ins = c1.prepareStatement(insertSql)) {
            qp(ins, "insert.1", row1(c1));
            qp(ins, "insert.2", row2(c1));
            qp(ins, "insert.3", nullsFrom(3, null));
        }

        // S2 every row back (NULL results included)
        qp(c1, "select.all", "SELECT " + COLS + " FROM " + T + " ORDER BY id");

        // S3 parameters echoed with explicit types, with values and all NULL
        String echo = "SELECT ?::int AS i, ?::bigint AS b, ?::text AS t, ?::numeric AS n, "
                + "?::timestamptz AS ts, ?::bytea AS by, ?::uuid AS u, ?::jsonb AS j, "
                + "?::int[] AS ia, ?::text[] AS ta";
        qp(c1, "echo.values", echo, row1(c1));
        Object[] nulls = nullsFrom(0, null);
        nulls[0] = new Null(Types.INTEGER);
        qp(c1, "echo.nulls", echo, nulls);

        // S4 typed filters
        Object[][] filters = {
            {"filter.uuid", "uid = ?", UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")},
            {"filter.jsonb", "doc @> ?", jsonb("{\"k\": \"v\"}")},
            {"filter.textarr", "tags && ?", c1.createArrayOf("text", new String[] {"x", "a"})},
            {"filter.intarr", "nums @> ?", c1.createArrayOf("int4", new Integer[] {2})},
            {"filter.ts", "ts > ?", OffsetDateTime.of(1999, 12, 31, 23, 59, 59, 0, ZoneOffset.UTC)},
            {"filter.bytea", "data = ?", new byte[] {0x00, 0x01, (byte) 0xfe, (byte) 0xff, 0x27, 0x5c}},
            {"filter.numeric", "amount = ?", new BigDecimal("-0.5000")},
            {"filter.bigint", "big = ?", 9007199254740993L},
            {"filter.null", "name IS NOT DISTINCT FROM ?", new Null(Types.VARCHAR)},
            {"filter.text", "name = ?", "beta \u00fc"},
        };
        for (Object[] f : filters) {
            qp(c1, (String) f[0], "SELECT id FROM " + T + " WHERE " + f[1] + " ORDER BY id", f[2]);
        }

        // S5 the same parameterised read, past prepareThreshold (one PreparedStatement object)
        PreparedStatement byId = c1.prepareStatement("SELECT " + COLS + " FROM " + T
                + " WHERE id = ?");
        qp(byId, "repeat.prime.1", 1);
        qp(byId, "repeat.prime.3", 3);
        mark();
        List<Object> r1 = new ArrayList<>(), r3 = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            bind(byId, 1);
            r1.add(run(byId, null));
            bind(byId, 3);
            r3.add(run(byId, null));
        }
        check("repeat", 12);
        Map<String, Object> rr = new LinkedHashMap<>();
        // serverPrepared differs between executions (false, then true past the threshold)
        rr.put("1", r1);
        rr.put("3", r3);
        rec("repeat.results", rr);
        mark();
        for (int k : new int[] {1, 3, 1, 3}) qp(byId, "repeat_prepared." + k, k);
        check("repeat_prepared", 4);

        // S6 ROLLBACK: the cached read comes back unchanged
        PreparedStatement nameById = c1.prepareStatement("SELECT name FROM " + T + " WHERE id = ?");
        qp(nameById, "rollback.prime", 2);
        mark();
        qp(nameById, "rollback.cached", 2);
        check("cached_before_tx", 1);
        c1.setAutoCommit(false);
        qp(c1, "rollback.update", "UPDATE " + T + " SET name = ? WHERE id = ?", "changed", 2);
        mark();
        qp(nameById, "rollback.read_own_write", 2);
        check("in_tx_after_write", 1);
        c1.rollback();
        c1.setAutoCommit(true);
        mark();
        qp(nameById, "rollback.after", 2);
        check("after_rollback", 1);

        // S7 COMMIT: another connection sees the row afterwards
        String listing = "SELECT id, name FROM " + T + " ORDER BY id";
        q(c2, "commit.conn2.prime", listing);
        mark();
        q(c2, "commit.conn2.cached", listing);
        check("conn2_cached", 1);
        qp(nameById, "commit.prime", 1);
        c1.setAutoCommit(false);
        qp(c1, "commit.first_in_tx", "SELECT count(*) AS n FROM " + T);
        mark();
        qp(nameById, "commit.read_before_write", 1);
        check("in_tx_before_write", 1);
        try (PreparedStatement ins = c1.prepareStatement(insertSql)) {
            qp(ins, "commit.insert", row10(c1));
        }
        qp(c1, "commit.count_own_write", "SELECT count(*) FROM " + T);
        c1.commit();
        c1.setAutoCommit(true);
        mark();
        q(c2, "commit.after.conn2", listing);
        check("conn2_after_commit", 1);
        q(c1, "commit.after.conn1", listing);

        // S8 an error mid-transaction, ROLLBACK, and the connection goes on (and still hits)
        qp(byId, "error.prime", 1);
        c1.setAutoCommit(false);
        try (PreparedStatement ins = c1.prepareStatement(insertSql)) {
            qp(ins, "error.insert_ok", nullsFrom(20, "doomed"));
            qp(ins, "error.unique_violation", nullsFrom(1, "dup"));
        }
        qp(c1, "error.in_failed_tx", "SELECT 1 AS one");
        c1.rollback();
        qp(c1, "error.after_rollback", "SELECT count(*) FROM " + T + " WHERE id = ?", 20);
        c1.rollback();
        qp(c1, "error.division_by_zero", "SELECT id / ? AS r FROM " + T + " WHERE id = 1", 0);
        c1.rollback();
        c1.setAutoCommit(true);
        mark();
        qp(byId, "error.continue", 1);
        check("after_error", 1);

        // S9 a 50k-row result (twice), and a 5k-row one that is cached
        try (PreparedStatement ps = c1.prepareStatement("SELECT id, label, amount FROM " + B
                + " WHERE id > ? ORDER BY id")) {
            big(ps, "big50k.1", 0);
            big(ps, "big50k.2", 0);
        }
        try (PreparedStatement ps = c1.prepareStatement("SELECT id, label, amount FROM " + B
                + " WHERE id <= ? ORDER BY id")) {
            big(ps, "bigish.1", 5000);
            mark();
            big(ps, "bigish.2", 5000);
            check("bigish", 1);
        }

        // S10 writes followed by reads that must see them
        PreparedStatement totals = c1.prepareStatement("SELECT count(*) AS n, sum(amount) AS s "
                + "FROM " + T);
        qp(totals, "write.prime");
        mark();
        qp(totals, "write.cached");
        check("primed", 1);
        qp(c1, "write.update", "UPDATE " + T + " SET amount = amount + ?, name = ? WHERE id = ?",
                new BigDecimal("1.5"), "alpha2", 1);
        mark();
        qp(totals, "write.totals_after_update");
        qp(byId, "write.by_id_after_update", 1);
        check("after_update", 2);
        mark();
        qp(totals, "write.totals_again");
        qp(byId, "write.by_id_again", 1);
        check("after_update_repeat", 2);
        PreparedStatement byId2 = c2.prepareStatement("SELECT " + COLS + " FROM " + T
                + " WHERE id = ?");
        mark();
        qp(byId2, "write.conn2_by_id", 1);
        check("conn2_by_id", 1);
        // a JDBC batch: several Bind/Execute before one Sync
        try (PreparedStatement ins = c1.prepareStatement("INSERT INTO " + T
                + " (id, name, amount) VALUES (?, ?, ?)")) {
            for (int id : new int[] {30, 31, 32}) {
                bind(ins, id, "batch" + id, new BigDecimal(id + ".5"));
                ins.addBatch();
            }
            List<Object> counts = new ArrayList<>();
            for (int n : ins.executeBatch()) counts.add(n);
            rec("write.batch_insert", counts);
        }
        qp(c1, "write.delete", "DELETE FROM " + T + " WHERE id = ?", 3);
        mark();
        qp(totals, "write.totals_after_delete");
        q(c2, "write.conn2_after_delete", listing);
        qp(byId2, "write.conn2_by_id_after_delete", 1);
        check("after_delete", 3);
        byId2.close();
        totals.close();
        byId.close();
        nameById.close();

        // S11 clean up
        q(c1, "cleanup", "DROP TABLE " + T + ", " + B);
    }

    public static void main(String[] args) throws Exception {
        String host = args[0], port = args[1], user = args[2], db = args[3];
        T = args[4];
        B = args[4] + "_big";
        ckptUrl = args[5];
        String variant = args[6];
        String url = "jdbc:postgresql://" + host + ":" + port + "/" + db
                + "?ApplicationName=clients-jdbc-" + variant + "&connectTimeout=10";
        simpleMode = variant.equals("simple");
        if (simpleMode) url += "&preferQueryMode=simple";
        if (variant.equals("textonly")) url += "&binaryTransfer=false";
        try (Connection c1 = DriverManager.getConnection(url, user, "");
                Connection c2 = DriverManager.getConnection(url, user, "")) {
            session(c1, c2);
        } catch (Exception e) {
            System.err.println("transcript so far: " + Json.write(out));
            throw e;
        }
        System.out.println(Json.write(out));
    }

    /** Just enough JSON: null, booleans, numbers, strings, lists, maps. */
    static final class Json {
        static String write(Object v) {
            StringBuilder sb = new StringBuilder();
            write(sb, v);
            return sb.toString();
        }

        static void write(StringBuilder sb, Object v) {
            if (v == null) {
                sb.append("null");
            } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long) {
                sb.append(v);
            } else if (v instanceof Number) {
                write(sb, v.toString());
            } else if (v instanceof Map) {
                sb.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                    if (!first) sb.append(',');
                    first = false;
                    write(sb, String.valueOf(e.getKey()));
                    sb.append(':');
                    write(sb, e.getValue());
                }
                sb.append('}');
            } else if (v instanceof List) {
                sb.append('[');
                boolean first = true;
                for (Object x : (List<?>) v) {
                    if (!first) sb.append(',');
                    first = false;
                    write(sb, x);
                }
                sb.append(']');
            } else {
                String s = v.toString();
                sb.append('"');
                for (int i = 0; i < s.length(); i++) {
                    char ch = s.charAt(i);
                    if (ch == '"' || ch == '\\') sb.append('\\').append(ch);
                    else if (ch < 0x20 || ch > 0x7e) sb.append(String.format("\\u%04x", (int) ch));
                    else sb.append(ch);
                }
                sb.append('"');
            }
        }
    }
}
