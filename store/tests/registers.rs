//! The registers against a real PostgreSQL: regions, departments, objects with access scopes, CSV
//! import/export, the catalog's versions, the demo seed; and the unified social credit code.

use anyhow::Result;
use offsite_store::testing::TestDb;
use offsite_store::{
    AccessScope, CatalogFields, CatalogStatus, CreditCode, CreditCodeError, DeviceMetadata, FieldError, ImportOptions,
    NewDepartment, NewDevice, NewObject, ObjectFilter, Region, RegionLevel, Store,
};
use offsite_wire::DeviceId;

// Codes checked by hand against GB 32100-2015 (weights 1,3,9,27,19,26,16,17,20,29,25,13,8,24,10,30,28;
// check = 31 - sum mod 31). 914403001922038216: 9+3+36+108+0+78+0+0+20+261+50+26+0+72+80+60+28 = 831,
// 831 mod 31 = 25, 31 - 25 = 6. 91350100M000100Y43: sum 1640, mod 31 = 28, check 3.
const GOOD: [&str; 6] = [
    "91350100M000100Y43", // the standard's widely published example
    "914403001922038216", // published enterprise codes
    "9144030071526726XG",
    "91330100799655058B",
    "52330106MA2H000274", // civil affairs / non-enterprise unit (computed, checked independently)
    "N2330106MA2H00030X", // agriculture / village collective (computed, checked independently)
];

fn cc(s: &str) -> CreditCode {
    CreditCode::parse(s).unwrap()
}

#[test]
fn credit_codes_parse_or_say_what_is_wrong() {
    for g in GOOD {
        let c = CreditCode::parse(g).unwrap_or_else(|e| panic!("{g}: {e}"));
        assert_eq!(c.as_str(), g);
        assert_eq!(c.to_string().len(), 18);
    }
    let c = cc(" 91350100M000100Y43\t");
    assert_eq!(c.as_str(), "91350100M000100Y43", "surrounding whitespace is dropped");
    assert_eq!((c.registration_authority(), c.entity_type(), c.division_code()), ('9', '1', "350100"));
    assert_eq!(c.organization_code(), "M000100Y4");
    assert_eq!(c.authority_name(), ("工商", "market regulation"));
    assert_eq!(CreditCode::check_character("91350100M000100Y4"), Some('3'));
    assert_eq!(CreditCode::complete("91350100M000100Y4").unwrap(), c);

    use CreditCodeError::*;
    let cases: [(&str, CreditCodeError); 13] = [
        ("91350100M000100Y44", WrongCheck { expected: '3', found: '4' }),
        ("914403001922038217", WrongCheck { expected: '6', found: '7' }),
        ("91350100m000100Y43", Lowercase { position: 9, found: 'm' }),
        ("9144030071526726xg", Lowercase { position: 17, found: 'x' }),
        ("91350100I000100Y43", BadCharacter { position: 9, found: 'I' }),
        ("91350100M0001O0Y43", BadCharacter { position: 14, found: 'O' }),
        ("91350100M000100Z43", BadCharacter { position: 16, found: 'Z' }),
        ("91350100MS00100Y43", BadCharacter { position: 10, found: 'S' }),
        ("91350100M000100V43", BadCharacter { position: 16, found: 'V' }),
        ("91350100M000100Y4", WrongLength { len: 17 }),
        ("91350100M000100Y430", WrongLength { len: 19 }),
        ("B1350100M000100Y43", BadAuthority { found: 'B' }),
        ("94350100M000100Y43", BadEntityType { authority: '9', found: '4' }),
    ];
    for (s, want) in cases {
        assert_eq!(CreditCode::parse(s), Err(want), "{s}");
    }
    assert_eq!(CreditCode::parse(""), Err(WrongLength { len: 0 }));
    assert_eq!(CreditCode::parse("91A50100M000100Y43"), Err(BadDivision { position: 3, found: 'A' }));
    // Chinese characters count as characters, not bytes.
    assert_eq!(CreditCode::parse("统一社会信用代码"), Err(WrongLength { len: 8 }));

    let e = CreditCode::parse("91350100M000100Y44").unwrap_err();
    assert!(e.message_en().contains("expected '3'"), "{}", e.message_en());
    assert!(e.message_zh().contains("应为“3”"), "{}", e.message_zh());
    let e = CreditCode::parse("91350100M000100O43").unwrap_err();
    assert!(e.message_en().contains("position 16"), "{}", e.message_en());
    assert!(e.message_zh().contains("第16位"), "{}", e.message_zh());

    // Serde: a string, checked on the way in.
    assert_eq!(serde_json::to_string(&c).unwrap(), "\"91350100M000100Y43\"");
    let back: CreditCode = serde_json::from_str("\"91350100M000100Y43\"").unwrap();
    assert_eq!(back, c);
    let err = serde_json::from_str::<CreditCode>("\"91350100M000100Y44\"").unwrap_err();
    assert!(err.to_string().contains("expected '3'"), "{err}");
}

