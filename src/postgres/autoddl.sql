-- pgcd's DDL replication on native logical replication (install_autoddl in
-- sql.rs runs each statement below in order, after setting pgcd.node).
-- Idempotent: every object is created if missing or replaced.
--
-- On the node where DDL runs, an event trigger (as the user who ran it)
-- hands the query to pgcd.log_ddl, which logs it once per transaction into
-- pgcd.ddl_log with the role and search_path. The log replicates like any
-- table; on every other node a replica-only trigger replays the statement as
-- that role. Both sides also enter every published table into pgcd's
-- subscriptions at once, so rows written into a new table replicate from
-- the first one (no REFRESH PUBLICATION window).
-- statement
CREATE SCHEMA IF NOT EXISTS pgcd
-- statement
GRANT USAGE ON SCHEMA pgcd TO PUBLIC
-- statement
CREATE TABLE IF NOT EXISTS pgcd.ddl_log (node text NOT NULL, id bigint NOT NULL,
  xid bigint NOT NULL, at timestamptz NOT NULL DEFAULT now(),
  search_path text NOT NULL, statement text NOT NULL, role text, source text,
  PRIMARY KEY (node, id))
-- statement
ALTER TABLE pgcd.ddl_log ADD COLUMN IF NOT EXISTS role text
-- statement
ALTER TABLE pgcd.ddl_log ADD COLUMN IF NOT EXISTS source text
-- statement
CREATE SEQUENCE IF NOT EXISTS pgcd.ddl_log_id
-- statement
CREATE TABLE IF NOT EXISTS pgcd.ddl_failures (origin text NOT NULL, id bigint NOT NULL,
  statement text NOT NULL, error text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (origin, id))
-- statement
-- Enters every table of the publication into each pgcd subscription of this
-- database that lacks it, ready (what REFRESH PUBLICATION WITH (copy_data =
-- false) does, but inside the transaction that made the table: REFRESH
-- cannot run in a transaction block). The tables are the same on every node.
CREATE OR REPLACE FUNCTION pgcd.subscribe_new_tables() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgcd$
  INSERT INTO pg_subscription_rel (srsubid, srrelid, srsubstate, srsublsn)
  SELECT s.oid, c.oid, 'r', NULL
  FROM pg_subscription s
  CROSS JOIN pg_publication_tables t
  JOIN pg_namespace n ON n.nspname = t.schemaname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
  WHERE t.pubname = 'pgcd_all'
    AND s.subname LIKE 'pgcd\_sub\_%'
    AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND NOT EXISTS (SELECT 1 FROM pg_subscription_rel r
                    WHERE r.srsubid = s.oid AND r.srrelid = c.oid)
