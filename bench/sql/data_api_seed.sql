-- Seed for the data_api set: 10,000 orders, written straight into the app database (much faster
-- than 10,000 HTTP creates). Run once, after rocketd created the `orders` table from the entity.
--
-- Row n (1..10000): id = md5('O-' || n)::uuid, number = 'O-' || n. The id is derived from n so
-- that pgbench, whose variables are integers only, can address a random row by primary key with
-- `\set n random(1, 10000)` and `WHERE id = md5('O-' || :n)::uuid`: no helper table, no extra
-- statement, and still a plain lookup on the primary-key index (md5 of a short string costs
-- well under a microsecond). The ids look like any other uuid to rocketd.
-- status cycles draft/sent/paid/void, so `status = 'paid'` matches 2,500 rows; created_at is one
-- minute apart per row, so the sort has no ties.
insert into orders (id, number, status, total, created_at)
select md5('O-' || n)::uuid,
       'O-' || n,
       (array['draft', 'sent', 'paid', 'void'])[1 + n % 4],
       round((n % 997) * 1.37, 2),
       now() - make_interval(mins => n)
  from generate_series(1, 10000) as n;
