-- Supervisors and admins, their sessions, and the integrations' named tokens.

-- create_person --
INSERT INTO people (name, role, password_hash) VALUES ($1, $2, $3)
RETURNING id, name, role, created_at, removed_at

-- people --
SELECT id, name, role, created_at, removed_at FROM people
 WHERE removed_at IS NULL OR $1
 ORDER BY id

-- person --
SELECT id, name, role, created_at, removed_at FROM people WHERE id = $1

-- person_id_by_name --
SELECT id FROM people WHERE name = $1 AND removed_at IS NULL

-- person_for_sign_in --
SELECT id, name, role, password_hash FROM people WHERE name = $1 AND removed_at IS NULL

-- set_password_hash --
-- A new password ends every session of the old one (a reset after a leak locks the
-- leaker out at once).
WITH changed AS (
    UPDATE people SET password_hash = $2 WHERE id = $1 AND removed_at IS NULL RETURNING id
), ended AS (
    UPDATE credentials c SET revoked_at = now()
      FROM changed WHERE c.person_id = changed.id AND c.kind = 'session'
       AND c.revoked_at IS NULL
)
SELECT id FROM changed

-- set_role --
UPDATE people SET role = $2 WHERE id = $1 AND removed_at IS NULL RETURNING id

-- remove_person --
-- Removed, not deleted: what they did keeps their name. Their sessions end with them.
WITH gone AS (
    UPDATE people SET removed_at = now() WHERE id = $1 AND removed_at IS NULL RETURNING id
)
UPDATE credentials c SET revoked_at = now()
  FROM gone WHERE c.person_id = gone.id AND c.revoked_at IS NULL

-- create_session --
INSERT INTO credentials (token_sha256, kind, person_id, expires_at)
VALUES ($1, 'session', $2, now() + make_interval(secs => $3))
RETURNING id, expires_at

-- create_integration --
INSERT INTO credentials (token_sha256, kind, label, role, expires_at)
VALUES ($1, 'integration', $2, $3, now() + make_interval(secs => $4))
RETURNING id, label, role, created_at, expires_at, revoked_at

-- integrations --
SELECT id, label, role, created_at, expires_at, revoked_at FROM credentials
 WHERE kind = 'integration' ORDER BY id

-- revoke_integration --
UPDATE credentials SET revoked_at = now()
 WHERE id = $1 AND kind = 'integration' AND revoked_at IS NULL
RETURNING id

-- revoke_credential --
UPDATE credentials SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id

-- principal_for_token --
-- A live credential and what it stands for; a person's role is read as it is now.
SELECT c.id AS credential_id, c.kind, c.label, c.role AS token_role,
       p.id AS person_id, p.name AS person_name, p.role AS person_role
  FROM credentials c
  LEFT JOIN people p ON p.id = c.person_id AND p.removed_at IS NULL
 WHERE c.token_sha256 = $1 AND c.revoked_at IS NULL AND c.expires_at > now()
