-- HJ 212 loggers send real-time data (CN 2011) every 30 s to a few minutes; one that falls silent
-- for 15 minutes has lost power, its line or its instruments. Out of the box, every logger (device
-- class `hj212`, which registration gives) is watched for that; operators may edit or disable it.
-- `*-Rtd` matches every real-time value, so minute/hourly/daily series (sent far less often) do not
-- count as missing.
INSERT INTO rules (name, scope, level, condition, item, enabled)
VALUES ('数采仪实时数据中断 (>15 分钟) / HJ 212 logger silent for 15 min',
        '{"class": "hj212", "metric": "*-Rtd"}', 3,
        '{"kind": "data_gap", "max_gap_s": 900}', NULL, true);
