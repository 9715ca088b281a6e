-- pgbench baseline for data_api nested create: the parent and its 5 children in one
-- transaction, one INSERT per row (what rocketd sends too); the parent's RETURNING gives the
-- record for the answer and the id for the children.
\set r random(1, 9223372036854775807)
begin;
insert into orders (number, status, total, created_at)
  values ('P-' || :r, 'draft', 12.50, now())
  returning id, number, status, total, created_at \gset
insert into order_lines (order_id, description, qty) values (:id, 'line 1', 1);
insert into order_lines (order_id, description, qty) values (:id, 'line 2', 2);
insert into order_lines (order_id, description, qty) values (:id, 'line 3', 3);
insert into order_lines (order_id, description, qty) values (:id, 'line 4', 4);
insert into order_lines (order_id, description, qty) values (:id, 'line 5', 5);
commit;
