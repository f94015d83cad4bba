-- What one database holds, for restore rehearsals: its permanent user
-- tables, their exact row count (count(*) of each, summed: exact, unlike
-- pg_class.reltuples or n_live_tup) and pg_database_size. Unlogged and
-- temporary tables are left out: a restore brings them back empty.
-- Identifiers come from the catalog and are quoted by format('%I').
SELECT count(*)::bigint AS tables,
       coalesce(sum((xpath('/row/c/text()',
           query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
                        false, true, '')))[1]::text::bigint), 0)::bigint AS rows,
       pg_database_size(current_database())::bigint AS size
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp%'
