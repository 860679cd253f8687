//! The broker's allocator setting (src/allocator.rs), on the allocation pattern that made the
//! broker's RSS creep in the soak: big blocks, fully written and freed, then as many big blocks of
//! which only the first page is written (a device filter's new segment). Alone in its own test
//! binary so that no other test allocates in this process meanwhile.

mod memory;

use std::hint::black_box;

use memory::{rss_bytes, MIB};

const BLOCK: usize = 256 * 1024;
const BLOCKS: usize = 400; // 100 MiB

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_segments_do_not_stay_resident_in_new_sparse_ones() {
    assert!(
        offsite_broker::allocator::pin_mmap_threshold(),
        "mallopt refused the threshold"
    );

    // Freeing one big block is what makes glibc raise its threshold when nothing pins it.
    drop(black_box(vec![1u8; BLOCK]));

    let before = rss_bytes();
    // Full segments, with small allocations between them so that freed blocks cannot merge
    // into the top of the heap and be trimmed away.
    let mut separators = Vec::with_capacity(BLOCKS);
    let mut full = Vec::with_capacity(BLOCKS);
    for _ in 0..BLOCKS {
        full.push(black_box(vec![1u8; BLOCK]));
        separators.push(black_box(Box::new([0u8; 64])));
    }
    drop(full);

    // New segments: reserved for a full ring, one page written.
    let mut sparse: Vec<Vec<u8>> = Vec::with_capacity(BLOCKS);
    for _ in 0..BLOCKS {
        let mut v = Vec::with_capacity(BLOCK);
        v.extend_from_slice(&[1u8; 4096]);
        sparse.push(black_box(v));
    }
    let grown = rss_bytes().saturating_sub(before);
    black_box((&sparse, &separators));
    // Written: 400 pages (1.6 MiB). Without the pinned threshold the sparse blocks reuse the freed
    // full ones and about 100 MiB stays resident.
    assert!(
        grown < 24 * MIB,
        "RSS grew by {} MiB for 1.6 MiB written",
        grown / MIB
    );
}
