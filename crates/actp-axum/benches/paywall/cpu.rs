//! The CPU clocks the bench reads (`clock_gettime`), to the nanosecond.

use std::time::Duration;

/// CPU time this process has used (user and system, every thread), to the nanosecond.
pub(crate) fn cpu_time() -> Duration {
    clock(rustix::time::ClockId::ProcessCPUTime)
}

/// CPU time the calling thread has used, to the nanosecond.
pub(crate) fn thread_cpu_time() -> Duration {
    clock(rustix::time::ClockId::ThreadCPUTime)
}

fn clock(id: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(id);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}
