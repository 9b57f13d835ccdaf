//! A run's progress told to Python: `callback(event, n, text)` with event "start"
//! (n items, text their unit), "advance" (n more done), "note" (text), "finish".
//! The run stops after the batch in flight on Ctrl-C or when the callback raises;
//! that exception is then raised.

use neuronpath::progress::Progress;
use pyo3::prelude::*;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

pub struct PyProgress {
    callback: Option<Py<PyAny>>,
    raised: Mutex<Option<PyErr>>,
}

impl PyProgress {
    pub fn new(callback: Option<Py<PyAny>>) -> PyProgress {
        PyProgress {
            callback,
            raised: Mutex::new(None),
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
    /// thread, the one Python delivers signals to, checks for Ctrl-C every 50 ms.
    pub fn watch<T: Send>(&self, py: Python<'_>, job: impl FnOnce() -> T + Send) -> T {
        py.detach(|| {
            std::thread::scope(|s| {
                let (done, finished) = mpsc::channel();
                let worker = s.spawn(move || {
                    let result = rayon::scope(|_| job());
                    let _ = done.send(());
                    result
                });
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    finished.recv_timeout(Duration::from_millis(50))
                {
                    Python::attach(|py| py.check_signals().map_err(|e| self.keep(e))).ok();
                }
                worker.join().expect("the run does not panic")
            })
        })
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
        self.raised.lock().expect("not poisoned").is_some()
    }

    fn finish(&self) {
        self.call("finish", 0, "");
    }
}
