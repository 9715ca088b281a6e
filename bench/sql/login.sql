-- pgbench baseline for the login scenario: the SQL one app login runs (rocketd/auth/accounts.py),
-- against the app database, without bcrypt and JWT signing. Every row inserted here carries the
-- run's family id (-D family=<uuid>) so the harness can delete exactly these rows afterwards.
\set token1 random(1, 9223372036854775807)
\set token2 random(1, 9223372036854775807)
select id as user_id, password_hash, roles, active from _users where email = 'admin@localhost' \gset
insert into _refresh_tokens (user_id, token_hash, family_id, expires_at)
  values (:user_id, md5(:token1::text) || md5(:token2::text), :family, now() + interval '7 days');