$pgcd$
-- statement
REVOKE ALL ON FUNCTION pgcd.subscribe_new_tables() FROM PUBLIC
-- statement
-- The first word of a statement, lower case, after blanks and comments.
CREATE OR REPLACE FUNCTION pgcd.leading_keyword(stmt text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $pgcd$
  SELECT lower(substring(regexp_replace(stmt, '^(\s|--[^\n]*(\n|$)|/\*.*?\*/)*', '') FROM '^[A-Za-z]+'))
$pgcd$
-- statement
-- The statements of a query string, split at top-level semicolons (outside
-- quotes, dollar quotes and comments), so that a query mixing DDL with DML
-- replays only its DDL: the rows it writes replicate as rows.
CREATE OR REPLACE FUNCTION pgcd.split_statements(q text) RETURNS SETOF text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $pgcd$
DECLARE
  ch text[] := regexp_split_to_array(q, '');
  n int := coalesce(array_length(ch, 1), 0);
  i int := 1;
  start int := 1;
  depth int;
  tag text;
  rest text;
  esc boolean;
  piece text;
BEGIN
  WHILE i <= n LOOP
    IF ch[i] = '''' THEN
      esc := i > 1 AND lower(ch[i - 1]) = 'e' AND (i = 2 OR ch[i - 2] !~ '[[:alnum:]_]');
      i := i + 1;
      WHILE i <= n LOOP
        IF esc AND ch[i] = '\' THEN
          i := i + 2;
        ELSIF ch[i] = '''' AND i < n AND ch[i + 1] = '''' THEN
          i := i + 2;
        ELSIF ch[i] = '''' THEN
          EXIT;
        ELSE
          i := i + 1;
        END IF;
      END LOOP;
    ELSIF ch[i] = '"' THEN
      i := i + 1;
      WHILE i <= n LOOP
        IF ch[i] = '"' AND i < n AND ch[i + 1] = '"' THEN
          i := i + 2;
        ELSIF ch[i] = '"' THEN
          EXIT;
        ELSE
          i := i + 1;
        END IF;
      END LOOP;
    ELSIF ch[i] = '-' AND i < n AND ch[i + 1] = '-' THEN
      WHILE i <= n AND ch[i] <> E'\n' LOOP
        i := i + 1;
      END LOOP;
    ELSIF ch[i] = '/' AND i < n AND ch[i + 1] = '*' THEN
      depth := 1;
      i := i + 2;
      WHILE i <= n AND depth > 0 LOOP
        IF ch[i] = '/' AND i < n AND ch[i + 1] = '*' THEN
          depth := depth + 1;
          i := i + 2;
        ELSIF ch[i] = '*' AND i < n AND ch[i + 1] = '/' THEN
          depth := depth - 1;
          i := i + 2;
        ELSE
          i := i + 1;
        END IF;
      END LOOP;
      CONTINUE;
    ELSIF ch[i] = '$' AND (i = 1 OR ch[i - 1] !~ '[[:alnum:]_$]') THEN
      rest := array_to_string(ch[i:least(n, i + 64)], '');
      tag := substring(rest FROM '^(\$[A-Za-z_][A-Za-z0-9_]*\$|\$\$)');
      IF tag IS NOT NULL THEN
        depth := strpos(array_to_string(ch[i + length(tag):n], ''), tag);
        IF depth = 0 THEN
          i := n;
        ELSE
          i := i + length(tag) + depth + length(tag) - 2;
        END IF;
      END IF;
    ELSIF ch[i] = ';' THEN
      piece := btrim(array_to_string(ch[start:i - 1], ''), E' \t\r\n');
      IF pgcd.leading_keyword(piece) IS NOT NULL THEN
        RETURN NEXT piece;
      END IF;
      start := i + 1;
    END IF;
    i := i + 1;
  END LOOP;
  piece := btrim(array_to_string(ch[start:n], ''), E' \t\r\n');
  IF pgcd.leading_keyword(piece) IS NOT NULL THEN
    RETURN NEXT piece;
  END IF;
END
$pgcd$
-- statement
-- Logs the DDL statements of the session's query once per transaction, in
-- order. Runs as its owner (the log is not writable by users); the role
-- must be one the session may be, and the statements are the session's own
-- query, so no one can log DDL they could not run. A statement that is not
-- DDL itself (DO, a function call) fired the trigger from inside: it is
-- logged whole. CREATE TABLE ... AS is replayed WITH NO DATA (its rows
-- replicate as rows).
CREATE OR REPLACE FUNCTION pgcd.log_ddl(who text, path text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgcd$
DECLARE
  q text := current_query();
  digest text := md5(current_query());
  stmt text;
  word text;
  logged int := 0;
BEGIN
  IF NOT pg_has_role(session_user, who, 'MEMBER') THEN
    RAISE EXCEPTION 'pgcd: % may not log DDL as %', session_user, who;
  END IF;
  PERFORM pgcd.subscribe_new_tables();
  -- A query of several statements fires once per DDL statement: log it once.
  IF EXISTS (SELECT 1 FROM pgcd.ddl_log WHERE xid = txid_current() AND source = digest) THEN
    RETURN;
  END IF;
  FOR stmt IN SELECT pgcd.split_statements(q) LOOP
    word := pgcd.leading_keyword(stmt);
    IF word NOT IN ('create', 'alter', 'drop', 'comment', 'grant', 'revoke', 'security',
                    'reindex', 'refresh', 'import') THEN
      CONTINUE;
    END IF;
    IF stmt ~* '^\s*create\s+((global|local)\s+)?((temp|temporary|unlogged)\s+)?table\s+(if\s+not\s+exists\s+)?[^\s(]+\s+(with\s*\([^)]*\)\s+)?as\s'
       AND stmt !~* 'with\s+(no\s+)?data\s*$' THEN
      stmt := stmt || ' WITH NO DATA';
    END IF;
    INSERT INTO pgcd.ddl_log (node, id, xid, search_path, statement, role, source)
    VALUES (current_setting('pgcd.node'), nextval('pgcd.ddl_log_id'), txid_current(), path, stmt, who, digest);
    logged := logged + 1;
  END LOOP;
  IF logged = 0 THEN
    INSERT INTO pgcd.ddl_log (node, id, xid, search_path, statement, role, source)
    VALUES (current_setting('pgcd.node'), nextval('pgcd.ddl_log_id'), txid_current(), path, q, who, digest);
  END IF;
END
$pgcd$
-- statement
CREATE OR REPLACE FUNCTION pgcd.capture_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $pgcd$
BEGIN
  IF pg_catalog.current_setting('session_replication_role') = 'replica'
     OR pg_catalog.current_setting('application_name') = 'pgcd' THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() c
             WHERE c.command_tag LIKE '%PUBLICATION' OR c.command_tag LIKE '%SUBSCRIPTION'
                OR c.schema_name = 'pgcd') THEN
    RETURN;
  END IF;
  PERFORM pgcd.log_ddl(current_user, pg_catalog.current_setting('search_path'));
END
$pgcd$
-- statement
-- Replays a logged statement as the role that ran it. A statement that
-- fails here is recorded and skipped (its effects rolled back), so the link
-- keeps running and pgcd shows the failure instead of the apply worker
-- retrying it forever.
CREATE OR REPLACE FUNCTION pgcd.apply_ddl() RETURNS trigger LANGUAGE plpgsql AS $pgcd$
BEGIN
  PERFORM set_config('search_path', NEW.search_path, true);
  BEGIN
    IF NEW.role IS NOT NULL THEN
      EXECUTE format('SET LOCAL ROLE %I', NEW.role);
    END IF;
    EXECUTE NEW.statement;
    RESET ROLE;
    PERFORM pgcd.subscribe_new_tables();
  EXCEPTION WHEN OTHERS THEN
    INSERT INTO pgcd.ddl_failures (origin, id, statement, error)
    VALUES (NEW.node, NEW.id, NEW.statement, SQLSTATE || ': ' || SQLERRM)
    ON CONFLICT DO NOTHING;
  END;
  RETURN NEW;
END
$pgcd$
-- statement
DROP TRIGGER IF EXISTS apply_ddl ON pgcd.ddl_log
-- statement
CREATE TRIGGER apply_ddl BEFORE INSERT ON pgcd.ddl_log
FOR EACH ROW EXECUTE FUNCTION pgcd.apply_ddl()
-- statement
ALTER TABLE pgcd.ddl_log ENABLE REPLICA TRIGGER apply_ddl
-- statement
-- For a node joining the mesh, whose agent connects here as the
-- replication role: pause and resume pgcd's subscriptions, and read how far
-- each has received and applied. Nothing else.
CREATE OR REPLACE FUNCTION pgcd.subscription_pause(sub text, enable boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgcd$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = sub AND sub LIKE 'pgcd\_sub\_%') THEN
    RAISE EXCEPTION 'no pgcd subscription %', sub;
  END IF;
  IF enable THEN
    EXECUTE format('ALTER SUBSCRIPTION %I ENABLE', sub);
  ELSE
    EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', sub);
  END IF;
END
$pgcd$
-- statement
CREATE OR REPLACE FUNCTION pgcd.subscription_position(sub text, OUT received pg_lsn,
  OUT applied pg_lsn, OUT worker boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgcd$
  SELECT st.latest_end_lsn, pg_replication_origin_progress('pg_' || s.oid, true), st.pid IS NOT NULL
  FROM pg_subscription s
  LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
  WHERE s.subname = sub AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
$pgcd$
-- statement
REVOKE ALL ON FUNCTION pgcd.subscription_pause(text, boolean), pgcd.subscription_position(text) FROM PUBLIC
-- statement
DROP EVENT TRIGGER IF EXISTS pgcd_capture_ddl
-- statement
CREATE EVENT TRIGGER pgcd_capture_ddl ON ddl_command_end EXECUTE FUNCTION pgcd.capture_ddl()
