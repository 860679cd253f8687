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
