//! The process's allocator, tuned for a long-running service whose heap is mostly one index.
//!
//! glibc's malloc makes up to eight arenas per core, and each keeps the memory its thread freed;
//! a relist of ten thousand Jobs leaves most of its garbage behind in them. Two arenas are
//! enough for a service that spends its time waiting on the network, and after a relist the
//! freed pages go back to the kernel. With any other C library these do nothing.

/// Arenas when the environment does not say (`MALLOC_ARENA_MAX` wins when set).
const ARENAS: i32 = 2;

/// Call once, first thing in `main`, before any thread starts.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        glibc::set_arena_max(ARENAS);
    }
}

/// Gives the heap's free pages back to the kernel; cheap enough after a relist, not per event.
pub fn release_free_memory() {
    glibc::trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// From glibc's malloc.h.
    const M_ARENA_MAX: i32 = -8;

    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }

    pub fn set_arena_max(arenas: i32) {
        // SAFETY: mallopt only changes a tuning parameter of the allocator.
        unsafe {
            mallopt(M_ARENA_MAX, arenas);
        }
    }

    pub fn trim() {
        // SAFETY: malloc_trim only returns free memory to the kernel; it takes the arenas' locks.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub fn set_arena_max(_: i32) {}
    pub fn trim() {}
}
