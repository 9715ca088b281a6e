-- rocketd's own statement for `GET /product?filter[category]=c7&sort=-price&per_page=25` on the
-- large-tables products (the index (category, price DESC) declared), for pgbench: what
-- `build_list_page` renders with the wire JSON (`engine/read/wire_sql.py`), as captured with
-- log_statement=all (docs/indexes-and-large-tables.md, "Why the list stays below 0.8"). Not run
-- by the scenario, which compares against `large_tables_list.sql`; run it by hand:
--   pgbench -n -M prepared -c 16 -j 2 -T 10 -D category=c7 -f bench/sql/large_tables_list_rocketd.sql <dsn>
-- rocketd binds the filter value twice, then the limit and the offset. The two to_char formats
-- are written E'...\x3A...' because pgbench would take `:MI` and `:SS` for variables; they are
-- the same constants ('YYYY-MM-DD"T"HH24:MI:SS"Z"' and '...SS.US"Z"').
\set limit 25
\set offset 0
SELECT CASE WHEN "_p"."id" IS NULL THEN NULL ELSE convert_to(row_to_json(_r)::text, 'UTF8') END, _c._total FROM (SELECT count(*) AS _total FROM "products" WHERE "category" = :category) AS _c LEFT JOIN LATERAL (SELECT "id", "category", "price", "name", "created_at" FROM "products" WHERE "category" = :category ORDER BY "price" DESC, "id" LIMIT :limit OFFSET :offset) AS _p ON TRUE, LATERAL (SELECT "_p"."id" AS "id", "_p"."category" AS "category", "_p"."price"::text AS "price", "_p"."name" AS "name", to_char(("_p"."created_at" AT TIME ZONE 'UTC'), CASE WHEN date_trunc('second', ("_p"."created_at" AT TIME ZONE 'UTC')) = ("_p"."created_at" AT TIME ZONE 'UTC') THEN E'YYYY-MM-DD"T"HH24\x3AMI\x3ASS"Z"' ELSE E'YYYY-MM-DD"T"HH24\x3AMI\x3ASS.US"Z"' END) AS "created_at") AS _r ORDER BY "_p"."price" DESC, "_p"."id";