fn region(code: &str, name: &str, parent: Option<&str>, level: RegionLevel) -> Region {
    Region { code: code.into(), name: name.into(), parent_code: parent.map(Into::into), level }
}

/// 浙江省 > 杭州市 > 上城区, 西湖区; 住建局 covering 330102, 生态环境局 covering 330106.
async fn hangzhou(s: &Store) -> Result<(i64, i64)> {
    s.upsert_region(&region("330000", "浙江省", None, RegionLevel::Province)).await?;
    s.upsert_region(&region("330100", "杭州市", Some("330000"), RegionLevel::City)).await?;
    s.upsert_region(&region("330102", "上城区", Some("330100"), RegionLevel::County)).await?;
    s.upsert_region(&region("330106", "西湖区", Some("330100"), RegionLevel::County)).await?;
    let housing =
        s.insert_department(&NewDepartment { code: "housing".into(), name: "住建局".into(), parent_id: None }).await?;
    let ecology = s
        .insert_department(&NewDepartment { code: "ecology".into(), name: "生态环境局".into(), parent_id: None })
        .await?;
    assert!(s.set_department_regions(housing.id, &["330102".into()]).await?);
    assert!(s.set_department_regions(ecology.id, &["330106".into()]).await?);
    Ok((housing.id, ecology.id))
}

fn field_of(e: &anyhow::Error) -> String {
    e.downcast_ref::<FieldError>().unwrap_or_else(|| panic!("not a field error: {e:#}")).field.clone()
}

#[tokio::test]
async fn region_tree_and_department_coverage() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let (housing, ecology) = hangzhou(s).await?;

    let tree = s.region_tree().await?;
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].region.code, "330000");
    let city = &tree[0].children[0];
    assert_eq!((city.region.name.as_str(), city.region.level), ("杭州市", RegionLevel::City));
    let counties: Vec<&str> = city.children.iter().map(|c| c.region.name.as_str()).collect();
    assert_eq!(counties, ["上城区", "西湖区"]);
    let subtree: Vec<String> = s.region_subtree("330100").await?.into_iter().map(|r| r.code).collect();
    assert_eq!(subtree, ["330100", "330102", "330106"]);
    let path: Vec<String> = s.region_path("330106").await?.into_iter().map(|r| r.code).collect();
    assert_eq!(path, ["330106", "330100", "330000"]);
    assert_eq!(s.region_children(Some("330100")).await?.len(), 2);

    // Levels go down the tree; codes are 6 digits; parents exist.
    let e = s.upsert_region(&region("330108", "滨江区", Some("330102"), RegionLevel::County)).await.unwrap_err();
    assert_eq!(field_of(&e), "level");
    let e = s.upsert_region(&region("33010", "x", None, RegionLevel::City)).await.unwrap_err();
    assert_eq!(field_of(&e), "code");
    let e = s.upsert_region(&region("330108", "滨江区", Some("339999"), RegionLevel::County)).await.unwrap_err();
    assert_eq!(field_of(&e), "parent_code");
    let e = s.upsert_region(&region("330100", "杭州市", Some("330000"), RegionLevel::County)).await.unwrap_err();
    assert_eq!(field_of(&e), "level", "a city with counties under it cannot become a county");
    // Renaming keeps the tree.
    s.upsert_region(&region("330106", "西湖区（改）", Some("330100"), RegionLevel::County)).await?;
    assert_eq!(s.region("330106").await?.unwrap().name, "西湖区（改）");

    // Coverage: a department covering a county covers it; one covering the city covers every county.
    let covering = |code: &'static str| async move {
        Ok::<_, anyhow::Error>(s.departments_covering(code).await?.into_iter().map(|d| d.code).collect::<Vec<_>>())
    };
    assert_eq!(covering("330102").await?, ["housing"]);
    assert_eq!(covering("330106").await?, ["ecology"]);
    assert!(covering("330100").await?.is_empty());
    let city_office = s
        .insert_department(&NewDepartment { code: "city-office".into(), name: "市监管办".into(), parent_id: None })
        .await?;
    s.set_department_regions(city_office.id, &["330100".into()]).await?;
    assert_eq!(covering("330102").await?, ["city-office", "housing"]);
    assert_eq!(s.department(housing).await?.unwrap().region_codes, ["330102"]);
    let e = s.set_department_regions(ecology, &["339999".into()]).await.unwrap_err();
    assert_eq!(field_of(&e), "region_codes");
    assert_eq!(s.department(ecology).await?.unwrap().region_codes, ["330106"], "a refused change changes nothing");
    assert!(!s.set_department_regions(999_999, &[]).await?);

    // Hierarchy: sub-departments, no cycles, unique codes, deletes refused while in use.
    let branch = s
        .insert_department(&NewDepartment {
            code: "housing.xh".into(),
            name: "住建局西湖分局".into(),
            parent_id: Some(housing),
        })
        .await?;
    assert_eq!(s.department_subtree(housing).await?, [housing, branch.id]);
    let e = s
        .update_department(
            housing,
            &NewDepartment { code: "housing".into(), name: "住建局".into(), parent_id: Some(branch.id) },
        )
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "parent_id");
    let e = s
        .insert_department(&NewDepartment { code: "housing".into(), name: "again".into(), parent_id: None })
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "code");
    let renamed = s
        .update_department(
            ecology,
            &NewDepartment { code: "ecology".into(), name: "市生态环境局".into(), parent_id: None },
        )
        .await?
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.region_codes.len()), ("市生态环境局", 1));
    assert!(s.update_department(999_999, &renamed_input()).await?.is_none());
    assert!(s.delete_department(housing).await.is_err(), "it has a sub-department");
    assert!(s.delete_region("330102").await.is_err(), "a department covers it");
    assert!(s.delete_department(branch.id).await?);
    assert_eq!(s.departments().await?.len(), 3);
    let scope = s.department_access_scope(housing, true).await?;
    assert_eq!(scope, AccessScope { all: false, department_ids: vec![housing], region_codes: vec!["330102".into()] });
    Ok(())
}

