//! Cases and credit against a real PostgreSQL: opening from a task, the strict stage order, decision
//! validation, the credit record a decision writes, risk classes from crafted histories, scope,
//! disclosures, and the schema refusing impossible rows.

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use offsite_store::cases::{
    Advanced, CaseFilter, CaseStage, DecisionInput, DocumentAdded, Fen, NewCaseDocument, Opened, PenaltyType,
    StageRefusal,
};
use offsite_store::credit::{CreditClass, Severity};
use offsite_store::testing::TestDb;
use offsite_store::{AccessScope, FieldError, Store};

/// The demo catalog item and its published legal basis (store/src/registers/seed.rs).
const DUST: &str = "demo-dust";
const DUST_BASIS: &str = "《中华人民共和国大气污染防治法》第六十九条";

struct Fixture {
    db: TestDb,
    housing: i64,
    ecology: i64,
}

async fn fixture() -> Result<Fixture> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    Ok(Fixture { db, housing, ecology })
}

/// A task in `state`, inserted directly (the tasks API is another module's).
async fn task(store: &Store, state: &str, object: Option<&str>, item: Option<&str>, department: i64) -> Result<i64> {
    let signed = !matches!(state, "dispatched" | "returned");
    let closed = matches!(state, "closed" | "archived");
    let no = format!("RW20260301{:06}", rand::random::<u32>() % 1_000_000);
    Ok(sqlx::query_scalar(
        "INSERT INTO tasks (task_no, title, source, level, item, object_id, department_id, state, sign_limit, \
         handle_limit, dispatched_at, dispatched_by, sign_due, signed_at, handle_due, closed_at) \
         VALUES ($1, '扬尘超标核查', 'manual', 2, $2, $3, $4, $5, '2h', '3wd', now() - interval '1 day', 'mon', \
         now(), CASE WHEN $6 THEN now() - interval '20 hours' END, CASE WHEN $6 THEN now() + interval '2 days' END, \
         CASE WHEN $7 THEN now() END) RETURNING id",
    )
    .bind(no)
    .bind(item)
    .bind(object)
    .bind(department)
    .bind(state)
    .bind(signed)
    .bind(closed)
    .fetch_one(store.pool())
    .await?)
}

async fn open(store: &Store, task_id: i64, at: DateTime<Utc>) -> Result<i64> {
    match store.open_case(task_id, "h_housing", Some("现场检查发现未落实扬尘防治措施"), at).await? {
        Opened::Ok(c) => Ok(c.id),
        other => anyhow::bail!("case not opened: {other:?}"),
    }
}

async fn advance(
    store: &Store,
    id: i64,
    to: CaseStage,
    decision: Option<DecisionInput>,
    at: DateTime<Utc>,
) -> Result<Advanced> {
    store.advance_case(id, to, "h_housing", Some("按程序推进"), decision, at).await
}

fn fine(yuan: i64, disclose: bool) -> DecisionInput {
    DecisionInput { legal_basis: None, penalty: PenaltyType::Fine, amount: Some(Fen::from_yuan(yuan)), disclose }
}

fn penalty(p: PenaltyType) -> DecisionInput {
    DecisionInput { legal_basis: None, penalty: p, amount: None, disclose: false }
}

/// Takes a case from filed to decided with `decision`, at `at`.
async fn decide(store: &Store, id: i64, decision: DecisionInput, at: DateTime<Utc>) -> Result<()> {
    assert!(matches!(advance(store, id, CaseStage::Investigating, None, at).await?, Advanced::Ok(_)));
    match advance(store, id, CaseStage::Decided, Some(decision), at).await? {
        Advanced::Ok(_) => Ok(()),
        other => anyhow::bail!("not decided: {other:?}"),
    }
}

fn field(e: anyhow::Error) -> FieldError {
    e.downcast::<FieldError>().expect("a field error")
}

