-- pgbench baseline for data_api list: what a straightforward implementation sends for
-- `GET /order?filter[status]=paid&sort=-created_at&per_page=25`: the page query and a separate
-- COUNT(*) for meta.total, two statements. `status` is a bind parameter (-D status=paid), as
-- rocketd sends it; the order ends with the primary key, as rocketd's does (stable pages).
select id, number, status, total, created_at from orders
 where status = :status order by created_at desc, id limit 25 offset 0;
select count(*) from orders where status = :status;
