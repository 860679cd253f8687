-- Complaints (投诉举报) filed by the public, mappable to Open311 GeoReport v2: a service code, a
-- description, a location, status open/closed with notes.
--
-- The complainant's phone and ID numbers are never stored in clear: `phone_enc` and `id_number_enc`
-- hold AES-256-GCM ciphertexts made by the portal (version byte, random 96-bit nonce, ciphertext and
-- tag), and `phone_masked` / `id_number_masked` the display forms (`138****5678`,
-- `330102********1234`) that every role but the monitoring center sees.

CREATE TABLE complaints (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Given to the complainant: 'TS', the date, 10 random characters; the only public handle.
    tracking_no      text NOT NULL CONSTRAINT complaints_tracking_no_key UNIQUE
                     CHECK (tracking_no ~ '^TS[0-9]{8}[0-9A-Z]{10}$'),
    -- Open311 service_code (see `offsite_store::complaints::SERVICES`).
    service_code     text NOT NULL CHECK (service_code ~ '^[a-z0-9-]{1,64}$'),
    description      text NOT NULL CHECK (length(btrim(description)) BETWEEN 1 AND 2000),
    address          text CHECK (length(address) <= 500),
    lon              double precision CHECK (lon BETWEEN -180 AND 180),
    lat              double precision CHECK (lat BETWEEN -90 AND 90),
    -- The regulated object complained about, when known (a QR code on the site, or set later); it
    -- decides which department sees the complaint. No foreign key: objects may be removed.
    object_id        text CHECK (length(object_id) <= 64),
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    -- [{at, note, public, by}], oldest first; only `public` notes reach the complainant.
    status_notes     jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(status_notes) = 'array'),
    contact_name     text CHECK (length(contact_name) <= 50),
    phone_enc        bytea,
    phone_masked     text CHECK (length(phone_masked) <= 32),
    id_number_enc    bytea,
    id_number_masked text CHECK (length(id_number_masked) <= 32),
    submitter_ip     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz,
    closed_by        text,
    close_reason     text CHECK (length(close_reason) <= 1000),
    CHECK ((lon IS NULL) = (lat IS NULL)),
    CHECK ((phone_enc IS NULL) = (phone_masked IS NULL)),
    CHECK ((id_number_enc IS NULL) = (id_number_masked IS NULL)),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX complaints_status_idx ON complaints (status, id);
CREATE INDEX complaints_object_idx ON complaints (object_id);
-- Per-IP submission limit.
CREATE INDEX complaints_submitter_idx ON complaints (submitter_ip, created_at);

-- Files sent with a complaint (JPEG, PNG or PDF, recognised by their content).
CREATE TABLE complaint_attachments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    complaint_id  bigint NOT NULL REFERENCES complaints (id) ON DELETE CASCADE,
    filename      text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type  text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'application/pdf')),
    size          bigint NOT NULL CHECK (size >= 0),
    sha256        bytea NOT NULL CHECK (length(sha256) = 32),
    data          bytea NOT NULL,
    CHECK (size = length(data))
);
CREATE INDEX complaint_attachments_complaint_idx ON complaint_attachments (complaint_id, id);

-- Rate limiting of the public endpoints, per client address, shared by every portal replica: one row
-- per counted request, pruned as it ages out of its window.
CREATE TABLE public_rate_hits (
    bucket  text NOT NULL,
    ip      text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX public_rate_hits_idx ON public_rate_hits (bucket, ip, at);
CREATE INDEX public_rate_hits_at_idx ON public_rate_hits (at);