#[tokio::test]
async fn a_case_goes_through_its_stages_strictly_in_order() -> Result<()> {
    let f = fixture().await?;
    let s = &f.db.store;
    let t = task(s, "in_progress", Some("demo-site-01"), Some(DUST), f.housing).await?;
    let now = Utc::now();
    let id = open(s, t, now).await?;
    let c = s.case(id).await?.unwrap();
    assert_eq!(c.stage, CaseStage::Filed);
    assert_eq!((c.object_id.as_str(), c.item.as_deref(), c.department_id), ("demo-site-01", Some(DUST), f.housing));
    assert!(c.case_no.starts_with("AJ") && c.case_no.len() == 16, "{}", c.case_no);
    let date = now.with_timezone(&offsite_store::calendar::china()).format("%Y%m%d").to_string();
    assert_eq!(&c.case_no[2..10], date, "the case number carries the Shanghai date");

    // Skipping, standing still and going back are refused with the reason.
    let r = advance(s, id, CaseStage::Decided, Some(fine(1000, false)), now).await?;
    assert_eq!(r, Advanced::Refused(StageRefusal::Skips { current: CaseStage::Filed, requested: CaseStage::Decided }));
    let r = advance(s, id, CaseStage::Filed, None, now).await?;
    assert_eq!(r, Advanced::Refused(StageRefusal::AlreadyAt(CaseStage::Filed)));
    assert!(matches!(advance(s, id, CaseStage::Investigating, None, now).await?, Advanced::Ok(_)));
    let r = advance(s, id, CaseStage::Filed, None, now).await?;
    assert_eq!(
        r,
        Advanced::Refused(StageRefusal::Backwards { current: CaseStage::Investigating, requested: CaseStage::Filed })
    );
    assert_eq!(advance(s, 999_999, CaseStage::Investigating, None, now).await?, Advanced::NotFound);

    let Advanced::Ok(c) = advance(s, id, CaseStage::Decided, Some(fine(50_000, true)), now).await? else {
        panic!("decision refused")
    };
    let d = c.decision().expect("decided");
    assert_eq!((d.penalty(), d.amount(), d.legal_basis()), (PenaltyType::Fine, Fen::from_yuan(50_000), DUST_BASIS));
    assert!(d.disclose());
    assert!(matches!(advance(s, id, CaseStage::Executing, None, now).await?, Advanced::Ok(_)));
    let Advanced::Ok(c) = advance(s, id, CaseStage::Closed, None, now).await? else { panic!("not closed") };
    assert_eq!(c.stage, CaseStage::Closed);
    assert!(c.closed_at.is_some());
    assert_eq!(advance(s, id, CaseStage::Closed, None, now).await?, Advanced::Refused(StageRefusal::Closed));

    let stages = s.case_stages(id).await?;
    assert_eq!(stages.iter().map(|x| x.stage).collect::<Vec<_>>(), CaseStage::ALL.to_vec());
    assert!(stages.iter().all(|x| x.handler == "h_housing"));
    assert_eq!(stages[0].note, "现场检查发现未落实扬尘防治措施");
    assert!(stages.windows(2).all(|w| w[0].reached_at <= w[1].reached_at));

    // Only one case per task.
    match s.open_case(t, "h_housing", None, now).await? {
        Opened::AlreadyOpen { case_id, .. } => assert_eq!(case_id, id),
        other => panic!("second case opened: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn only_signed_tasks_with_an_object_open_cases() -> Result<()> {
    let f = fixture().await?;
    let s = &f.db.store;
    let now = Utc::now();
    for state in ["dispatched", "returned"] {
        let t = task(s, state, Some("demo-site-01"), Some(DUST), f.housing).await?;
        assert_eq!(s.open_case(t, "h", None, now).await?, Opened::TaskNotSigned(state.to_owned()));
    }
    for state in ["signed", "in_progress", "feedback", "closed", "archived"] {
        let t = task(s, state, Some("demo-site-01"), Some(DUST), f.housing).await?;
        assert!(matches!(s.open_case(t, "h", None, now).await?, Opened::Ok(_)), "{state}");
    }
    let t = task(s, "signed", None, Some(DUST), f.housing).await?;
    assert_eq!(s.open_case(t, "h", None, now).await?, Opened::NoObject);
    let t = task(s, "signed", Some("not-registered"), Some(DUST), f.housing).await?;
    assert_eq!(s.open_case(t, "h", None, now).await?, Opened::NoObject);
    assert_eq!(s.open_case(999_999, "h", None, now).await?, Opened::TaskNotFound);
    Ok(())
}

#[tokio::test]
async fn decisions_are_validated_and_nothing_half_written() -> Result<()> {
    let f = fixture().await?;
    let s = &f.db.store;
    let now = Utc::now();
    let id = open(s, task(s, "signed", Some("demo-site-01"), Some(DUST), f.housing).await?, now).await?;
    assert!(matches!(advance(s, id, CaseStage::Investigating, None, now).await?, Advanced::Ok(_)));

    let no_amount = DecisionInput { amount: None, ..fine(1, false) };
    assert_eq!(field(advance(s, id, CaseStage::Decided, Some(no_amount), now).await.unwrap_err()).field, "amount_yuan");
    let zero = DecisionInput { amount: Some(Fen::ZERO), ..fine(1, false) };
    assert_eq!(field(advance(s, id, CaseStage::Decided, Some(zero), now).await.unwrap_err()).field, "amount_yuan");
    let warning_with_amount = DecisionInput { amount: Some(Fen::from_yuan(200)), ..penalty(PenaltyType::Warning) };
    let e = field(advance(s, id, CaseStage::Decided, Some(warning_with_amount), now).await.unwrap_err());
    assert_eq!(e.field, "amount_yuan");
    assert_eq!(field(advance(s, id, CaseStage::Decided, None, now).await.unwrap_err()).field, "penalty");
    let c = s.case(id).await?.unwrap();
    assert_eq!((c.stage, c.decided_at), (CaseStage::Investigating, None), "a refused decision leaves nothing behind");
    assert_eq!(s.case_stages(id).await?.len(), 2);
    assert!(s.credit_records("demo-site-01").await?.is_empty());

    // Decision fields on another stage are refused too.
    let id2 = open(s, task(s, "signed", Some("demo-site-01"), Some(DUST), f.housing).await?, now).await?;
    let e = field(advance(s, id2, CaseStage::Investigating, Some(fine(5, false)), now).await.unwrap_err());
    assert_eq!(e.field, "penalty");

    // An explicit legal basis wins over the catalog's.
    let own = DecisionInput {
        legal_basis: Some("《建设工程施工现场管理规定》".into()),
        ..penalty(PenaltyType::Warning)
    };
    let Advanced::Ok(c) = advance(s, id, CaseStage::Decided, Some(own), now).await? else { panic!() };
    assert_eq!(c.legal_basis.as_deref(), Some("《建设工程施工现场管理规定》"));
    assert_eq!((c.penalty, c.amount_fen, c.disclose), (Some(PenaltyType::Warning), Some(0), Some(false)));

    // An item without a published legal basis needs one given.
    let t = task(s, "signed", Some("demo-site-01"), Some("no-such-item"), f.housing).await?;
    let id3 = open(s, t, now).await?;
    assert!(matches!(advance(s, id3, CaseStage::Investigating, None, now).await?, Advanced::Ok(_)));
    let e = field(advance(s, id3, CaseStage::Decided, Some(penalty(PenaltyType::Warning)), now).await.unwrap_err());
    assert_eq!(e.field, "legal_basis");
    Ok(())
}

#[tokio::test]
async fn decisions_write_credit_records_and_classes_follow() -> Result<()> {
    let f = fixture().await?;
    let s = &f.db.store;
    let now = Utc::now();
    let object = "demo-site-03";

    let st = s.credit_standing(object, now).await?;
    assert_eq!((st.points, st.class, st.records_in_force), (100, CreditClass::A, 0), "no records: A");

    // One fine of 50,000 yuan: serious, 20 points, B.
    let id = open(s, task(s, "signed", Some(object), Some(DUST), f.housing).await?, now).await?;
    decide(s, id, fine(50_000, false), now).await?;
    let records = s.credit_records(object).await?;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.severity, r.deduction, r.case_id), (Severity::Serious, 20, Some(id)));
    assert_eq!(r.case_no.as_deref(), Some(s.case(id).await?.unwrap().case_no.as_str()));
    assert!(r.note.contains("罚款 50000.00 元"), "{}", r.note);
    assert_eq!(r.expires_at, offsite_store::credit::expiry(r.recorded_at));
    let st = s.credit_standing(object, now).await?;
    assert_eq!((st.points, st.class, st.records_in_force), (80, CreditClass::B, 1));
    // Before the decision the record did not count.
    assert_eq!(s.credit_standing(object, now - Duration::hours(1)).await?.class, CreditClass::A);

    // No penalty writes nothing.
    let id = open(s, task(s, "signed", Some(object), Some(DUST), f.housing).await?, now).await?;
    decide(s, id, penalty(PenaltyType::NoPenalty), now).await?;
    assert_eq!(s.credit_records(object).await?.len(), 1);

    // A revocation (severe, 40) on top: 40 points, D.
    let id = open(s, task(s, "signed", Some(object), Some(DUST), f.housing).await?, now).await?;
    decide(s, id, penalty(PenaltyType::Revocation), now).await?;
    let st = s.credit_standing(object, now).await?;
    assert_eq!((st.points, st.class), (40, CreditClass::D));

    // Another object: a decision four years ago has expired and no longer counts, but did while in force.
    let old_object = "demo-site-05";
    let long_ago = now - Duration::days(4 * 365);
    let id = open(s, task(s, "signed", Some(old_object), Some(DUST), f.housing).await?, long_ago).await?;
    decide(s, id, fine(100_000, false), long_ago).await?;
    let st = s.credit_standing(old_object, now).await?;
    assert_eq!((st.points, st.class, st.records_in_force), (100, CreditClass::A, 0), "expired records are ignored");
    let then = s.credit_standing(old_object, long_ago + Duration::days(365)).await?;
    assert_eq!((then.points, then.class), (60, CreditClass::C));
    // A recent warning on it: 95, still A.
    let id = open(s, task(s, "signed", Some(old_object), Some(DUST), f.housing).await?, now).await?;
    decide(s, id, penalty(PenaltyType::Warning), now).await?;
    let st = s.credit_standing(old_object, now).await?;
    assert_eq!((st.points, st.class), (95, CreditClass::A));

    let both = s.credit_standings(&[object.into(), old_object.into(), "demo-site-07".into()], now).await?;
    assert_eq!(both[object].class, CreditClass::D);
    assert_eq!(both[old_object].class, CreditClass::A);
    assert_eq!(both["demo-site-07"].points, 100);
    Ok(())
}

