//! The container's log in Docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"RFC 3339 with nanoseconds"}`, in
//! `<root>/containers/<id>/<id>-json.log`. The monitor is its only writer.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Longest line kept whole; longer output is logged in pieces of this size, as Docker does.
const MAX_LINE: usize = 16 * 1024;

/// Which output of the container a piece of log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Serialize)]
struct EntryOut<'a> {
    log: &'a str,
    stream: &'a str,
    time: String,
}

/// One line of the log as read back.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: DateTime<Utc>,
}

/// Appends the container's output to its log, a line an entry.
pub struct Writer {
    file: File,
    partial: [Vec<u8>; 2],
}

impl Writer {
    pub fn open(path: &Path) -> std::io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Writer {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Logs `data`: each complete line becomes an entry; a trailing partial line waits
    /// for its end (or for [`Writer::flush_partial`]).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let now = Utc::now();
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            for piece in buf[start..end].chunks(MAX_LINE) {
                entry(&mut out, stream, piece, now);
            }
            start = end;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            entry(&mut out, stream, &rest, now);
            rest = tail;
        }
        self.partial[idx] = rest;
        if out.is_empty() {
            return Ok(());
        }
        self.file.write_all(&out)
    }

    /// Logs what is left of unfinished lines (when the container's output closes).
    pub fn flush_partial(&mut self) -> std::io::Result<()> {
        let now = Utc::now();
        let mut out = Vec::new();
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let rest = std::mem::take(&mut self.partial[i]);
            if !rest.is_empty() {
                entry(&mut out, stream, &rest, now);
            }
        }
        self.file.write_all(&out)
    }
}

fn entry(out: &mut Vec<u8>, stream: Stream, text: &[u8], time: DateTime<Utc>) {
    let e = EntryOut {
        log: &String::from_utf8_lossy(text),
        stream: stream.as_str(),
        time: time.to_rfc3339_opts(SecondsFormat::Nanos, true),
    };
    serde_json::to_writer(&mut *out, &e).expect("a log entry always serialises");
    out.push(b'\n');
}

/// Reads the log from a position on, entry by entry; remembers where it stopped so a
/// follower can read what comes next. A line still being written is left for later.
pub struct Reader {
    reader: BufReader<File>,
    pos: u64,
}

impl Reader {
    pub fn open(path: &Path) -> std::io::Result<Reader> {
        Ok(Reader {
            reader: BufReader::new(File::open(path)?),
            pos: 0,
        })
    }

    /// The complete entries written since the last call.
    pub fn read_new(&mut self) -> std::io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                // Not complete yet: go back and read it whole next time.
                self.reader.seek(SeekFrom::Start(self.pos))?;
                break;
            }
            self.pos += n as u64;
            if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc-json.log");
        let mut w = Writer::open(&p).unwrap();
        w.write(Stream::Stdout, b"hello\nwor").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        let mut r = Reader::open(&p).unwrap();
        let got = r.read_new().unwrap();
        assert_eq!(
            got.iter()
                .map(|e| (e.log.as_str(), e.stream.as_str()))
                .collect::<Vec<_>>(),
            [("hello\n", "stdout"), ("oops\n", "stderr")]
        );
        w.write(Stream::Stdout, b"ld\n").unwrap();
        w.write(Stream::Stdout, b"no newline").unwrap();
        w.flush_partial().unwrap();
        let got = r.read_new().unwrap();
        assert_eq!(
            got.iter().map(|e| e.log.as_str()).collect::<Vec<_>>(),
            ["world\n", "no newline"]
        );
        assert!(r.read_new().unwrap().is_empty());
        // Docker's shape, field for field.
        let first = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["log"], "hello\n");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn long_lines_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x-json.log");
        let mut w = Writer::open(&p).unwrap();
        w.write(Stream::Stdout, &vec![b'a'; MAX_LINE * 2 + 10])
            .unwrap();
        let mut r = Reader::open(&p).unwrap();
        assert_eq!(r.read_new().unwrap().len(), 2);
        w.flush_partial().unwrap();
        assert_eq!(r.read_new().unwrap()[0].log.len(), 10);
    }
}
