-- People and machines that use the portal: local accounts, their roles, sessions and API tokens.
-- Passwords are argon2id hashes (PHC strings); session and API tokens are stored as SHA-256 digests.
CREATE TABLE users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username            text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.-]{2,64}$'),
    display_name        text NOT NULL DEFAULT '',
    password_hash       text NOT NULL,
    -- The department the user works for (handlers, leaders); regions they may see besides it.
    department_id       bigint,
    region_codes        text[] NOT NULL DEFAULT '{}',
    disabled            boolean NOT NULL DEFAULT false,
    must_change_password boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_roles (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    text NOT NULL CHECK (role IN ('system_admin', 'security_admin', 'audit_admin', 'monitor', 'handler',
                                          'leader', 'reviewer', 'resupervision')),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE sessions (
    token_sha256 bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL DEFAULT now(),
    ip           text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_sha256 bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used    timestamptz,
    revoked_at   timestamptz
);

-- Failed logins, for throttling across portal replicas.
CREATE TABLE login_failures (
    username text NOT NULL,
    ip       text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_user_idx ON login_failures (username, at);
CREATE INDEX login_failures_ip_idx ON login_failures (ip, at);