#[tokio::test]
async fn scope_documents_and_disclosures() -> Result<()> {
    let f = fixture().await?;
    let s = &f.db.store;
    let now = Utc::now();
    // demo-site-01 is housing's, demo-site-02 ecology's.
    let housing_case = open(s, task(s, "signed", Some("demo-site-01"), Some(DUST), f.housing).await?, now).await?;
    let ecology_case = open(s, task(s, "signed", Some("demo-site-02"), Some(DUST), f.ecology).await?, now).await?;

    let housing = AccessScope::departments([f.housing]);
    let (items, total) = s.list_cases(&CaseFilter::default(), &housing).await?;
    assert_eq!((items.iter().map(|c| c.id).collect::<Vec<_>>(), total), (vec![housing_case], 1));
    assert!(s.visible_case(ecology_case, &housing).await?.is_none());
    assert!(s.visible_case(housing_case, &housing).await?.is_some());
    let (_, total) = s.list_cases(&CaseFilter::default(), &AccessScope::all()).await?;
    assert_eq!(total, 2);
    let only_ecology = CaseFilter { department_id: Some(f.ecology), ..Default::default() };
    let (items, _) = s.list_cases(&only_ecology, &AccessScope::all()).await?;
    assert_eq!(items.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ecology_case]);

    // Documents belong to a stage reached: the current one by default.
    let sha = offsite_store::files::sha256_hex(b"%PDF-1.4 filing");
    let doc = |stage| NewCaseDocument {
        stage,
        filename: "立案审批表.pdf".into(),
        content_type: "application/pdf".into(),
        size: 15,
        sha256: sha.clone(),
    };
    let DocumentAdded::Ok(d) = s.add_case_document(housing_case, &doc(None), "h_housing").await? else { panic!() };
    assert_eq!(d.stage, CaseStage::Filed);
    assert_eq!(
        s.add_case_document(housing_case, &doc(Some(CaseStage::Decided)), "h_housing").await?,
        DocumentAdded::StageNotReached(CaseStage::Decided)
    );
    assert_eq!(s.add_case_document(999_999, &doc(None), "h").await?, DocumentAdded::CaseNotFound);
    assert_eq!(s.case_documents(housing_case).await?, vec![d.clone()]);
    assert_eq!(s.case_document(housing_case, d.id).await?, Some(d.clone()));
    assert_eq!(s.case_document(ecology_case, d.id).await?, None, "a document is reached through its own case");

    // Only decisions marked for disclosure are public.
    decide(s, housing_case, fine(20_000, true), now).await?;
    decide(s, ecology_case, fine(30_000, false), now).await?;
    let (items, total) = s.disclosures(10, 0).await?;
    assert_eq!(total, 1);
    let p = &items[0];
    assert_eq!(p.case_no, s.case(housing_case).await?.unwrap().case_no);
    assert_eq!((p.penalty, p.amount_fen, p.legal_basis.as_str()), (PenaltyType::Fine, 2_000_000, DUST_BASIS));
    assert_eq!(p.item_name.as_deref(), Some("对建设工地扬尘污染防治的监督检查"));
    assert!(p.object_name.contains("示范建设工地01号"));
    assert!(p.credit_code.is_some());
    Ok(())
}

