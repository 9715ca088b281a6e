-- pgbench baseline for data_api get: one select by primary key of a random seeded order
-- (ids are md5('O-' || n)::uuid, see data_api_seed.sql).
\set n random(1, 10000)
select id, number, status, total, created_at from orders where id = md5('O-' || :n)::uuid;