fn renamed_input() -> NewDepartment {
    NewDepartment { code: "nobody".into(), name: "nobody".into(), parent_id: None }
}

fn object(id: &str, region: &str, department: i64, code: Option<&str>) -> NewObject {
    NewObject {
        id: id.into(),
        name: format!("工地 {id}"),
        credit_code: code.map(cc),
        object_type: Some("construction-site".into()),
        address: Some("杭州市".into()),
        lon: Some(120.15),
        lat: Some(30.25),
        region_code: Some(region.into()),
        department_id: Some(department),
    }
}

#[tokio::test]
async fn objects_crud_and_scopes() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let (housing, ecology) = hangzhou(s).await?;

    let a = s.insert_object(&object("site-a", "330102", housing, Some(GOOD[0]))).await?;
    assert_eq!(a.credit_code, Some(cc(GOOD[0])));
    assert_eq!((a.region_name.as_deref(), a.department_code.as_deref()), (Some("上城区"), Some("housing")));
    assert_eq!(a.device_count, 0);
    s.insert_object(&object("site-b", "330106", ecology, Some(GOOD[1]))).await?;
    s.insert_object(&object("site-c", "330102", housing, None)).await?;
    // In 上城区 but the responsibility of the ecology department.
    s.insert_object(&object("site-d", "330102", ecology, None)).await?;

    // Refusals name the field.
    let dup = s.insert_object(&object("site-a", "330102", housing, None)).await.unwrap_err();
    assert_eq!(field_of(&dup), "id");
    let taken = s.insert_object(&object("site-e", "330102", housing, Some(GOOD[0]))).await.unwrap_err();
    assert_eq!(field_of(&taken), "credit_code");
    let e = s.insert_object(&object("site-e", "339999", housing, None)).await.unwrap_err();
    assert_eq!(field_of(&e), "region_code");
    let e = s.insert_object(&object("site-e", "330102", 999_999, None)).await.unwrap_err();
    assert_eq!(field_of(&e), "department_id");
    let e = s
        .insert_object(&NewObject { lon: Some(181.0), ..object("site-e", "330102", housing, None) })
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "lon");
    let e = s.insert_object(&NewObject { lat: None, ..object("site-e", "330102", housing, None) }).await.unwrap_err();
    assert_eq!(field_of(&e), "lat");
    let e = s.insert_object(&object("site e!", "330102", housing, None)).await.unwrap_err();
    assert_eq!(field_of(&e), "id");
    let e = s
        .insert_object(&NewObject { name: "  ".into(), ..object("site-e", "330102", housing, None) })
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "name");
    let errs = NewObject { name: "".into(), lon: Some(500.0), ..object("bad id", "1", housing, None) }
        .normalized()
        .unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["id", "name", "region_code", "lon"], "every problem is reported");

    // Update and get.
    let updated = s
        .update_object(&NewObject {
            name: "新名称".into(),
            credit_code: Some(cc(GOOD[2])),
            ..object("site-c", "330106", ecology, None)
        })
        .await?
        .unwrap();
    assert_eq!((updated.name.as_str(), updated.region_code.as_deref()), ("新名称", Some("330106")));
    assert!(updated.updated_at >= updated.created_at);
    assert_eq!(s.object_by_credit_code(&cc(GOOD[2])).await?.unwrap().id, "site-c");
    assert!(s.update_object(&object("nobody", "330102", housing, None)).await?.is_none());
    s.update_object(&object("site-c", "330102", housing, None)).await?.unwrap();

    // Scopes: a department sees its own objects, not the others'.
    let ids = |v: Vec<offsite_store::ObjectRecord>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
    let all = ObjectFilter::default();
    let (items, total) = s.list_objects(&all, &AccessScope::departments([housing])).await?;
    assert_eq!((ids(items), total), (vec!["site-a".to_owned(), "site-c".into()], 2));
    let (items, _) = s.list_objects(&all, &AccessScope::departments([ecology])).await?;
    assert_eq!(ids(items), ["site-b", "site-d"]);
    // By region: everything in 上城区, whoever is responsible; a city covers its counties.
    let (items, _) = s.list_objects(&all, &AccessScope::regions(["330102"])).await?;
    assert_eq!(ids(items), ["site-a", "site-c", "site-d"]);
    let (_, total) = s.list_objects(&all, &AccessScope::regions(["330100"])).await?;
    assert_eq!(total, 4);
    let either = AccessScope { all: false, department_ids: vec![ecology], region_codes: vec!["330102".into()] };
    assert_eq!(s.list_objects(&all, &either).await?.1, 4);
    assert_eq!(s.list_objects(&all, &AccessScope::none()).await?.1, 0);
    assert_eq!(s.list_objects(&all, &AccessScope::all()).await?.1, 4);
    assert!(s.visible_object("site-b", &AccessScope::departments([housing])).await?.is_none());
    assert!(s.visible_object("site-b", &AccessScope::departments([ecology])).await?.is_some());

    // Filters and paging.
    let page = ObjectFilter { limit: 2, offset: 1, ..Default::default() };
    let (items, total) = s.list_objects(&page, &AccessScope::all()).await?;
    assert_eq!((ids(items), total), (vec!["site-b".to_owned(), "site-c".into()], 4));
    let q = ObjectFilter { q: Some("SITE-B".into()), ..Default::default() };
    assert_eq!(ids(s.list_objects(&q, &AccessScope::all()).await?.0), ["site-b"]);
    let q = ObjectFilter { q: Some("100M0001".into()), ..Default::default() };
    assert_eq!(ids(s.list_objects(&q, &AccessScope::all()).await?.0), ["site-a"], "by credit code");
    let q = ObjectFilter { q: Some("%".into()), ..Default::default() };
    assert_eq!(s.list_objects(&q, &AccessScope::all()).await?.1, 0, "% is a character, not a wildcard");
    let f = ObjectFilter { region_code: Some("330102".into()), department_id: Some(ecology), ..Default::default() };
    assert_eq!(ids(s.list_objects(&f, &AccessScope::all()).await?.0), ["site-d"]);
    let f = ObjectFilter { object_type: Some("hall".into()), ..Default::default() };
    assert_eq!(s.list_objects(&f, &AccessScope::all()).await?.1, 0);

    // Delete: refused while devices are attached.
    device(s, "dev1", Some("site-d")).await?;
    assert_eq!(s.object("site-d").await?.unwrap().device_count, 1);
    let e = s.delete_object("site-d").await.unwrap_err();
    assert_eq!(field_of(&e), "id");
    assert!(s.set_device_object(&DeviceId::parse("dev1")?, None).await?);
    assert!(s.delete_object("site-d").await?);
    assert!(!s.delete_object("site-d").await?);
    assert!(s.object("site-d").await?.is_none());
    Ok(())
}

