//! Demo registers: Hangzhou with two districts, two departments, ten construction sites and two
//! catalog items. Seeding again adds what is missing and changes nothing else.

use anyhow::Result;

use super::{CatalogFields, CreditCode};
use crate::Store;

/// What [`Store::seed_demo_registers`] added (zero everywhere the second time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeedReport {
    pub regions: u64,
    pub departments: u64,
    pub objects: u64,
    pub catalog_items: u64,
}

/// (code, name, parent, level)
const REGIONS: [(&str, &str, Option<&str>, &str); 4] = [
    ("330000", "浙江省", None, "province"),
    ("330100", "杭州市", Some("330000"), "city"),
    ("330102", "上城区", Some("330100"), "county"),
    ("330106", "西湖区", Some("330100"), "county"),
];

/// (code, name, region covered)
pub(crate) const DEPARTMENTS: [(&str, &str, &str); 2] =
    [("housing-construction", "住建局", "330102"), ("ecology", "生态环境局", "330106")];

/// The organization code check character (GB 11714): weights 3,7,9,10,5,8,4,2; 10 is `X`, 11 is `0`.
fn organization_check(first8: &str) -> char {
    let sum: u32 = first8
        .chars()
        .map(|c| c.to_digit(36).expect("alphanumeric"))
        .zip([3, 7, 9, 10, 5, 8, 4, 2])
        .map(|(v, w)| v * w)
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10).expect("a digit"),
    }
}

/// A valid unified social credit code for demo entity `serial` (0..=9999) registered in `region`
/// (a six-digit division code), with series letters `series` (two characters).
pub fn demo_credit_code(region: &str, series: &str, serial: usize) -> CreditCode {
    let org = format!("MA{series}{serial:04}");
    CreditCode::complete(&format!("91{region}{org}{}", organization_check(&org))).expect("a valid demo code")
}

/// The demo site `n` (1..=10): its id, name, credit code, address, position, region and department.
pub(crate) fn demo_site(n: usize) -> (String, String, CreditCode, String, (f64, f64), &'static str, &'static str) {
    let (department, _, region) = DEPARTMENTS[(n + 1) % 2];
    let district = if region == "330102" { "上城区" } else { "西湖区" };
    let org = format!("MA2H{n:04}");
    let code =
        CreditCode::complete(&format!("91{region}{org}{}", organization_check(&org))).expect("a valid demo code");
    let (lon, lat) = if region == "330102" { (120.169, 30.242) } else { (120.130, 30.259) };
    let offset = n as f64 * 0.003;
    (
        format!("demo-site-{n:02}"),
        format!("{district}示范建设工地{n:02}号"),
        code,
        format!("浙江省杭州市{district}示范路{n}号"),
        (((lon + offset) * 1e6_f64).round() / 1e6, ((lat + offset / 2.0) * 1e6_f64).round() / 1e6),
        region,
        department,
    )
}

fn demo_catalog() -> [(&'static str, CatalogFields); 2] {
    let item = |main: &str, sub: &str, basis: &str, measures: &str| CatalogFields {
        department: "生态环境局".into(),
        main_item: main.into(),
        sub_item: Some(sub.into()),
        method: "非现场监管".into(),
        measures: Some(measures.into()),
        object_type: Some("construction-site".into()),
        legal_basis: Some(basis.into()),
        process: Some("在线监测预警 -> 研判派单 -> 部门核查处置 -> 反馈审核 -> 办结".into()),
        result: Some("责令改正；依法处罚；结果公示".into()),
        level: Some("市级".into()),
    };
    [
        (
            "demo-dust",
            item(
                "对建设工地扬尘污染防治的监督检查",
                "施工扬尘在线监测超标",
                "《中华人民共和国大气污染防治法》第六十九条",
                "PM10 在线监测，超过限值预警并派单核查",
            ),
        ),
        (
            "demo-noise",
            item(
                "对建筑施工噪声污染防治的监督检查",
                "施工场界噪声超标",
                "《中华人民共和国噪声污染防治法》；GB 12523-2011",
                "场界噪声在线监测，昼间 70 dB(A)、夜间 55 dB(A) 超限预警",
            ),
        ),
    ]
}

impl Store {
    /// Seeds the demo registers: 浙江省 330000 > 杭州市 330100 > 上城区 330102 and 西湖区 330106; the
    /// departments 住建局 (`housing-construction`, covering 330102) and 生态环境局 (`ecology`,
    /// covering 330106); the construction sites `demo-site-01`..`demo-site-10` (odd ones in 上城区
    /// under 住建局, even ones in 西湖区 under 生态环境局, each with a valid credit code); and two
    /// published catalog items. Idempotent: what exists is left as it is.
    pub async fn seed_demo_registers(&self) -> Result<SeedReport> {
        let mut report = SeedReport::default();
        let mut tx = self.pool.begin().await?;
        for (code, name, parent, level) in REGIONS {
            report.regions += sqlx::query(
                "INSERT INTO regions (code, name, parent_code, level) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(code)
            .bind(name)
            .bind(parent)
            .bind(level)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        for (code, name, region) in DEPARTMENTS {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO departments (code, name) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(code)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = inserted {
                report.departments += 1;
                sqlx::query("INSERT INTO department_regions (department_id, region_code) VALUES ($1, $2)")
                    .bind(id)
                    .bind(region)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for n in 1..=10 {
            let (id, name, credit_code, address, (lon, lat), region, department) = demo_site(n);
            report.objects += sqlx::query(
                "INSERT INTO objects (id, name, credit_code, type, address, lon, lat, region_code, department_id) \
                 SELECT $1, $2, $3, 'construction-site', $4, $5, $6, $7, (SELECT id FROM departments WHERE code = $8) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(credit_code)
            .bind(address)
            .bind(lon)
            .bind(lat)
            .bind(region)
            .bind(department)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        for (code, fields) in demo_catalog() {
            report.catalog_items += sqlx::query(
                "INSERT INTO catalog_items (code, version, status, department, main_item, sub_item, method, \
                 measures, object_type, legal_basis, process, result, level, created_by, published_at, published_by) \
                 VALUES ($1, 1, 'published', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'seed', now(), 'seed') \
                 ON CONFLICT DO NOTHING",
            )
            .bind(code)
            .bind(&fields.department)
            .bind(&fields.main_item)
            .bind(&fields.sub_item)
            .bind(&fields.method)
            .bind(&fields.measures)
            .bind(&fields.object_type)
            .bind(&fields.legal_basis)
            .bind(&fields.process)
            .bind(&fields.result)
            .bind(&fields.level)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_check_matches_the_published_example() {
        // 91350100M000100Y43: organization code M000100Y4.
        assert_eq!(organization_check("M000100Y"), '4');
    }

    #[test]
    fn demo_sites_alternate() {
        let one = demo_site(1);
        let two = demo_site(2);
        assert_eq!((one.0.as_str(), one.5, one.6), ("demo-site-01", "330102", "housing-construction"));
        assert_eq!((two.0.as_str(), two.5, two.6), ("demo-site-02", "330106", "ecology"));
        assert_eq!(one.2.division_code(), "330102");
    }
}
