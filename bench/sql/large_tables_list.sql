-- pgbench baseline for the large-tables list: what a straightforward implementation sends for
-- `GET /product?filter[category]=c7&sort=-price&per_page=25` on 1,000,000 products with an index
-- on (category, price DESC): the page query and a separate COUNT(*) for meta.total. `category` is
-- a bind parameter (-D category=c7); the order ends with the primary key, as rocketd's does.
select id, category, price, name, created_at from products
 where category = :category order by price desc, id limit 25 offset 0;
select count(*) from products where category = :category;