async fn device(s: &Store, id: &str, object: Option<&str>) -> Result<i32> {
    let d = s
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: id.into(),
            object_id: object.map(Into::into),
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    Ok(d.key)
}

#[tokio::test]
async fn devices_visible_through_their_objects() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let (housing, ecology) = hangzhou(s).await?;
    s.insert_object(&object("site-a", "330102", housing, None)).await?;
    s.insert_object(&object("site-b", "330106", ecology, None)).await?;
    let a1 = device(s, "a1", Some("site-a")).await?;
    let a2 = device(s, "a2", Some("site-a")).await?;
    let b1 = device(s, "b1", Some("site-b")).await?;
    // Devices provisioned before their object is registered, and one with no object.
    let g1 = device(s, "g1", Some("ghost")).await?;
    let g2 = device(s, "g2", Some("ghost")).await?;
    let free = device(s, "free", None).await?;

    assert_eq!(s.device_keys_visible(&AccessScope::departments([housing])).await?, [a1, a2]);
    assert_eq!(s.device_keys_visible(&AccessScope::departments([ecology])).await?, [b1]);
    assert_eq!(s.device_keys_visible(&AccessScope::regions(["330100"])).await?, [a1, a2, b1]);
    assert!(s.device_keys_visible(&AccessScope::none()).await?.is_empty());
    assert_eq!(s.device_keys_visible(&AccessScope::all()).await?, [a1, a2, b1, g1, g2, free]);

    let orphans = s.objects_without_record().await?;
    assert_eq!(orphans.len(), 1);
    assert_eq!(
        (orphans[0].object_id.as_str(), orphans[0].device_ids.clone()),
        ("ghost", vec!["g1".into(), "g2".into()])
    );
    // Registering the object makes its devices visible to its department.
    s.insert_object(&object("ghost", "330106", ecology, None)).await?;
    assert!(s.objects_without_record().await?.is_empty());
    assert_eq!(s.device_keys_visible(&AccessScope::departments([ecology])).await?, [b1, g1, g2]);
    // Moving a device moves its visibility.
    assert!(s.set_device_object(&DeviceId::parse("a2")?, Some("site-b")).await?);
    assert_eq!(s.device_keys_visible(&AccessScope::departments([housing])).await?, [a1]);
    assert_eq!(s.object_device_ids("site-b").await?, ["a2", "b1"]);
    assert!(!s.set_device_object(&DeviceId::parse("nobody")?, Some("site-b")).await?);

    // Metadata.
    let id = DeviceId::parse("a1")?;
    assert_eq!(s.device_metadata(&id).await?.unwrap(), DeviceMetadata::default());
    let m = DeviceMetadata {
        location: Some("东门塔吊".into()),
        lon: Some(120.17),
        lat: Some(30.24),
        installed_at: Some(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
        model: Some("YC-PM-200".into()),
        metric_list: Some(vec!["pm10".into(), "pm25".into(), "noise".into()]),
    };
    assert!(s.set_device_metadata(&id, &m).await?);
    assert_eq!(s.device_metadata(&id).await?.unwrap(), m);
    let e = s.set_device_metadata(&id, &DeviceMetadata { lat: Some(95.0), ..m.clone() }).await.unwrap_err();
    assert_eq!(field_of(&e), "lat");
    let e = s
        .set_device_metadata(&id, &DeviceMetadata { metric_list: Some(vec!["pm 10".into()]), ..m.clone() })
        .await
        .unwrap_err();
    assert_eq!(field_of(&e), "metric_list");
    assert_eq!(s.device_metadata(&id).await?.unwrap(), m, "a refused change changes nothing");
    assert!(!s.set_device_metadata(&DeviceId::parse("nobody")?, &m).await?);
    // The device record itself is untouched.
    assert_eq!(s.device(&id).await?.unwrap().object_id.as_deref(), Some("site-a"));
    Ok(())
}

