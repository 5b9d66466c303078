//! Reporting a pull as it goes: a bar per layer on a terminal, Docker's plain lines
//! otherwise. The store only emits [`PullEvent`]s; how they show is up to the caller.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;
use crate::reference::Reference;

/// The state of one layer during a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Already in the store: nothing to fetch.
    AlreadyExists,
    /// Queued for download.
    Waiting,
    /// A partial download is continued from this byte.
    Resuming {
        from: u64,
    },
    Downloading {
        done: u64,
        total: u64,
    },
    Verifying,
    DownloadComplete,
    Extracting,
    PullComplete,
}

/// Something a pull reports.
#[derive(Debug, Clone, Copy)]
pub enum PullEvent<'a> {
    /// About to ask the registry for `reference`.
    Resolving { reference: &'a Reference },
    /// A layer (by its blob digest) changed state.
    Layer {
        digest: &'a Digest,
        state: LayerState,
    },
    /// The pull finished: `digest` is what the reference points to; `updated` tells
    /// whether anything new arrived or the name moved.
    Done {
        reference: &'a Reference,
        digest: &'a Digest,
        updated: bool,
    },
}

/// Receives a pull's events (from the pulling thread).
pub trait Progress: Sync {
    fn event(&self, event: PullEvent<'_>);
}

/// Ignores every event.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: PullEvent<'_>) {}
}

/// Where [`ConsoleProgress`] writes.
#[derive(Debug, Clone, Copy)]
pub enum Console {
    Stdout,
    Stderr,
}

/// Docker-style progress on stdout or stderr: bars on a terminal, lines otherwise.
pub struct ConsoleProgress {
    console: Console,
    bars: Option<(MultiProgress, Mutex<HashMap<Digest, ProgressBar>>)>,
}

impl ConsoleProgress {
    pub fn new(console: Console) -> ConsoleProgress {
        let tty = match console {
            Console::Stdout => std::io::stdout().is_terminal(),
            Console::Stderr => std::io::stderr().is_terminal(),
        };
        let bars = tty.then(|| {
            let target = match console {
                Console::Stdout => ProgressDrawTarget::stdout(),
                Console::Stderr => ProgressDrawTarget::stderr(),
            };
            (
                MultiProgress::with_draw_target(target),
                Mutex::new(HashMap::new()),
            )
        });
        ConsoleProgress { console, bars }
    }

    fn line(&self, text: &str) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.println(text);
            return;
        }
        let _ = match self.console {
            Console::Stdout => writeln!(std::io::stdout(), "{text}"),
            Console::Stderr => writeln!(std::io::stderr(), "{text}"),
        };
    }

    fn bar(&self, digest: &Digest, state: LayerState) {
        let Some((multi, bars)) = &self.bars else {
            return;
        };
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(digest.clone()).or_insert_with(|| {
            // A plain line until the size is known, then a bar.
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("valid template"));
            bar.set_prefix(digest.short().to_string());
            bar
        });
        match state {
            LayerState::Downloading { done, total } => {
                if bar.length() != Some(total) {
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {msg:20} {bar:30} {bytes}/{total_bytes}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_length(total);
                }
                bar.set_position(done);
                bar.set_message("Downloading");
            }
            LayerState::AlreadyExists | LayerState::PullComplete => {
                bar.finish_with_message(message(state));
            }
            _ => bar.set_message(message(state)),
        }
    }
}

fn message(state: LayerState) -> String {
    match state {
        LayerState::AlreadyExists => "Already exists".into(),
        LayerState::Waiting => "Pulling fs layer".into(),
        LayerState::Resuming { from } => format!("Resuming download at byte {from}"),
        LayerState::Downloading { .. } => "Downloading".into(),
        LayerState::Verifying => "Verifying Checksum".into(),
        LayerState::DownloadComplete => "Download complete".into(),
        LayerState::Extracting => "Extracting".into(),
        LayerState::PullComplete => "Pull complete".into(),
    }
}

impl Progress for ConsoleProgress {
    fn event(&self, event: PullEvent<'_>) {
        match event {
            PullEvent::Resolving { reference } => {
                let what = reference.tag().or(reference.digest()).unwrap_or("latest");
                self.line(&format!("{what}: Pulling from {}", reference.repository()));
            }
            PullEvent::Layer { digest, state } => {
                if self.bars.is_some() {
                    self.bar(digest, state);
                } else if !matches!(
                    state,
                    LayerState::Downloading { .. } | LayerState::Extracting
                ) {
                    self.line(&format!("{}: {}", digest.short(), message(state)));
                }
            }
            PullEvent::Done {
                reference,
                digest,
                updated,
            } => {
                self.line(&format!("Digest: {digest}"));
                let name = match reference.tag() {
                    Some(t) => format!("{}:{t}", reference.familiar_name()),
                    None => format!("{}@{digest}", reference.familiar_name()),
                };
                if updated {
                    self.line(&format!("Status: Downloaded newer image for {name}"));
                } else {
                    self.line(&format!("Status: Image is up to date for {name}"));
                }
            }
        }
    }
}
