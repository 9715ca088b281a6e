-- pgbench baseline for the health scenario: the cheapest possible round trip.
select 1;