const BROKEN_CSV: &str = "\u{feff}id,name,统一社会信用代码,type,address,lon,lat,region_code,department_code,remark
site-1,一号工地,91350100M000100Y43,construction-site,上城区一号,120.17,30.24,330102,housing,
site-2,二号工地,91350100M000100Y44,construction-site,,,,330102,housing,bad credit code
site-3,,,construction-site,,,,330102,housing,missing name
site-4,四号工地,,construction-site,,,,339999,housing,unknown region
site-5,五号工地,,construction-site,,200,30.2,330106,ecology,bad longitude
site-6,六号工地,914403001922038216,construction-site,\"西湖区,\"\"六号\"\"\",120.13,30.26,330106,ecology,
site-7,七号工地,,,,,,,nobody,unknown department
site-1,一号工地again,,,,,,,,duplicate id
site-8,八号工地,914403001922038216,,,,,,,same credit code as site-6
";

#[tokio::test]
async fn csv_import_reports_broken_rows_and_stores_good_ones() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let (housing, ecology) = hangzhou(s).await?;

    // Dry run: the same report, nothing stored.
    let dry =
        s.import_objects_csv(BROKEN_CSV.as_bytes(), &ImportOptions { dry_run: true, ..Default::default() }).await?;
    assert_eq!(s.list_objects(&ObjectFilter::default(), &AccessScope::all()).await?.1, 0);

    let r = s.import_objects_csv(BROKEN_CSV.as_bytes(), &ImportOptions::default()).await?;
    assert_eq!(r, dry);
    assert_eq!((r.inserted, r.updated, r.unchanged, r.skipped), (2, 0, 0, 7));
    let got: Vec<(usize, &str)> = r.errors.iter().map(|e| (e.row, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "remark"),
            (3, "credit_code"),
            (4, "name"),
            (5, "region_code"),
            (6, "lon"),
            (8, "department_code"),
            (9, "id"),
            (10, "credit_code"),
        ],
        "{:#?}",
        r.errors
    );
    let bad_code = &r.errors[1];
    assert!(bad_code.message_en.contains("expected '3'"), "{}", bad_code.message_en);
    assert!(bad_code.message_zh.contains("校验码"), "{}", bad_code.message_zh);
    assert!(r.errors[4].message_en.contains("200"), "{}", r.errors[4].message_en);
    assert!(r.errors[3].message_zh.contains("339999"), "{}", r.errors[3].message_zh);

    let (items, total) = s.list_objects(&ObjectFilter::default(), &AccessScope::all()).await?;
    assert_eq!(total, 2);
    assert_eq!((items[0].id.as_str(), items[0].department_id), ("site-1", Some(housing)));
    let six = &items[1];
    assert_eq!((six.id.as_str(), six.department_id, six.lon), ("site-6", Some(ecology), Some(120.13)));
    assert_eq!(six.address.as_deref(), Some("西湖区,\"六号\""), "quoted cells");
    assert_eq!(six.credit_code, Some(cc("914403001922038216")));

    // A file without a required column is refused as a whole.
    let r = s.import_objects_csv("name,lon\nx,1\n".as_bytes(), &ImportOptions::default()).await?;
    assert_eq!((r.inserted, r.errors.len()), (0, 1));
    assert_eq!((r.errors[0].row, r.errors[0].field.as_str()), (1, "id"));

    // A later import: a column left out keeps the stored value, an empty cell clears it, a row
    // identical to the stored object is unchanged, and two objects can swap credit codes.
    let csv = "id,name,credit_code,address\n\
               site-1,一号工地,914403001922038216,\n\
               site-6,六号工地（改）,91350100M000100Y43,西湖区六号\n";
    let r = s.import_objects_csv(csv.as_bytes(), &ImportOptions::default()).await?;
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    assert_eq!((r.inserted, r.updated, r.unchanged), (0, 2, 0));
    let one = s.object("site-1").await?.unwrap();
    assert_eq!((one.address, one.lon, one.credit_code), (None, Some(120.17), Some(cc("914403001922038216"))));
    let six = s.object("site-6").await?.unwrap();
    assert_eq!((six.name.as_str(), six.region_code.as_deref()), ("六号工地（改）", Some("330106")));
    let r = s.import_objects_csv(csv.as_bytes(), &ImportOptions::default()).await?;
    assert_eq!((r.inserted, r.updated, r.unchanged), (0, 0, 2));
    // Taking a code held by an object outside the file is refused.
    let r = s
        .import_objects_csv(
            "id,name,credit_code\nsite-9,九号,914403001922038216\n".as_bytes(),
            &ImportOptions::default(),
        )
        .await?;
    assert_eq!((r.inserted, r.errors.len()), (0, 1));
    assert!(r.errors[0].message_en.contains("site-1"), "{}", r.errors[0].message_en);
    Ok(())
}

