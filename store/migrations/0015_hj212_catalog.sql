-- HJ 212-2017 metric names: a logger's values arrive as `<code>-<suffix>` (a34004-Rtd, w01018-Cou,
-- LA-Data) and equipment states as `SB<n>-RS`. Rather than a row per code and suffix, the standard's
-- codes and suffixes are tables of their own and `hj212_metric_default(key)` composes a catalog
-- entry from them, so any combination a logger sends gets a name and unit when it is first seen.

-- Pollutant and parameter codes (HJ 212-2017 appendix B, HJ 524). `unit` is that of the
-- concentration or measured value; `total_unit` that of the cumulative `-Cou` value (an emitted
-- mass or a volume). Valid ranges only where physics bounds them; values outside are stored with
-- the OUT_OF_RANGE quality bit, never refused.
CREATE TABLE hj212_codes (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Za-z][A-Za-z0-9]{0,15}$'),
    name_zh     text NOT NULL,
    name_en     text NOT NULL,
    unit        text,
    total_unit  text,
    valid_min   double precision,
    valid_max   double precision
);

INSERT INTO hj212_codes (code, name_zh, name_en, unit, total_unit, valid_min, valid_max) VALUES
    -- Exhaust gas and ambient air.
    ('a00000', '废气流量',          'Exhaust gas flow',            'm³/s',  'm³', 0, NULL),
    ('a01001', '温度',              'Temperature',                 '℃',     NULL, -60, 100),
    ('a01002', '湿度',              'Relative humidity',           '%',     NULL, 0, 100),
    ('a01006', '气压',              'Atmospheric pressure',        'kPa',   NULL, 0, 200),
    ('a01007', '风速',              'Wind speed',                  'm/s',   NULL, 0, 75),
    ('a01008', '风向',              'Wind direction',              '°',     NULL, 0, 360),
    ('a01011', '烟气流速',          'Flue gas velocity',           'm/s',   NULL, 0, NULL),
    ('a01012', '烟气温度',          'Flue gas temperature',        '℃',     NULL, -60, 1500),
    ('a01013', '烟气压力',          'Flue gas pressure',           'kPa',   NULL, NULL, NULL),
    ('a01014', '烟气湿度',          'Flue gas moisture',           '%',     NULL, 0, 100),
    ('a05002', '甲烷',              'Methane (CH4)',               'mg/m³', 'kg', 0, NULL),
    ('a05024', '臭氧',              'Ozone (O3)',                  'μg/m³', NULL, 0, NULL),
    ('a19001', '氧气含量',          'Oxygen (O2)',                 '%',     NULL, 0, 100),
    ('a21001', '氨',                'Ammonia (NH3)',               'mg/m³', 'kg', 0, NULL),
    ('a21002', '氮氧化物',          'Nitrogen oxides (NOx)',       'mg/m³', 'kg', 0, NULL),
    ('a21003', '一氧化氮',          'Nitric oxide (NO)',           'mg/m³', 'kg', 0, NULL),
    ('a21004', '二氧化氮',          'Nitrogen dioxide (NO2)',      'mg/m³', 'kg', 0, NULL),
    ('a21005', '一氧化碳',          'Carbon monoxide (CO)',        'mg/m³', 'kg', 0, NULL),
    ('a21024', '氯化氢',            'Hydrogen chloride (HCl)',     'mg/m³', 'kg', 0, NULL),
    ('a21026', '二氧化硫',          'Sulphur dioxide (SO2)',       'mg/m³', 'kg', 0, NULL),
    ('a21028', '硫化氢',            'Hydrogen sulphide (H2S)',     'mg/m³', 'kg', 0, NULL),
    ('a24088', '非甲烷总烃',        'Non-methane hydrocarbons',    'mg/m³', 'kg', 0, NULL),
    ('a25002', '苯',                'Benzene',                     'mg/m³', 'kg', 0, NULL),
    ('a25003', '甲苯',              'Toluene',                     'mg/m³', 'kg', 0, NULL),
    ('a34001', '总悬浮颗粒物 TSP',  'Total suspended particulates (TSP)', 'μg/m³', NULL, 0, NULL),
    ('a34002', '可吸入颗粒物 PM10', 'PM10',                        'μg/m³', NULL, 0, NULL),
    ('a34004', '细颗粒物 PM2.5',    'PM2.5',                       'μg/m³', NULL, 0, NULL),
    ('a34013', '烟尘',              'Smoke dust',                  'mg/m³', 'kg', 0, NULL),
    -- Wastewater and surface water.
    ('w00000', '污水流量',          'Wastewater flow',             'L/s',   'm³', 0, NULL),
    ('w01001', 'pH 值',             'pH',                          NULL,    NULL, 0, 14),
    ('w01003', '浊度',              'Turbidity',                   'NTU',   NULL, 0, NULL),
    ('w01009', '溶解氧',            'Dissolved oxygen',            'mg/L',  NULL, 0, NULL),
    ('w01010', '水温',              'Water temperature',           '℃',     NULL, -5, 100),
    ('w01014', '电导率',            'Conductivity',                'μS/cm', NULL, 0, NULL),
    ('w01017', '五日生化需氧量',    'Biochemical oxygen demand (BOD5)', 'mg/L', 'kg', 0, NULL),
    ('w01018', '化学需氧量',        'Chemical oxygen demand (COD)', 'mg/L', 'kg', 0, NULL),
    ('w01019', '高锰酸盐指数',      'Permanganate index',          'mg/L',  'kg', 0, NULL),
    ('w20111', '总汞',              'Total mercury',               'mg/L',  'kg', 0, NULL),
    ('w20115', '总镉',              'Total cadmium',               'mg/L',  'kg', 0, NULL),
    ('w20116', '总铬',              'Total chromium',              'mg/L',  'kg', 0, NULL),
    ('w20117', '六价铬',            'Hexavalent chromium',         'mg/L',  'kg', 0, NULL),
    ('w20119', '总砷',              'Total arsenic',               'mg/L',  'kg', 0, NULL),
    ('w20120', '总铅',              'Total lead',                  'mg/L',  'kg', 0, NULL),
    ('w20121', '总镍',              'Total nickel',                'mg/L',  'kg', 0, NULL),
    ('w20122', '总铜',              'Total copper',                'mg/L',  'kg', 0, NULL),
    ('w20123', '总锌',              'Total zinc',                  'mg/L',  'kg', 0, NULL),
    ('w21001', '总氮',              'Total nitrogen',              'mg/L',  'kg', 0, NULL),
    ('w21003', '氨氮',              'Ammonia nitrogen',            'mg/L',  'kg', 0, NULL),
    ('w21011', '总磷',              'Total phosphorus',            'mg/L',  'kg', 0, NULL),
    ('w22001', '石油类',            'Petroleum oils',              'mg/L',  'kg', 0, NULL),
    -- Noise.
    ('LA',     'A 计权声级',        'A-weighted sound level',      'dB(A)', NULL, 20, 150),
    ('Leq',    '等效声级',          'Equivalent sound level',      'dB(A)', NULL, 20, 150),
    ('L10',    '累积百分声级 L10',  'Percentile level L10',        'dB(A)', NULL, 20, 150),
    ('L50',    '累积百分声级 L50',  'Percentile level L50',        'dB(A)', NULL, 20, 150),
    ('L90',    '累积百分声级 L90',  'Percentile level L90',        'dB(A)', NULL, 20, 150),
    ('Ld',     '昼间等效声级',      'Day-time equivalent level',   'dB(A)', NULL, 20, 150),
    ('Ln',     '夜间等效声级',      'Night-time equivalent level', 'dB(A)', NULL, 20, 150);

