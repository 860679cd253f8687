-- Portal replicas keep no state of their own (issue 11).

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

-- Complaint attachments' bytes go to the file store like every other upload (an S3-compatible
-- bucket when portal replicas run on several machines): new rows keep only the digest, rows filed
-- before keep their bytes here. (`CHECK (size = length(data))` holds for NULL.)
ALTER TABLE complaint_attachments ALTER COLUMN data DROP NOT NULL;
-- Retention asks whether a snapshot's bytes are also a complaint attachment's.
CREATE INDEX complaint_attachments_sha256_idx ON complaint_attachments (sha256);
