-- pgbench baseline for data_api create: one INSERT returning the record (what the API answers
-- with). Numbers are 'P-<random>' so the harness can delete exactly these rows afterwards.
\set r random(1, 9223372036854775807)
insert into orders (number, status, total, created_at)
  values ('P-' || :r, 'draft', 12.50, now())
  returning id, number, status, total, created_at;
