//! runc's logging: with `--log FILE`, lines in logrus's text or JSON format go to the file
//! (podman and containerd read the last error from it); errors always reach stderr too.

use std::io::Write;
use std::path::Path;

use super::LogFormat;

pub struct Logger {
    file: Option<std::fs::File>,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    pub fn new(path: Option<&Path>, format: LogFormat, debug: bool) -> Logger {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| eprintln!("rbox-runc: cannot open log file {}: {e}", p.display()))
                .ok()
        });
        Logger {
            file,
            format,
            debug,
        }
    }

    fn line(&self, level: &str, msg: &str) -> String {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        match self.format {
            LogFormat::Json => {
                let v = serde_json::json!({"level": level, "msg": msg, "time": time});
                format!("{v}\n")
            }
            LogFormat::Text => {
                format!("time={time:?} level={level} msg={msg:?}\n")
            }
        }
    }

    fn write(&self, level: &str, msg: &str) {
        if let Some(mut f) = self.file.as_ref() {
            let _ = f.write_all(self.line(level, msg).as_bytes());
        }
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
            if self.file.is_none() {
                eprint!("{}", self.line("debug", msg));
            }
        }
    }

    /// An error: to the log file, and as one plain line on stderr (what conmon relays).
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
        eprintln!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_what_podman_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let l = Logger::new(Some(&path), LogFormat::Json, false);
        l.debug("hidden");
        l.error("container \"x\" does not exist");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_lines_are_logrus_style() {
        let l = Logger::new(None, LogFormat::Text, true);
        let line = l.line("error", "a \"b\"");
        assert!(line.starts_with("time=\""), "{line}");
        assert!(
            line.ends_with(" level=error msg=\"a \\\"b\\\"\"\n"),
            "{line}"
        );
    }
}
