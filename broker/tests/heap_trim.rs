//! The broker's periodic heap trim (src/allocator.rs) on the pattern of a reconnect storm: many
//! connection-sized blocks (under the mmap threshold, so in the heap) written and then freed while
//! small live blocks between them keep the freed memory from reaching the top of the heap. glibc
//! keeps those pages resident; the trimmer must hand them back. Alone in its own test binary so
//! that no other test allocates in this process meanwhile.

mod memory;

use std::hint::black_box;
use std::time::{Duration, Instant};

use memory::{rss_bytes, MIB};

/// About what rumqttd reserves for one connection's input buffer (200 packets).
const BLOCK: usize = 72 * 1024;
const BLOCKS: usize = 1400; // about 100 MiB

fn trims_observed() -> u64 {
    prometheus::default_registry()
        .gather()
        .iter()
        .find(|f| f.name() == "offsite_broker_heap_trim_seconds")
        .map_or(0, |f| f.get_metric()[0].get_histogram().get_sample_count())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_heap_pages_go_back_to_the_system() {
    offsite_broker::metrics::register();
    offsite_broker::allocator::pin_mmap_threshold();
    let before = rss_bytes();
    let mut separators = Vec::with_capacity(BLOCKS);
    let mut blocks = Vec::with_capacity(BLOCKS);
    for _ in 0..BLOCKS {
        blocks.push(black_box(vec![1u8; BLOCK]));
        separators.push(black_box(Box::new([0u8; 64])));
    }
    drop(blocks);
    let freed = rss_bytes();
    // The control: without a trim the freed blocks stay resident (what a storm left behind).
    assert!(
        freed.saturating_sub(before) > 80 * MIB,
        "freed blocks did not stay resident ({} MiB): the test no longer shows the problem",
        freed.saturating_sub(before) / MIB
    );

    offsite_broker::allocator::spawn_heap_trimmer(Duration::from_millis(100)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while freed.saturating_sub(rss_bytes()) < 80 * MIB {
        assert!(
            Instant::now() < deadline,
            "the trimmer handed back only {} MiB of about 100 MiB freed",
            freed.saturating_sub(rss_bytes()) / MIB
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    black_box(&separators);
    assert!(
        trims_observed() > 0,
        "trims are not counted in offsite_broker_heap_trim_seconds"
    );
}
