//! The metric catalog knows HJ 212-2017 field names: any code + value suffix a logger sends gets a
//! name and unit when first seen; other keys stay bare.

use anyhow::Result;
use offsite_store::testing::TestDb;

#[tokio::test]
async fn every_suffix_of_a_known_code_is_named_with_its_unit() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    for (key, zh, en, unit) in [
        (
            "a34004-Rtd",
            "细颗粒物 PM2.5 实时值",
            "PM2.5, real-time",
            Some("μg/m³"),
        ),
        (
            "a34004-Avg",
            "细颗粒物 PM2.5 平均值",
            "PM2.5, average",
            Some("μg/m³"),
        ),
        (
            "a34004-Min",
            "细颗粒物 PM2.5 最小值",
            "PM2.5, minimum",
            Some("μg/m³"),
        ),
        (
            "a34004-Max",
            "细颗粒物 PM2.5 最大值",
            "PM2.5, maximum",
            Some("μg/m³"),
        ),
        (
            "a21026-ZsRtd",
            "二氧化硫 折算实时值",
            "Sulphur dioxide (SO2), real-time, converted",
            Some("mg/m³"),
        ),
        (
            "a21026-ZsAvg",
            "二氧化硫 折算平均值",
            "Sulphur dioxide (SO2), average, converted",
            Some("mg/m³"),
        ),
        // A cumulative value is an emitted mass, not a concentration.
        (
            "w01018-Cou",
            "化学需氧量 累计值",
            "Chemical oxygen demand (COD), total",
            Some("kg"),
        ),
        (
            "w00000-Cou",
            "污水流量 累计值",
            "Wastewater flow, total",
            Some("m³"),
        ),
        ("w01001-Rtd", "pH 值 实时值", "pH, real-time", None),
        (
            "LA-Data",
            "A 计权声级 监测值",
            "A-weighted sound level, value",
            Some("dB(A)"),
        ),
        (
            "SB1-RS",
            "设备 1 运行状态",
            "Equipment 1 running state",
            None,
        ),
        (
            "SB12-RS",
            "设备 12 运行状态",
            "Equipment 12 running state",
            None,
        ),
    ] {
        let m = s.ensure_metric(key).await?;
        assert_eq!(
            (
                m.name_zh.as_deref(),
                m.name_en.as_deref(),
                m.unit.as_deref()
            ),
            (Some(zh), Some(en), unit),
            "{key}"
        );
        // Seen again: the same entry.
        assert_eq!(s.ensure_metric(key).await?.id, m.id);
    }
    Ok(())
}

#[tokio::test]
async fn ranges_follow_the_code_and_unknown_keys_stay_bare() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let ph = s.ensure_metric("w01001-Avg").await?;
    assert!(ph.in_range(7.0) && !ph.in_range(14.5) && !ph.in_range(-1.0));
    // A total has no upper bound, whatever the concentration's range.
    let total = s.ensure_metric("a21026-Cou").await?;
    assert_eq!((total.valid_min, total.valid_max), (Some(0.0), None));
    // Equipment states are 0..=5.
    let sb = s.ensure_metric("SB3-RS").await?;
    assert!(sb.in_range(5.0) && !sb.in_range(6.0));
    for key in [
        "x99999-Rtd",
        "a34004-Flag",
        "a34004",
        "SB-RS",
        "my.metric",
        "a34004-rtd",
    ] {
        let m = s.ensure_metric(key).await?;
        assert_eq!(
            (m.name_zh, m.name_en, m.unit, m.valid_min, m.valid_max),
            (None, None, None, None, None),
            "{key}"
        );
    }
    Ok(())
}
