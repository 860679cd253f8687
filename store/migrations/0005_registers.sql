-- The registers: administrative regions, departments and the regions they cover, regulated objects
-- (监管对象), device metadata, and the regulatory item catalog (监管事项目录清单) with its versions.

-- Administrative divisions by their 6-digit code (GB/T 2260), as a tree: province -> city -> county.
CREATE TABLE regions (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9]{6}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    parent_code text CONSTRAINT regions_parent_fk REFERENCES regions (code),
    level       text NOT NULL CHECK (level IN ('province', 'city', 'county')),
    CHECK (parent_code IS NULL OR parent_code <> code),
    CHECK (level <> 'province' OR parent_code IS NULL)
);
CREATE INDEX regions_parent_idx ON regions (parent_code);

-- Functional departments (职能部门), themselves a tree (a bureau and its branches).
CREATE TABLE departments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL CONSTRAINT departments_code_key UNIQUE CHECK (code ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id   bigint CONSTRAINT departments_parent_fk REFERENCES departments (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX departments_parent_idx ON departments (parent_id);

-- The regions a department covers (a region covers its sub-regions).
CREATE TABLE department_regions (
    department_id bigint NOT NULL REFERENCES departments (id) ON DELETE CASCADE,
    region_code   text NOT NULL CONSTRAINT department_regions_region_fk REFERENCES regions (code),
    PRIMARY KEY (department_id, region_code)
);
CREATE INDEX department_regions_region_idx ON department_regions (region_code);

-- Regulated objects: sites, enterprises, service halls. `devices.object_id` refers to `objects.id`
-- without a foreign key (devices may be provisioned before their object is registered).
CREATE TABLE objects (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name          text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    -- Unified social credit code (GB 32100-2015); the store checks the check character.
    credit_code   text CONSTRAINT objects_credit_code_key UNIQUE
                  CHECK (credit_code ~ '^[0-9ABCDEFGHJKLMNPQRTUWXY]{18}$'),
    type          text CHECK (length(type) BETWEEN 1 AND 64),
    address       text CHECK (length(address) <= 500),
    lon           double precision CHECK (lon BETWEEN -180 AND 180),
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    region_code   text CONSTRAINT objects_region_fk REFERENCES regions (code),
    -- The responsible department.
    department_id bigint CONSTRAINT objects_department_fk REFERENCES departments (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((lon IS NULL) = (lat IS NULL))
);
CREATE INDEX objects_region_idx ON objects (region_code);
CREATE INDEX objects_department_idx ON objects (department_id);
CREATE INDEX objects_type_idx ON objects (type);

CREATE INDEX devices_object_idx ON devices (object_id);

-- Where a device is and what it is.
ALTER TABLE devices
    ADD COLUMN location     text CHECK (length(location) <= 500),
    ADD COLUMN lon          double precision CHECK (lon BETWEEN -180 AND 180),
    ADD COLUMN lat          double precision CHECK (lat BETWEEN -90 AND 90),
    ADD COLUMN installed_at timestamptz,
    ADD COLUMN model        text CHECK (length(model) <= 200),
    -- Metric keys the device is expected to report.
    ADD COLUMN metric_list  text[],
    ADD CONSTRAINT devices_lon_lat_check CHECK ((lon IS NULL) = (lat IS NULL));

-- The regulatory item catalog: every edit is a version; at most one draft per code, and published
-- versions never change. The current item of a code is its latest published version.
CREATE TABLE catalog_items (
    code          text NOT NULL CHECK (code ~ '^[A-Za-z0-9_.-]{1,64}$'),
    version       integer NOT NULL CHECK (version >= 1),
    status        text NOT NULL CHECK (status IN ('draft', 'published')),
    -- The ten fields of the catalog list.
    department    text NOT NULL CHECK (length(department) BETWEEN 1 AND 200),  -- 实施部门
    main_item     text NOT NULL CHECK (length(main_item) BETWEEN 1 AND 500),   -- 主项
    sub_item      text,                                                         -- 子项
    method        text NOT NULL CHECK (length(method) BETWEEN 1 AND 200),      -- 监管方式
    measures      text,                                                         -- 监管措施
    object_type   text,                                                         -- 监管对象类型
    legal_basis   text,                                                         -- 设定依据
    process       text,                                                         -- 监管流程
    result        text,                                                         -- 监管结果
    level         text,                                                         -- 事项层级
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text,
    published_at  timestamptz,
    published_by  text,
    PRIMARY KEY (code, version),
    CHECK ((status = 'published') = (published_at IS NOT NULL))
);
CREATE UNIQUE INDEX catalog_items_one_draft_idx ON catalog_items (code) WHERE status = 'draft';
CREATE INDEX catalog_items_published_idx ON catalog_items (code, version DESC) WHERE status = 'published';

CREATE FUNCTION catalog_items_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'published' THEN
        RAISE EXCEPTION 'catalog item % version % is published and cannot change', OLD.code, OLD.version
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER catalog_items_immutable BEFORE UPDATE OR DELETE ON catalog_items
    FOR EACH ROW EXECUTE FUNCTION catalog_items_immutable();
