//! Finding a trial's processes through /proc when neither a pid namespace nor a cgroup
//! holds them: members of the trial's session, and processes started after the trial
//! whose environment carries the trial's marker (a double-forked daemon that called
//! `setsid` keeps its environment). Also counts a user's tasks for `RLIMIT_NPROC`.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The fields of /proc/<pid>/stat we use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) session: i32,
    pub(crate) pgrp: i32,
    pub(crate) start_ticks: u64,
    pub(crate) threads: u64,
    pub(crate) zombie: bool,
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `fields[0]` is field 3 (state).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        zombie: fields.first().is_some_and(|state| *state == "Z" || *state == "X"),
        pgrp: field(5)? as i32,
        session: field(6)? as i32,
        threads: field(20)?,
        start_ticks: field(22)?,
    })
}

fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse().ok()).collect()
}

/// Live processes of the trial whose leader (and session id) is `leader`.
pub(crate) fn trial_processes(leader: i32, marker: &[u8], since_ticks: u64) -> Vec<i32> {
    let finder = memchr::memmem::Finder::new(marker);
    let own = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != own)
        .filter(|&pid| {
            let Some(stat) = stat(pid) else { return false };
            if stat.zombie || stat.start_ticks < since_ticks {
                return false;
            }
            if stat.session == leader || stat.pgrp == leader {
                return true;
            }
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| finder.find(&environ).is_some())
        })
        .collect()
}

/// SIGKILLs the trial's processes until none is found; returns how many were killed.
pub(crate) async fn kill_trial_processes(leader: i32, marker: &[u8], since_ticks: u64) -> usize {
    let mut killed = HashSet::new();
    for round in 0..100 {
        let found = trial_processes(leader, marker, since_ticks);
        if found.is_empty() {
            break;
        }
        for pid in found {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        tokio::time::sleep(Duration::from_millis(if round < 10 { 1 } else { 10 })).await;
    }
    killed.len()
}

/// Waits (up to 2 s) until process `pid`, started at or after `since_ticks`, has exited.
pub(crate) async fn wait_gone(pid: i32, since_ticks: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        match stat(pid) {
            Some(stat) if !stat.zombie && stat.start_ticks >= since_ticks => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Gone, a zombie, or the pid already reused by an older-looking process.
            _ => return,
        }
    }
}

/// Tasks (threads) the real user `uid` runs now: what `RLIMIT_NPROC` counts.
pub(crate) fn user_tasks(uid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    all_pids()
        .into_iter()
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|meta| meta.uid() == uid))
        .filter_map(|pid| stat(pid).map(|stat| stat.threads))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_parse_stat_with_odd_names() {
        let text = "1234 (a) b (c)) S 1 1200 1100 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 1000 10 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pgrp, 1200);
        assert_eq!(stat.session, 1100);
        assert_eq!(stat.threads, 3);
        assert_eq!(stat.start_ticks, 98765);
        assert!(!stat.zombie);
    }
}
