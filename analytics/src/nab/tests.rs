//! Unit tests on small crafted files.

use chrono::{Duration, NaiveDate, NaiveDateTime};

use super::*;

fn t(i: usize) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2015, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        + Duration::minutes(5 * i as i64)
}

/// `n` rows of score 0 with 1.0 at `hits`.
fn rows(n: usize, hits: &[usize]) -> Vec<(NaiveDateTime, f64)> {
    (0..n)
        .map(|i| (t(i), if hits.contains(&i) { 1.0 } else { 0.0 }))
        .collect()
}

fn window(lo: usize, hi: usize) -> Window {
    Window::new(t(lo), t(hi))
}

/// 1000 rows (probation: 150), one window on rows 400..=499.
fn one_window(hits: &[usize], profile: &Profile) -> FileScore {
    score_file(&rows(1000, hits), &[window(400, 499)], profile, 0.5).unwrap()
}

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps
}

#[test]
fn sigmoid_and_probation() {
    assert!(close(scaled_sigmoid(-1.0), 0.986_614, 1e-6));
    assert!(close(scaled_sigmoid(-0.5), 0.848_283, 1e-6));
    assert_eq!(scaled_sigmoid(0.0), 0.0);
    assert!(close(scaled_sigmoid(1.0), -0.986_614, 1e-6));
    assert_eq!(scaled_sigmoid(3.0), -1.0);
    assert_eq!(scaled_sigmoid(50.0), -1.0);
    assert_eq!(probationary_length(1000), 150);
    assert_eq!(probationary_length(4032), 604);
    assert_eq!(probationary_length(22695), 750);
    assert_eq!(probationary_length(0), 0);
}

#[test]
fn early_detection_scores_about_one() {
    let s = one_window(&[400], &Profile::standard());
    assert!(close(s.raw, 1.0, 1e-12), "{s:?}");
    assert_eq!((s.windows, s.windows_detected, s.tp, s.fp), (1, 1, 1, 0));
    assert_eq!(s.fn_, 99);
    // Only the earliest detection counts: later ones in the same window add nothing.
    let s2 = one_window(&[400, 450, 499], &Profile::standard());
    assert_eq!(s2.raw, s.raw);
    assert_eq!(s2.tp, 3);
}

#[test]
fn detection_at_window_end_scores_about_zero() {
    let s = one_window(&[499], &Profile::standard());
    assert!(s.raw > 0.0 && s.raw < 0.03, "{s:?}");
    // Half way is worth sigma(-0.5) relative to sigma(-1).
    let mid = one_window(&[449], &Profile::standard());
    assert!(
        close(mid.raw, scaled_sigmoid(-0.51) / scaled_sigmoid(-1.0), 1e-12),
        "{mid:?}"
    );
}

#[test]
fn missed_window_costs_fn_weight() {
    assert_eq!(one_window(&[], &Profile::standard()).raw, -1.0);
    assert_eq!(one_window(&[], &Profile::reward_low_fn_rate()).raw, -2.0);
    let s = one_window(&[], &Profile::standard());
    assert_eq!((s.windows, s.windows_detected, s.fn_, s.tn), (1, 0, 100, 750));
}

#[test]
fn false_positive_near_window_costs_less_than_far_one() {
    let p = Profile::standard();
    let near = one_window(&[400, 500], &p).raw - 1.0;
    let mid = one_window(&[400, 560], &p).raw - 1.0;
    let far = one_window(&[400, 900], &p).raw - 1.0;
    assert!(near < 0.0 && near > -0.01, "near {near}");
    assert!(mid < near && mid > far, "mid {mid}");
    assert!(close(far, -p.fp_weight, 1e-12), "far {far}");
    // Distance in rows relative to the previous window's width minus one: row 500 is 1/99 past the edge.
    assert!(close(near, scaled_sigmoid(1.0 / 99.0) * p.fp_weight, 1e-12));
    // Before any window: a full -fpWeight.
    let before = one_window(&[400, 300], &p).raw - 1.0;
    assert!(close(before, -p.fp_weight, 1e-12));
    let low_fp = one_window(&[400, 900], &Profile::reward_low_fp_rate()).raw - 1.0;
    assert!(close(low_fp, -0.22, 1e-12));
    assert_eq!(one_window(&[400, 300, 900], &p).fp, 2);
}