#[tokio::test]
async fn csv_export_import_round_trip() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    s.seed_demo_registers().await?;
    let housing = s.department_by_code("housing-construction").await?.unwrap().id;
    s.insert_object(&NewObject {
        id: "odd_one".into(),
        name: "名称, with \"quotes\"\nand a line break".into(),
        lon: Some(120.123456789),
        lat: Some(-0.5),
        ..Default::default()
    })
    .await?;

    let mut all = Vec::new();
    assert_eq!(s.export_objects_csv(&mut all, &AccessScope::all()).await?, 11);
    assert!(all.starts_with("\u{feff}id,name,credit_code,".as_bytes()));
    let mut mine = Vec::new();
    assert_eq!(s.export_objects_csv(&mut mine, &AccessScope::departments([housing])).await?, 5);
    let text = String::from_utf8(mine.clone())?;
    assert!(text.contains("demo-site-01") && !text.contains("demo-site-02"), "{text}");

    // Into an empty database with the same registers: the same objects.
    let other = TestDb::new().await?;
    let t = &other.store;
    t.seed_demo_registers().await?;
    sqlx::query("DELETE FROM objects").execute(t.pool()).await?;
    let r = t.import_objects_csv(all.as_slice(), &ImportOptions::default()).await?;
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    assert_eq!((r.inserted, r.updated, r.unchanged), (11, 0, 0));
    let strip = |v: Vec<offsite_store::ObjectRecord>| {
        v.into_iter()
            .map(|o| {
                (o.id, o.name, o.credit_code, o.object_type, o.address, o.lon, o.lat, o.region_code, o.department_code)
            })
            .collect::<Vec<_>>()
    };
    let page = ObjectFilter { limit: 1000, ..Default::default() };
    let before = strip(s.list_objects(&page, &AccessScope::all()).await?.0);
    assert_eq!(strip(t.list_objects(&page, &AccessScope::all()).await?.0), before);
    // And back into the source: nothing changes.
    let r = s.import_objects_csv(all.as_slice(), &ImportOptions::default()).await?;
    assert_eq!((r.inserted, r.updated, r.unchanged, r.errors.len()), (0, 0, 11, 0));
    let mut again = Vec::new();
    s.export_objects_csv(&mut again, &AccessScope::all()).await?;
    assert_eq!(again, all);

    // The catalog too.
    let mut cat = Vec::new();
    assert_eq!(s.export_catalog_csv(&mut cat).await?, 2);
    let r = s.import_catalog_csv(cat.as_slice(), &ImportOptions::default()).await?;
    assert_eq!((r.inserted, r.updated, r.unchanged, r.errors.len()), (0, 0, 2, 0), "{:#?}", r.errors);
    Ok(())
}

