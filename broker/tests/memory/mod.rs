//! Reading this test process's own resident memory (the allocator tests).

pub const MIB: usize = 1024 * 1024;

/// This process's resident set, in bytes.
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .expect("statm has a resident field")
        .parse()
        .unwrap();
    // Pages of 4 KiB: the size on every machine this platform supports (x86-64, aarch64 Linux).
    pages * 4096
}