#[test]
fn probationary_detections_are_ignored() {
    let p = Profile::standard();
    let s = one_window(&[10, 149], &p);
    assert_eq!(s.raw, -1.0);
    assert_eq!(s.fp, 0);
    assert_eq!(s.scored_rows, 850);
    // Row 150 is the first scored row.
    assert!(close(one_window(&[150], &p).raw, -1.0 - p.fp_weight, 1e-12));
    // A window wholly inside the probationary period is not scored at all, neither TP nor FN ...
    let inside = score_file(&rows(1000, &[15]), &[window(10, 20)], &p, 0.5).unwrap();
    assert_eq!((inside.raw, inside.windows), (0.0, 0));
    // ... but it is still the reference for later false positives.
    let after = score_file(&rows(1000, &[160]), &[window(10, 20)], &p, 0.5).unwrap();
    assert!(close(after.raw, scaled_sigmoid(140.0 / 10.0) * p.fp_weight, 1e-12));
    // A window straddling the end of the probationary period keeps its full width.
    let straddle = score_file(&rows(1000, &[150]), &[window(140, 159)], &p, 0.5).unwrap();
    assert_eq!(straddle.windows, 1);
    assert!(close(
        straddle.raw,
        scaled_sigmoid(-10.0 / 20.0) / scaled_sigmoid(-1.0),
        1e-12
    ));
}

#[test]
fn windows_map_to_rows_by_timestamp() {
    // Window limits between row timestamps still cover the rows inside them.
    let r = rows(1000, &[400]);
    let w = Window::new(t(400) - Duration::minutes(2), t(499) + Duration::minutes(2));
    assert!(close(
        score_file(&r, &[w], &Profile::standard(), 0.5).unwrap().raw,
        1.0,
        1e-12
    ));
    let empty = Window::new(t(400) + Duration::minutes(1), t(400) + Duration::minutes(2));
    assert!(score_file(&r, &[empty], &Profile::standard(), 0.5).is_err());
}

type Rows = Vec<(NaiveDateTime, f64)>;

fn corpus(files: Vec<(Rows, Vec<Window>)>) -> Corpus {
    Corpus::from_files(
        files
            .into_iter()
            .enumerate()
            .map(|(i, (rows, windows))| CorpusFile::new(format!("c/f{i}.csv"), &ResultFile { rows }, &windows).unwrap())
            .collect(),
    )
}

#[test]
fn null_is_zero_and_perfect_is_hundred() {
    let windows_a = vec![window(300, 349), window(700, 799)];
    let windows_b = vec![window(600, 699)];
    let null = corpus(vec![
        (rows(1000, &[]), windows_a.clone()),
        (rows(1200, &[]), windows_b.clone()),
    ]);
    let perfect = corpus(vec![
        (rows(1000, &[300, 700]), windows_a),
        (rows(1200, &[600]), windows_b),
    ]);
    for p in Profile::standard_set() {
        let s = null.score(&p, 0.5);
        assert_eq!(s.raw, -3.0 * p.fn_weight);
        assert_eq!(s.normalized, 0.0);
        let s = perfect.score(&p, 0.5);
        assert!(close(s.normalized, 100.0, 1e-9), "{}", s.normalized);
        let choice = perfect.optimize_threshold(&p);
        assert_eq!(choice.threshold, 1.0);
        assert!(close(perfect.normalize(&p, choice.raw), 100.0, 1e-9));
        // The sweep never fires on the null detector.
        let choice = null.optimize_threshold(&p);
        assert_eq!((choice.threshold, choice.raw), (1.1, -3.0 * p.fn_weight));
    }
}

/// Deterministic pseudo-random numbers (xorshift).
fn noise(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn sweep_matches_brute_force() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut files = Vec::new();
    for (n, wins) in [
        (600usize, vec![(200usize, 259usize), (400, 409)]),
        (900, vec![(100, 180)]),
        (500, vec![]),
    ] {
        // Coarse scores so that many rows tie.
        let r: Vec<_> = (0..n)
            .map(|i| (t(i), (noise(&mut seed) * 40.0).floor() / 40.0))
            .collect();
        files.push((r, wins.iter().map(|&(a, b)| window(a, b)).collect::<Vec<_>>()));
    }
    let c = corpus(files);
    for p in Profile::standard_set() {
        let choice = c.optimize_threshold(&p);
        let mut thresholds: Vec<f64> = c.files.iter().flat_map(|f| f.scores.iter().copied()).collect();
        thresholds.push(1.1);
        thresholds.sort_by(|a, b| b.partial_cmp(a).unwrap());
        thresholds.dedup();
        let (mut best_t, mut best_raw) = (f64::NAN, f64::NEG_INFINITY);
        for &th in &thresholds {
            let raw = c.score(&p, th).raw;
            if raw > best_raw + 1e-9 {
                best_t = th;
                best_raw = raw;
            }
        }
        assert!(
            close(choice.raw, best_raw, 1e-9),
            "{} sweep {} brute {}",
            p.name,
            choice.raw,
            best_raw
        );
        assert_eq!(choice.threshold, best_t, "{}", p.name);
        assert!(close(c.score(&p, choice.threshold).raw, choice.raw, 1e-9));
    }
}

#[test]
fn profiles_json() {
    let text = r#"{"reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}},
                   "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
                   "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}}}"#;
    assert_eq!(Profile::parse_json(text).unwrap(), Profile::standard_set());
    assert!(Profile::parse_json(r#"{"x": {"CostMatrix": {"tpWeight": 1.0}}}"#).is_err());
}