fn fields(method: &str) -> CatalogFields {
    CatalogFields {
        department: "生态环境局".into(),
        main_item: "对建设工地扬尘污染防治的监督检查".into(),
        sub_item: Some("扬尘在线监测".into()),
        method: method.into(),
        measures: Some("在线监测".into()),
        object_type: Some("construction-site".into()),
        legal_basis: Some("《中华人民共和国大气污染防治法》".into()),
        process: None,
        result: None,
        level: Some("市级".into()),
    }
}

#[tokio::test]
async fn catalog_versions_draft_publish_history() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;

    let d1 = s.catalog_save_draft("JG-001", &fields("非现场监管"), Some("alice")).await?;
    assert_eq!((d1.version, d1.status, d1.created_by.as_deref()), (1, CatalogStatus::Draft, Some("alice")));
    assert!(s.catalog_current().await?.is_empty(), "a draft is not in force");
    // Editing the draft keeps its version.
    let d1 = s.catalog_save_draft("JG-001", &fields("非现场监管 "), Some("bob")).await?;
    assert_eq!((d1.version, d1.fields.method.as_str()), (1, "非现场监管"));
    let d1 = s
        .catalog_save_draft(
            "JG-001",
            &CatalogFields { process: Some("预警-派单".into()), ..fields("非现场监管") },
            Some("bob"),
        )
        .await?;
    assert_eq!((d1.version, d1.created_by.as_deref()), (1, Some("bob")));

    let p1 = s.catalog_publish("JG-001", Some("chief")).await?.unwrap();
    assert_eq!((p1.version, p1.status, p1.published_by.as_deref()), (1, CatalogStatus::Published, Some("chief")));
    assert!(p1.published_at.is_some());
    assert!(s.catalog_publish("JG-001", None).await?.is_none(), "no draft left");
    assert_eq!(s.catalog_current().await?, vec![p1.clone()]);

    // The next edit is version 2, a draft; version 1 stays current until it is published.
    let d2 = s.catalog_save_draft("JG-001", &fields("双随机抽查"), Some("alice")).await?;
    assert_eq!((d2.version, d2.status), (2, CatalogStatus::Draft));
    assert_eq!(s.catalog_published("JG-001").await?.unwrap().version, 1);
    assert_eq!(s.catalog_draft("JG-001").await?.unwrap().version, 2);
    assert_eq!(s.catalog_drafts().await?.len(), 1);
    let p2 = s.catalog_publish("JG-001", Some("chief")).await?.unwrap();
    assert_eq!(p2.version, 2);

    let history = s.catalog_history("JG-001").await?;
    let versions: Vec<(i32, CatalogStatus, &str)> =
        history.iter().map(|i| (i.version, i.status, i.fields.method.as_str())).collect();
    assert_eq!(versions, [(2, CatalogStatus::Published, "双随机抽查"), (1, CatalogStatus::Published, "非现场监管")]);
    let current = s.catalog_current().await?;
    assert_eq!((current.len(), current[0].version, current[0].fields.method.as_str()), (1, 2, "双随机抽查"));
    assert_eq!(s.catalog_item("JG-001", 1).await?.unwrap(), p1, "old versions are kept as they were");

    // Saving what is already current makes no draft; a draft can be dropped.
    let same = s.catalog_save_draft("JG-001", &fields("双随机抽查"), None).await?;
    assert_eq!((same.version, same.status), (2, CatalogStatus::Published));
    s.catalog_save_draft("JG-001", &fields("x"), None).await?;
    assert!(s.catalog_discard_draft("JG-001").await?);
    assert!(!s.catalog_discard_draft("JG-001").await?);
    assert_eq!(s.catalog_history("JG-001").await?.len(), 2);

    // Published versions are immutable, even to SQL.
    let e = sqlx::query("UPDATE catalog_items SET method = 'x' WHERE code = 'JG-001' AND version = 1")
        .execute(s.pool())
        .await;
    assert!(e.is_err());
    assert!(sqlx::query("DELETE FROM catalog_items WHERE code = 'JG-001'").execute(s.pool()).await.is_err());

    // Refusals.
    let e = s.catalog_save_draft("JG 001", &fields("x"), None).await.unwrap_err();
    assert_eq!(field_of(&e), "code");
    let e = s.catalog_save_draft("JG-002", &fields(""), None).await.unwrap_err();
    assert_eq!(field_of(&e), "method");

    // Import: new codes, new versions of existing ones, broken rows reported; publish at once.
    let csv = "事项编码,实施部门,主项,子项,监管方式,监管措施,对象类型,设定依据,监管流程,监管结果,事项层级\n\
               JG-001,生态环境局,对建设工地扬尘污染防治的监督检查,扬尘在线监测,非现场监管,在线监测,construction-site,《中华人民共和国大气污染防治法》,,,市级\n\
               JG-002,住建局,对建筑施工噪声的监督检查,,非现场监管,,,,,,\n\
               JG-003,住建局,,,非现场监管,,,,,,\n\
               JG-002,住建局,重复,,非现场监管,,,,,,\n";
    let dry = s
        .import_catalog_csv(csv.as_bytes(), &ImportOptions { dry_run: true, publish: true, actor: Some("imp".into()) })
        .await?;
    assert_eq!(s.catalog_history("JG-002").await?.len(), 0);
    let r = s
        .import_catalog_csv(csv.as_bytes(), &ImportOptions { dry_run: false, publish: true, actor: Some("imp".into()) })
        .await?;
    assert_eq!(r, dry);
    assert_eq!((r.inserted, r.updated, r.unchanged, r.skipped), (1, 1, 0, 2));
    let got: Vec<(usize, &str)> = r.errors.iter().map(|e| (e.row, e.field.as_str())).collect();
    assert_eq!(got, [(4, "main_item"), (5, "code")]);
    let current: Vec<(String, i32)> = s.catalog_current().await?.into_iter().map(|i| (i.code, i.version)).collect();
    assert_eq!(current, [("JG-001".to_owned(), 3), ("JG-002".into(), 1)]);
    assert_eq!(s.catalog_published("JG-002").await?.unwrap().published_by.as_deref(), Some("imp"));
    Ok(())
}

