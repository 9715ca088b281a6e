-- Context for data_api nested create (not the baseline of the ratio): the same transaction with
-- the 5 children in one multi-row INSERT, i.e. what batching the children would save in SQL.
\set r random(1, 9223372036854775807)
begin;
insert into orders (number, status, total, created_at)
  values ('P-' || :r, 'draft', 12.50, now())
  returning id, number, status, total, created_at \gset
insert into order_lines (order_id, description, qty)
  values (:id, 'line 1', 1), (:id, 'line 2', 2), (:id, 'line 3', 3), (:id, 'line 4', 4),
         (:id, 'line 5', 5);
commit;
