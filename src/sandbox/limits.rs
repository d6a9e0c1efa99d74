//! Resource limits of one trial and their translation into `setrlimit` calls made in the
//! child between fork and exec.

use std::time::Duration;

use serde::Serialize;

/// What one trial may use. `None` leaves the host's own limit in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Wall-clock time before the whole trial is killed.
    pub timeout: Duration,
    /// Private writable memory per process (`RLIMIT_DATA`). `RLIMIT_AS` is not used: it
    /// counts address space reserved but never touched, which breaks Node, Go and Java.
    pub memory_bytes: Option<u64>,
    /// CPU seconds per process (`RLIMIT_CPU`, SIGXCPU when reached).
    pub cpu_seconds: Option<u64>,
    /// Largest file a process may write (`RLIMIT_FSIZE`, SIGXFSZ when exceeded).
    pub file_size_bytes: Option<u64>,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes (and threads) the trial may have at once: a pids cgroup where one can be
    /// made, else `RLIMIT_NPROC`, which does not bind root.
    pub processes: Option<u64>,
    /// Bytes kept of each of stdout and stderr (head and tail); a stream far past this
    /// (16 times) gets the trial killed.
    pub output_bytes: usize,
    /// Disk space the trial may add to its writable folders (its copy, scratch folder and
    /// the spec's writable paths), all files together; checked twice a second, the trial
    /// is killed past it.
    pub disk_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(120),
            memory_bytes: Some(2 << 30),
            cpu_seconds: Some(300),
            file_size_bytes: Some(256 << 20),
            open_files: Some(1024),
            processes: Some(256),
            output_bytes: 1 << 20,
            disk_bytes: Some(1 << 30),
        }
    }
}

/// How far past `output_bytes` a stream may go before the trial is killed.
pub(crate) const OUTPUT_FLOOD_FACTOR: u64 = 16;

/// One `setrlimit` call, prepared before fork.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimit {
    pub(crate) resource: libc::__rlimit_resource_t,
    pub(crate) value: u64,
}

impl Limits {
    /// The rlimits to set in the child. `nproc` is the `RLIMIT_NPROC` value to use, if any
    /// (the caller decides: it counts all of the user's processes, not just the trial's).
    pub(crate) fn rlimits(&self, nproc: Option<u64>) -> Vec<Rlimit> {
        let mut rlimits = Vec::new();
        let mut push = |resource, value: Option<u64>| {
            if let Some(value) = value {
                rlimits.push(Rlimit { resource, value });
            }
        };
        push(libc::RLIMIT_DATA, self.memory_bytes);
        push(libc::RLIMIT_CPU, self.cpu_seconds);
        push(libc::RLIMIT_FSIZE, self.file_size_bytes);
        push(libc::RLIMIT_NOFILE, self.open_files);
        push(libc::RLIMIT_NPROC, nproc);
        // A core dump of a crashed harness would be written into the private copy.
        push(libc::RLIMIT_CORE, Some(0));
        rlimits
    }
}

/// Sets `limit` as both soft and hard limit, never above the current hard limit (which an
/// unprivileged process may not raise). Async-signal-safe: runs between fork and exec.
pub(crate) fn apply(limit: Rlimit) -> std::io::Result<()> {
    let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a stack value.
    unsafe {
        if libc::getrlimit(limit.resource, &mut current) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let value = limit.value.min(current.rlim_max);
        let wanted = libc::rlimit { rlim_cur: value, rlim_max: value };
        if libc::setrlimit(limit.resource, &wanted) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Human size: "512 MiB", "2 GiB", "1000 bytes".
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
        if bytes >= unit {
            return format!("{:.1} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} bytes")
}

/// Human duration: "5s", "1.5s", "250ms".
pub(crate) fn human_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// Bytes allocated on disk by the files under `paths` (symlinks not followed).
pub(crate) fn disk_usage(paths: &[std::path::PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut pending: Vec<std::path::PathBuf> = paths.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir()
            && let Ok(listing) = std::fs::read_dir(&path)
        {
            pending.extend(listing.flatten().map(|e| e.path()));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_human_units() {
        assert_eq!(human_bytes(1 << 20), "1 MiB");
        assert_eq!(human_bytes(512 << 20), "512 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }
}
