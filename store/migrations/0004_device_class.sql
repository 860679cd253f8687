-- A device's class (kind of monitor, e.g. `dust-monitor`), so one rule can cover every device of a kind.
ALTER TABLE devices ADD COLUMN class text CHECK (class ~ '^[A-Za-z0-9_.-]{1,64}$');
CREATE INDEX devices_class_idx ON devices (class);
