//! The `bench api` workload: what it seeds is shaped like the workflow leaves it (every state,
//! consistent times, indexes back in place) and the department figures read it.

use anyhow::Result;
use chrono::{Duration, Utc};
use offsite_store::bench_data::WorkloadSize;
use offsite_store::dept_metrics::{DepartmentSet, Period};
use offsite_store::testing::TestDb;

#[tokio::test]
async fn seeds_a_consistent_workload() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let pool = s.pool();
    let indexes = |t: &'static str| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_indexes WHERE tablename = $1").bind(t).fetch_one(pool)
    };
    let before = (indexes("tasks").await?, indexes("warnings").await?, indexes("task_events").await?);
    let now = Utc::now();
    let size = WorkloadSize { tasks: 20_000, warnings: 3_000, departments: 5, objects: 50, complaints: 200 };
    let r = s.seed_bench_workload(size, now, |_| {}).await?;
    assert_eq!((r.tasks, r.warnings, r.complaints, r.department_ids.len()), (20_000, 3_000, 200, 5));
    assert!(r.task_events > 2_000, "{}", r.task_events);
    assert_eq!(before, (indexes("tasks").await?, indexes("warnings").await?, indexes("task_events").await?));

    // Every state occurs, in roughly the intended shares.
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM tasks GROUP BY state ORDER BY state").fetch_all(pool).await?;
    assert_eq!(states.len(), 7, "{states:?}");
    let share = |st: &str| states.iter().find(|(s, _)| s == st).map_or(0.0, |(_, n)| *n as f64 / 20_000.0);
    // 97.3% older than 10 days (65% of them archived); dispatched: 30% of the recent, 1.2% of the rest.
    assert!((share("archived") - 0.632).abs() < 0.03 && (share("dispatched") - 0.020).abs() < 0.006, "{states:?}");
    // Times in order, nothing in the future, every task with its lead department.
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks t WHERE sign_due <= dispatched_at OR signed_at < dispatched_at \
         OR closed_at < signed_at OR greatest(dispatched_at, signed_at, feedback_at, closed_at, archived_at) > $1 \
         OR NOT EXISTS (SELECT 1 FROM task_departments d WHERE d.task_id = t.id AND d.role = 'lead' \
                        AND d.department_id = t.department_id)",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    assert_eq!(bad, 0);
    let returned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM task_events WHERE action = 'returned'").fetch_one(pool).await?;
    assert_eq!(returned, (share("returned") * 20_000.0).round() as i64);

    // The figures see a busy year: some late, some returned, nothing undefined that has data.
    let year = Period::new(now - Duration::days(366), now + Duration::minutes(1))?;
    let figures = s.department_figures(&DepartmentSet::All, year, now).await?;
    assert_eq!(figures.len(), 5);
    assert_eq!(figures.iter().map(|f| f.tasks).sum::<i64>(), 20_000 - (share("returned") * 20_000.0).round() as i64);
    for f in &figures {
        let sign = f.on_time_sign_rate.unwrap();
        assert!(sign > 0.6 && sign < 0.9, "{f:?}");
        assert!(f.return_rate.unwrap() > 0.0 && f.false_positive_rate.is_some() && f.callback_satisfaction.is_some());
        assert!(f.open_overdue_now > 0 && f.mean_close_minutes.unwrap() > 0.0);
    }
    // Each department has dispatched tasks for the sign-for clients.
    assert!(!s.dispatched_task_ids(r.department_ids[0]).await?.is_empty());
    Ok(())
}
