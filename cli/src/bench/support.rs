//! Helpers shared by the benches.

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Result;

/// A scratch directory the `postgres` user can reach (not under a private home directory).
pub fn scratch_dir(tag: &str) -> Result<tempfile::TempDir> {
    let base = PathBuf::from(std::env::var("OFFSITE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()));
    let d = tempfile::Builder::new().prefix(&format!("offsite-bench-{tag}-")).tempdir_in(base)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(d)
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The p-th percentile (0..=100) of unsorted values; NaN when empty.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

pub fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let mut v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(super::percentile(&mut v, 50.0), 51.0);
        assert_eq!(super::percentile(&mut v, 99.0), 99.0);
        assert!(super::percentile(&mut [], 50.0).is_nan());
    }
}
