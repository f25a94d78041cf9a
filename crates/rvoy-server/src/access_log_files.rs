//! Access log files (and stdout/stderr): buffered writes that never block a worker.
//!
//! Each log destination has one buffer per writing thread; a worker appends a
//! line under its own (uncontended) lock. A flush thread moves the buffers to
//! the file every `--file-flush-interval-msec`, or sooner once a buffer holds
//! `--file-flush-min-size-kb`. When a buffer grows past its cap (the disk
//! cannot keep up) lines are dropped and counted, never waited for. SIGUSR1
//! reopens every file, as Envoy does for log rotation.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use rvoy_http::LogSink;
use rvoy_model::access_log::Sink;

/// Most bytes buffered per destination before lines are dropped.
const MAX_BUFFERED: usize = 64 * 1024 * 1024;
/// Per-thread buffers kept per destination (threads map onto them by id).
const SLOTS: usize = 64;

enum Target {
    Stdout,
    Stderr,
    File { path: PathBuf, file: Option<File> },
}

/// One log destination.
pub struct LogFile {
    name: String,
    slots: Vec<Mutex<Vec<u8>>>,
    target: Mutex<Target>,
    min_flush: usize,
    wake: Arc<(Mutex<bool>, Condvar)>,
    /// Lines dropped because the destination fell behind.
    pub dropped: AtomicU64,
    /// Write errors (the disk is full, the file went away...).
    pub write_failed: AtomicU64,
    pub written: AtomicU64,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile").field("name", &self.name).finish()
    }
}

thread_local! {
    static SLOT: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SLOTS
    };
}

impl LogSink for LogFile {
    fn write_line(&self, line: &[u8]) {
        let slot = SLOT.with(|s| *s);
        let mut buf = match self.slots[slot].lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        if buf.len() + line.len() > MAX_BUFFERED {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        buf.extend_from_slice(line);
        let full = buf.len() >= self.min_flush;
        drop(buf);
        if full {
            let (lock, cv) = &*self.wake;
            if let Ok(mut w) = lock.lock() {
                *w = true;
                cv.notify_one();
            }
        }
    }
}

impl LogFile {
    fn flush(&self) {
        let mut pending = Vec::new();
        for slot in &self.slots {
            let mut buf = match slot.lock() {
                Ok(b) => b,
                Err(p) => p.into_inner(),
            };
            if !buf.is_empty() {
                pending.extend_from_slice(&buf);
                buf.clear();
                if buf.capacity() > 1024 * 1024 {
                    buf.shrink_to(64 * 1024);
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        let mut target = match self.target.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let result = match &mut *target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&pending).and_then(|()| out.flush())
            }
            Target::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(&pending).and_then(|()| err.flush())
            }
            Target::File { path, file } => {
                if file.is_none() {
                    *file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&*path)
                        .ok();
                }
                match file {
                    Some(f) => f.write_all(&pending),
                    None => Err(std::io::ErrorKind::NotFound.into()),
                }
            }
        };
        match result {
            Ok(()) => {
                self.written
                    .fetch_add(pending.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.write_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn reopen(&self) {
        let mut target = match self.target.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        if let Target::File { file, .. } = &mut *target {
            *file = None;
        }
    }
}

/// Every log destination of the process, with the flush thread.
pub struct AccessLogFiles {
    files: Mutex<HashMap<Sink, Arc<LogFile>>>,
    interval: Duration,
    min_flush: usize,
    wake: Arc<(Mutex<bool>, Condvar)>,
    stop: AtomicBool,
}

impl std::fmt::Debug for AccessLogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogFiles").finish()
    }
}

impl AccessLogFiles {
    /// Starts the flush thread.
    pub fn start(interval: Duration, min_flush_kb: u32) -> Arc<Self> {
        let this = Arc::new(AccessLogFiles {
            files: Mutex::new(HashMap::new()),
            interval: interval.max(Duration::from_millis(1)),
            min_flush: (min_flush_kb as usize).max(1) * 1024,
            wake: Arc::new((Mutex::new(false), Condvar::new())),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&this);
        let wake = this.wake.clone();
        let interval = this.interval;
        let spawned = thread::Builder::new()
            .name("access_log".to_owned())
            .spawn(move || {
                loop {
                    {
                        let (lock, cv) = &*wake;
                        let guard = match lock.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        let (mut g, _) = match cv.wait_timeout_while(guard, interval, |w| !*w) {
                            Ok(r) => r,
                            Err(p) => p.into_inner(),
                        };
                        *g = false;
                    }
                    let Some(files) = weak.upgrade() else { break };
                    files.flush_all();
                    if files.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            });
        if spawned.is_err() {
            rvoy_log::error!(
                rvoy_log::Component::Main,
                "unable to start the access log flush thread"
            );
        }
        this
    }

    /// The destination for `sink`, opening it on first use.
    pub fn open(&self, sink: &Sink) -> Result<Arc<LogFile>, String> {
        let mut files = match self.files.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        if let Some(f) = files.get(sink) {
            return Ok(f.clone());
        }
        let (name, target) = match sink {
            Sink::Stdout => ("/dev/stdout".to_owned(), Target::Stdout),
            Sink::Stderr => ("/dev/stderr".to_owned(), Target::Stderr),
            Sink::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("unable to open file '{}': {e}", path.display()))?;
                (
                    path.display().to_string(),
                    Target::File {
                        path: path.clone(),
                        file: Some(file),
                    },
                )
            }
        };
        let f = Arc::new(LogFile {
            name,
            slots: (0..SLOTS).map(|_| Mutex::new(Vec::new())).collect(),
            target: Mutex::new(target),
            min_flush: self.min_flush,
            wake: self.wake.clone(),
            dropped: AtomicU64::new(0),
            write_failed: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        files.insert(sink.clone(), f.clone());
        Ok(f)
    }

    /// Writes everything buffered now.
    pub fn flush_all(&self) {
        let files: Vec<Arc<LogFile>> = match self.files.lock() {
            Ok(f) => f.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        for f in files {
            f.flush();
        }
    }

    /// Reopens every file (SIGUSR1).
    pub fn reopen_all(&self) {
        self.flush_all();
        if let Ok(files) = self.files.lock() {
            for f in files.values() {
                f.reopen();
            }
        }
    }

    /// Flushes and stops the flush thread.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.flush_all();
        let (lock, cv) = &*self.wake;
        if let Ok(mut w) = lock.lock() {
            *w = true;
            cv.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_lines_reach_the_file() {
        let dir = std::env::temp_dir().join(format!("rvoy-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.log");
        let files = AccessLogFiles::start(Duration::from_millis(10), 64);
        let f = files.open(&Sink::File(path.clone())).expect("open");
        f.write_line(b"one\n");
        f.write_line(b"two\n");
        files.flush_all();
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\ntwo\n");
        files.shutdown();
    }
}
