//! A run's progress told to Python: `callback(event, n, text)` with event "start"
//! (n items, text their unit), "advance" (n more done), "note" (text), "finish".
//! The run stops after the batch in flight on Ctrl-C or when the callback raises;
//! that exception is then raised.
//!
//! Python runs signal handlers on its main thread only, so the run (on another
//! thread) asks that thread before every batch whether a signal came: a Ctrl-C
//! that arrived before the question (during the batch, or from the callback of the
//! batch before) stops the run there, whatever the machine's speed.

use neuronpath::progress::Progress;
use pyo3::prelude::*;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

pub struct PyProgress {
    callback: Option<Py<PyAny>>,
    raised: Mutex<Option<PyErr>>,
    /// While [`PyProgress::watch`] runs: how the run asks the watching thread to check
    /// for signals.
    watcher: Mutex<Option<mpsc::Sender<Ask>>>,
}

/// What the run tells the watching thread.
enum Ask {
    /// Check for signals now, then answer.
    Check(mpsc::Sender<()>),
    /// The run is over.
    Done,
}

impl PyProgress {
    pub fn new(callback: Option<Py<PyAny>>) -> PyProgress {
        PyProgress {
            callback,
            raised: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    fn keep(&self, e: PyErr) {
        self.raised.lock().expect("not poisoned").get_or_insert(e);
    }

    fn call(&self, event: &str, n: usize, text: &str) {
        if let Some(callback) = &self.callback {
            Python::attach(|py| {
                if let Err(e) = callback.call1(py, (event, n, text)) {
                    self.keep(e);
                }
            });
        }
    }

    /// Tells `notes` (what an image set left out or assumed), each as a note.
    pub fn notes(&self, notes: &[String]) {
        for note in notes {
            self.note(&format!("note: {note}"));
        }
    }

    /// Runs `job` without the GIL on a thread of rayon's pool, so that its parallel
    /// work runs in the pool as the CLI's does (not handed over op by op), while this
    /// thread, the one Python delivers signals to, checks for Ctrl-C when the run
    /// asks (before every batch) and every 50 ms.
    pub fn watch<T: Send>(&self, py: Python<'_>, job: impl FnOnce() -> T + Send) -> T {
        py.detach(|| {
            std::thread::scope(|s| {
                let (asks, asked) = mpsc::channel();
                *self.watcher.lock().expect("not poisoned") = Some(asks.clone());
                let worker = s.spawn(move || {
                    let result = rayon::scope(|_| job());
                    let _ = asks.send(Ask::Done);
                    result
                });
                loop {
                    match asked.recv_timeout(Duration::from_millis(50)) {
                        Ok(Ask::Check(answer)) => {
                            self.check_signals();
                            let _ = answer.send(());
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) if !worker.is_finished() => {
                            self.check_signals()
                        }
                        _ => break,
                    }
                }
                *self.watcher.lock().expect("not poisoned") = None;
                worker.join().expect("the run does not panic")
            })
        })
    }

    /// Runs Python's signal handlers (on the thread Python delivers signals to); the
    /// exception one raises (KeyboardInterrupt) stops the run.
    fn check_signals(&self) {
        Python::attach(|py| py.check_signals().map_err(|e| self.keep(e))).ok();
    }

    /// Has the watching thread check for signals, and waits until it has (nothing
    /// to do outside [`PyProgress::watch`]).
    fn ask_for_signals(&self) {
        let watcher = self.watcher.lock().expect("not poisoned").clone();
        if let Some(watcher) = watcher {
            let (answer, answered) = mpsc::channel();
            if watcher.send(Ask::Check(answer)).is_ok() {
                let _ = answered.recv();
            }
        }
    }

    /// The run's result, or the exception (KeyboardInterrupt, the callback's) that stopped it.
    pub fn result<T>(self, result: anyhow::Result<T>) -> PyResult<T> {
        match self.raised.into_inner().expect("not poisoned") {
            Some(e) => Err(e),
            None => result.map_err(crate::to_py),
        }
    }
}

impl Progress for PyProgress {
    fn start(&self, total: usize, unit: &str) {
        self.call("start", total, unit);
    }

    fn advance(&self, n: usize) {
        self.call("advance", n, "");
    }

    fn note(&self, message: &str) {
        self.call("note", 0, message);
    }

    fn stopped(&self) -> bool {
        self.ask_for_signals();
        self.raised.lock().expect("not poisoned").is_some()
    }

    fn finish(&self) {
        self.call("finish", 0, "");
    }
}