#[tokio::test]
async fn the_schema_refuses_impossible_rows() -> Result<()> {
    let f = fixture().await?;
    let s = &f.db.store;
    let now = Utc::now();
    let id = open(s, task(s, "signed", Some("demo-site-01"), Some(DUST), f.housing).await?, now).await?;
    let exec = |sql: &'static str| async move { sqlx::query(sql).bind(id).execute(s.pool()).await };
    // A stage without its predecessor.
    assert!(exec(
        "INSERT INTO case_stages (case_id, stage, previous, reached_at, handler) \
                  VALUES ($1, 'decided', 'investigating', now(), 'x')"
    )
    .await
    .is_err());
    assert!(exec(
        "INSERT INTO case_stages (case_id, stage, previous, reached_at, handler) \
                  VALUES ($1, 'decided', NULL, now(), 'x')"
    )
    .await
    .is_err());
    // A decision on a case still filed, a fine without an amount, a warning with one.
    assert!(exec(
        "UPDATE cases SET decided_at = now(), legal_basis = 'x', penalty = 'warning', amount_fen = 0, \
                  disclose = false WHERE id = $1"
    )
    .await
    .is_err());
    decide(s, id, fine(500, false), now).await?;
    assert!(exec("UPDATE cases SET amount_fen = 0 WHERE id = $1").await.is_err());
    assert!(exec("UPDATE cases SET penalty = 'warning' WHERE id = $1").await.is_err());
    assert!(exec("UPDATE cases SET legal_basis = NULL WHERE id = $1").await.is_err());
    // At a stage not reached.
    assert!(exec("UPDATE cases SET stage = 'executing' WHERE id = $1").await.is_err());
    // Closed without a closing time; a document on a stage not reached.
    assert!(exec("UPDATE cases SET stage = 'closed' WHERE id = $1").await.is_err());
    let sha = offsite_store::files::sha256_hex(b"x");
    s.record_file(&sha, 1, "application/pdf").await?;
    let r = sqlx::query(
        "INSERT INTO case_documents (case_id, stage, filename, content_type, size, sha256, uploaded_by, uploaded_at) \
         VALUES ($1, 'closed', 'a.pdf', 'application/pdf', 1, $2, 'x', now())",
    )
    .bind(id)
    .bind(&sha)
    .execute(s.pool())
    .await;
    assert!(r.is_err());
    // An object with cases stays in the register.
    let e = field(s.delete_object("demo-site-01").await.unwrap_err());
    assert_eq!(e.field, "id");
    // A second credit record for the same case.
    assert!(exec(
        "INSERT INTO credit_records (object_id, source, case_id, severity, deduction, recorded_at, \
                  recorded_by, expires_at) VALUES ('demo-site-01', 'case', $1, 'minor', 5, now(), 'x', \
                  now() + interval '1 year')"
    )
    .await
    .is_err());
    Ok(())
}
