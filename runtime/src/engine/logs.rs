//! `rbox logs`: the container's json-file log printed back, its tail, since a time, and
//! followed (inotify on the file and a pidfd on the monitor: no polling) until the
//! container stops.

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use chrono::{DateTime, SecondsFormat, Utc};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::error::{Error, Result};
use super::logfile::{self, Entry};
use super::options::InvalidOption;
use super::{Engine, lifecycle};

#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
}

/// `--tail`: `all` or a number of lines.
pub fn parse_tail(text: &str) -> std::result::Result<Option<usize>, InvalidOption> {
    if text == "all" || text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        InvalidOption(format!(
            "invalid --tail {text:?}: give a number of lines or \"all\""
        ))
    })
}

/// `--since`: RFC 3339, Unix seconds, or a duration back from `now` (`90s`, `10m`, `2h`).
pub fn parse_since(
    text: &str,
    now: DateTime<Utc>,
) -> std::result::Result<DateTime<Utc>, InvalidOption> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = text.parse::<f64>() {
        return DateTime::from_timestamp(
            (secs * 1e9) as i64 / 1_000_000_000,
            ((secs.fract() * 1e9) as u32).min(999_999_999),
        )
        .ok_or_else(|| InvalidOption(format!("invalid --since {text:?}")));
    }
    let mut total = 0i64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number
            .parse()
            .map_err(|_| InvalidOption(format!("invalid --since {text:?}")))?;
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => {
                return Err(InvalidOption(format!(
                    "invalid --since {text:?}: use RFC 3339, Unix seconds or a duration like 10m"
                )));
            }
        };
    }
    if !number.is_empty() || total == 0 && text.is_empty() {
        return Err(InvalidOption(format!(
            "invalid --since {text:?}: use RFC 3339, Unix seconds or a duration like 10m"
        )));
    }
    Ok(now - chrono::Duration::seconds(total))
}

fn print(entries: &[Entry], opts: &LogsOptions) {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for e in entries {
        if opts.since.is_some_and(|s| e.time < s) {
            continue;
        }
        let target: &mut dyn Write = if e.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if opts.timestamps {
            let _ = write!(
                target,
                "{} ",
                e.time.to_rfc3339_opts(SecondsFormat::Nanos, true)
            );
        }
        let _ = target.write_all(e.log.as_bytes());
    }
    let _ = out.flush();
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a descriptor we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Prints the log of container `id` as asked.
pub fn logs(engine: &Engine, id: &str, opts: &LogsOptions) -> Result<()> {
    let rec = lifecycle::refresh(engine, id)?;
    let path = engine.store.log_path(id);
    let mut reader = match logfile::Reader::open(&path) {
        Ok(r) => r,
        // Never started: nothing logged yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot read", &path)(e)),
    };
    // Watch before reading, so nothing written in between is missed.
    let watch = if opts.follow && rec.state.monitor_pid != 0 {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| Error::Runtime(format!("cannot follow the log: {e}")))?;
        inotify
            .add_watch(
                &path,
                AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE,
            )
            .map_err(|e| Error::Runtime(format!("cannot follow the log: {e}")))?;
        let monitor = pidfd_open(rec.state.monitor_pid);
        (monitor.is_some() && lifecycle::monitor_alive(engine, id)).then_some((inotify, monitor))
    } else {
        None
    };
    let mut entries = reader.read_new().map_err(Error::io("cannot read", &path))?;
    if let Some(n) = opts.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    print(&entries, opts);
    let Some((inotify, Some(monitor))) = watch else {
        return Ok(());
    };
    loop {
        let (changed, monitor_gone) = {
            let mut fds = [
                PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
                PollFd::new(monitor.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::Runtime(format!("cannot follow the log: {e}"))),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        let mut closed = false;
        if changed {
            while let Ok(events) = inotify.read_events() {
                closed |= events
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_CLOSE_WRITE));
            }
        }
        print(
            &reader.read_new().map_err(Error::io("cannot read", &path))?,
            opts,
        );
        // The monitor closes the log when the container's output has ended.
        if closed || monitor_gone {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("10m", now).unwrap(),
            now - chrono::Duration::minutes(10)
        );
        assert_eq!(
            parse_since("1h30s", now).unwrap(),
            now - chrono::Duration::seconds(3630)
        );
        assert_eq!(
            parse_since("2024-05-01T11:00:00Z", now).unwrap(),
            now - chrono::Duration::hours(1)
        );
        assert_eq!(
            parse_since("1714561200", now).unwrap(),
            now - chrono::Duration::hours(1)
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("10", now).is_ok());
        assert!(parse_since("10x", now).is_err());
    }

    #[test]
    fn tails() {
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("3").unwrap(), Some(3));
        assert!(parse_tail("-1").is_err());
    }
}
