-- Complaint-form CAPTCHAs, shared by every portal replica (no sticky sessions): the answer is kept
-- only as a SHA-256 digest over the challenge id and the answer, expires after a few minutes and is
-- used up by the first check, right or wrong, whichever replica makes it (DELETE ... RETURNING).
-- Expired rows are pruned as new CAPTCHAs are issued.
CREATE TABLE captcha_challenges (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    answer_sha256 bytea NOT NULL CHECK (octet_length(answer_sha256) = 32),
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX captcha_challenges_expires ON captcha_challenges (expires_at);
