//! The broker's setting of the C allocator (glibc only; elsewhere nothing is changed).
//!
//! rumqttd gives every subscription filter a ring of segments, and each segment reserves room for
//! 1,024 messages (232 KiB: 1,024 x 232 bytes) however few it will hold: a device's ack and command filters hold
//! a few dozen small messages, so most of each block is never written. glibc serves a block that
//! big with a mapping of its own, but as soon as one such block is freed it raises that threshold
//! (up to 32 MiB) and serves later ones from its heap instead. There a freed segment's written pages
//! stay resident, the next segment to reuse the block counts all of them again, and with 20,000
//! device filters rotating their segments the broker's RSS crept up for as long as it ran
//! (RELIABILITY.md "Soak"). Pinning the threshold at glibc's own starting value keeps every such
//! block a mapping of its own: pages never written are never resident, and a freed block goes
//! straight back to the system.
//!
//! Smaller blocks stay in glibc's heap, and glibc gives a freed block's pages back only where they
//! reach the top of the heap. rumqttd reserves about 200 KiB per connection in blocks under the
//! threshold (its 200-packet buffers), of which an idle connection writes little. When every
//! device drops and reconnects at once, the new connections' blocks reuse the heap the old
//! connections, and everything else freed meanwhile, had written: resident from the start. Each
//! reconnect storm left the broker about 500 MiB larger (RELIABILITY.md "Soak"). So the broker
//! also trims the heap now and then ([`spawn_heap_trimmer`]): `malloc_trim` hands the pages of
//! every free block back to the system, in every arena.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// glibc's starting mmap threshold; a value set explicitly is never raised by glibc.
pub const MMAP_THRESHOLD_BYTES: usize = 128 * 1024;

/// Pins glibc's mmap threshold for this process (see the module comment). Returns whether the
/// setting took effect; `false` where the C library is not glibc.
pub fn pin_mmap_threshold() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes an allocator parameter; any thread may call it at any time.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES as libc::c_int) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Hands the pages of free heap blocks back to the system (`malloc_trim(0)`, every arena).
/// Returns whether any were; `false` where the C library is not glibc.
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes each arena's lock itself; any thread may call it at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims the heap every `interval` on a thread of its own, timing each trim
/// (`offsite_broker_heap_trim_seconds`). A trim holds each arena's lock while it walks that arena's
/// free blocks: milliseconds on a broker of 10,000 devices (RELIABILITY.md "Soak").
pub fn spawn_heap_trimmer(interval: Duration) -> Result<()> {
    std::thread::Builder::new()
        .name("offsite-heap-trim".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let started = Instant::now();
            let released = trim_heap();
            let took = started.elapsed();
            crate::metrics::heap_trimmed(took, released);
            tracing::debug!(
                took_ms = took.as_secs_f64() * 1000.0,
                released,
                "heap trimmed"
            );
        })
        .context("starting the heap trim thread")?;
    Ok(())
}
