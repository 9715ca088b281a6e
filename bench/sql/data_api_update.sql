-- pgbench baseline for data_api update: one UPDATE by primary key of a random seeded order,
-- returning the record (what the API answers with).
\set n random(1, 10000)
update orders set status = 'sent' where id = md5('O-' || :n)::uuid
  returning id, number, status, total, created_at;
