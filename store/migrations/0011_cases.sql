-- Enforcement cases (案件) opened from tasks, their stages and documents, and the credit register
-- (信用记录) the decisions write into. The stage machine lives in `offsite_store::cases`, the risk
-- class rule in `offsite_store::credit`; the CHECKs and foreign keys here keep impossible rows out
-- (a stage reached without its predecessor, a fine without an amount, a decision half written).

CREATE SEQUENCE case_no_seq;

CREATE TABLE cases (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'AJ', the Shanghai date of filing, a six-digit sequence.
    case_no       text NOT NULL CONSTRAINT cases_case_no_key UNIQUE CHECK (case_no ~ '^AJ[0-9]{14}$'),
    -- A task opens at most one case.
    task_id       bigint NOT NULL CONSTRAINT cases_task_key UNIQUE REFERENCES tasks (id),
    -- Copied from the task when the case is filed: the party, the item, the handling department.
    object_id     text NOT NULL REFERENCES objects (id),
    item          text,
    department_id bigint NOT NULL REFERENCES departments (id),
    stage         text NOT NULL CHECK (stage IN ('filed', 'investigating', 'decided', 'executing', 'closed')),
    opened_at     timestamptz NOT NULL,
    opened_by     text NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- The decision (处罚决定), written once when the case reaches 'decided'.
    decided_at    timestamptz,
    legal_basis   text CHECK (length(btrim(legal_basis)) BETWEEN 1 AND 2000),
    penalty       text CHECK (penalty IN ('warning', 'fine', 'confiscation', 'suspension', 'revocation', 'none')),
    -- In fen (分): exact, no floating point. Positive for a fine, zero for every other penalty.
    amount_fen    bigint CHECK (amount_fen BETWEEN 0 AND 100000000000000),
    -- Published on the public disclosure list (行政处罚信息公示).
    disclose      boolean,
    closed_at     timestamptz,
    -- Decision columns are all set from 'decided' on and all empty before.
    CHECK ((decided_at IS NULL) = (stage IN ('filed', 'investigating'))),
    CHECK ((decided_at IS NULL) = (legal_basis IS NULL)),
    CHECK ((decided_at IS NULL) = (penalty IS NULL)),
    CHECK ((decided_at IS NULL) = (amount_fen IS NULL)),
    CHECK ((decided_at IS NULL) = (disclose IS NULL)),
    CHECK (penalty IS NULL OR (penalty = 'fine') = (amount_fen > 0)),
    CHECK ((closed_at IS NULL) = (stage <> 'closed')),
    CHECK (decided_at IS NULL OR decided_at >= opened_at)
);
CREATE INDEX cases_department_idx ON cases (department_id, id DESC);
CREATE INDEX cases_object_idx ON cases (object_id, id DESC);
CREATE INDEX cases_stage_idx ON cases (stage, id DESC);
CREATE INDEX cases_disclosed_idx ON cases (decided_at DESC) WHERE disclose;

-- Each stage a case reached: when, by whom, with what note. A stage names its predecessor, and the
-- foreign key on (case_id, previous) makes reaching a stage without the one before impossible.
CREATE TABLE case_stages (
    case_id    bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    stage      text NOT NULL CHECK (stage IN ('filed', 'investigating', 'decided', 'executing', 'closed')),
    previous   text,
    reached_at timestamptz NOT NULL,
    handler    text NOT NULL CHECK (length(handler) BETWEEN 1 AND 200),
    note       text NOT NULL DEFAULT '' CHECK (length(note) <= 5000),
    PRIMARY KEY (case_id, stage),
    FOREIGN KEY (case_id, previous) REFERENCES case_stages (case_id, stage),
    -- IS NOT DISTINCT FROM: a NULL `previous` must not slip through as "unknown".
    CHECK (previous IS NOT DISTINCT FROM CASE stage
        WHEN 'investigating' THEN 'filed'
        WHEN 'decided' THEN 'investigating'
        WHEN 'executing' THEN 'decided'
        WHEN 'closed' THEN 'executing'
    END)
);
-- A case stands at a stage it has reached (checked at commit: the case and its first stage are
-- written in one transaction).
ALTER TABLE cases ADD CONSTRAINT cases_stage_reached_fk FOREIGN KEY (id, stage)
    REFERENCES case_stages (case_id, stage) DEFERRABLE INITIALLY DEFERRED;

-- Documents of a stage (立案审批表, 询问笔录, 处罚决定书, ...); the bytes are in the file store.
CREATE TABLE case_documents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id      bigint NOT NULL,
    stage        text NOT NULL,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    sha256       text NOT NULL REFERENCES files (sha256),
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL,
    -- Only a stage the case has reached can hold documents.
    FOREIGN KEY (case_id, stage) REFERENCES case_stages (case_id, stage) ON DELETE CASCADE
);
CREATE INDEX case_documents_case_idx ON case_documents (case_id, id);

-- The credit register: marks against a regulated object. Cases write them now (one per decision
-- with a penalty); other sources will come. A record counts towards the object's risk class until
-- it expires.
CREATE TABLE credit_records (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_id   text NOT NULL REFERENCES objects (id),
    source      text NOT NULL CHECK (source IN ('case')),
    case_id     bigint CONSTRAINT credit_records_case_key UNIQUE REFERENCES cases (id),
    severity    text NOT NULL CHECK (severity IN ('minor', 'general', 'serious', 'severe')),
    -- Points deducted from the object's 100 while the record is in force.
    deduction   integer NOT NULL CHECK (deduction BETWEEN 0 AND 100),
    note        text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    recorded_at timestamptz NOT NULL,
    recorded_by text NOT NULL,
    expires_at  timestamptz NOT NULL,
    CHECK (expires_at > recorded_at),
    CHECK ((source = 'case') = (case_id IS NOT NULL))
);
CREATE INDEX credit_records_object_idx ON credit_records (object_id, expires_at);
