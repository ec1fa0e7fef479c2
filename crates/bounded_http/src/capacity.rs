//! How many connections a process can hold. Each is a file descriptor, and processes often
//! start with a soft open-files limit of 1,024 while the hard limit is far higher (Postgres'
//! are started so here): a server raises its own soft limit to the hard one, and keeps its
//! connection cap under what is left after the files the rest of the process may open.

/// Descriptors kept for everything but connections: the server's own sockets and pipes, on
/// top of the files the rest of the process may open.
const SPARE_DESCRIPTORS: u64 = 64;

/// The open-files limit before and after raising the soft limit to the hard one.
pub struct OpenFiles {
    pub before: u64,
    pub now: u64,
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (a process may, without
/// privileges). On failure the limit stays as it was.
pub fn raise_open_files_limit() -> OpenFiles {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return OpenFiles { before: 1024, now: 1024 };
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    OpenFiles { before, now: limit.rlim_cur }
}

/// The connection cap: the setting, but never more than the descriptors left once
/// `other_files` (a Postgres backend's `max_files_per_process`) and a spare few are set aside
/// (at least 1).
pub fn connection_cap(setting: u64, open_files_limit: u64, other_files: u64) -> u64 {
    let available = open_files_limit.saturating_sub(other_files + SPARE_DESCRIPTORS);
    setting.min(available).max(1)
}

#[cfg(test)]
mod tests {
    use super::connection_cap;

    #[test]
    fn the_cap_stays_under_the_descriptors_left() {
        assert_eq!(connection_cap(4096, 20_000, 1000), 4096);
        assert_eq!(connection_cap(50_000, 20_000, 1000), 20_000 - 1000 - 64);
        assert_eq!(connection_cap(4096, 1024, 1000), 1);
        assert_eq!(connection_cap(4096, 1024, 100), 1024 - 100 - 64);
    }
}