#[tokio::test]
async fn seed_is_idempotent() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let first = s.seed_demo_registers().await?;
    assert_eq!((first.regions, first.departments, first.objects, first.catalog_items), (4, 2, 10, 2));
    let counts = || async {
        let one = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(s.pool()).await };
        Ok::<_, anyhow::Error>((
            one("SELECT count(*) FROM regions").await?,
            one("SELECT count(*) FROM departments").await?,
            one("SELECT count(*) FROM department_regions").await?,
            one("SELECT count(*) FROM objects").await?,
            one("SELECT count(*) FROM catalog_items").await?,
        ))
    };
    let before = counts().await?;
    assert_eq!(before, (4, 2, 2, 10, 2));
    let second = s.seed_demo_registers().await?;
    assert_eq!(second, Default::default());
    assert_eq!(counts().await?, before);

    let housing = s.department_by_code("housing-construction").await?.unwrap();
    let ecology = s.department_by_code("ecology").await?.unwrap();
    assert_eq!((housing.name.as_str(), housing.region_codes.clone()), ("住建局", vec!["330102".to_owned()]));
    assert_eq!((ecology.name.as_str(), ecology.region_codes.clone()), ("生态环境局", vec!["330106".to_owned()]));
    let (objs, total) = s.list_objects(&ObjectFilter::default(), &AccessScope::all()).await?;
    assert_eq!(total, 10);
    for (i, o) in objs.iter().enumerate() {
        let n = i + 1;
        assert_eq!(o.id, format!("demo-site-{n:02}"));
        let (dept, region) = if n % 2 == 1 { (housing.id, "330102") } else { (ecology.id, "330106") };
        assert_eq!((o.department_id, o.region_code.as_deref()), (Some(dept), Some(region)), "{}", o.id);
        let code = o.credit_code.as_ref().expect("demo sites have credit codes");
        assert_eq!(code.division_code(), region);
        assert_eq!(o.object_type.as_deref(), Some("construction-site"));
        assert!(o.lon.is_some() && o.lat.is_some());
    }
    assert_eq!(s.list_objects(&ObjectFilter::default(), &AccessScope::departments([housing.id])).await?.1, 5);
    assert_eq!(s.catalog_current().await?.len(), 2);
    Ok(())
}