-- Field suffixes that carry a value (`-Flag`, `-EFlag`, `-SampleTime` do not: they qualify one).
-- `total`: the value is cumulative, so its unit is the code's total_unit and its range unbounded.
CREATE TABLE hj212_suffixes (
    suffix      text PRIMARY KEY CHECK (suffix ~ '^[A-Za-z]{1,16}$'),
    name_zh     text NOT NULL,
    name_en     text NOT NULL,
    total       boolean NOT NULL DEFAULT false
);

INSERT INTO hj212_suffixes (suffix, name_zh, name_en, total) VALUES
    ('Rtd',       '实时值',       'real-time',                false),
    ('Avg',       '平均值',       'average',                  false),
    ('Min',       '最小值',       'minimum',                  false),
    ('Max',       '最大值',       'maximum',                  false),
    ('Cou',       '累计值',       'total',                    true),
    ('ZsRtd',     '折算实时值',   'real-time, converted',     false),
    ('ZsAvg',     '折算平均值',   'average, converted',       false),
    ('ZsMin',     '折算最小值',   'minimum, converted',       false),
    ('ZsMax',     '折算最大值',   'maximum, converted',       false),
    ('Data',      '监测值',       'value',                    false),
    ('DayData',   '昼间值',       'day-time value',           false),
    ('NightData', '夜间值',       'night-time value',         false);

-- Equipment running states (`SB<n>-RS`): the value is one of these.
CREATE TABLE hj212_equipment_states (
    state       smallint PRIMARY KEY,
    name_zh     text NOT NULL,
    name_en     text NOT NULL
);

INSERT INTO hj212_equipment_states (state, name_zh, name_en) VALUES
    (0, '关机',   'off'),
    (1, '运行',   'running'),
    (2, '校准',   'calibrating'),
    (3, '维护',   'maintenance'),
    (4, '报警',   'alarm'),
    (5, '反吹',   'back-flush');

-- The catalog entry an HJ 212 metric key gets when first seen; no row for any other key.
CREATE FUNCTION hj212_metric_default(metric_key text)
RETURNS TABLE (name_zh text, name_en text, unit text, valid_min double precision, valid_max double precision)
LANGUAGE sql STABLE AS $$
    SELECT c.name_zh || ' ' || s.name_zh,
           c.name_en || ', ' || s.name_en,
           CASE WHEN s.total THEN c.total_unit ELSE c.unit END,
           CASE WHEN s.total THEN 0 ELSE c.valid_min END,
           CASE WHEN s.total THEN NULL ELSE c.valid_max END
    FROM hj212_codes c JOIN hj212_suffixes s
      ON metric_key = c.code || '-' || s.suffix
    UNION ALL
    SELECT '设备 ' || m[1] || ' 运行状态', 'Equipment ' || m[1] || ' running state', NULL::text, 0, 5
    FROM regexp_match(metric_key, '^SB([0-9]{1,8})-RS$') AS m
    WHERE m IS NOT NULL
    LIMIT 1
$$;

-- Keys already stored bare (seen before this migration) get their names now.
UPDATE metrics m SET name_zh = d.name_zh, name_en = d.name_en, unit = d.unit,
                     valid_min = d.valid_min, valid_max = d.valid_max
FROM metrics k CROSS JOIN LATERAL hj212_metric_default(k.key) d
WHERE k.id = m.id AND m.name_zh IS NULL AND m.name_en IS NULL AND m.unit IS NULL;
