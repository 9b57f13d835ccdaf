//! A run's progress told to Python: `callback(event, n, text)` with event "start"
//! (n items, text their unit), "advance" (n more done), "note" (text), "finish".
//! The run stops after the batch in flight on Ctrl-C (a signal seen while the GIL
//! is taken back) or when the callback raises; that exception is then raised.

use neuronpath::progress::Progress;
use pyo3::prelude::*;
use std::sync::Mutex;

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
        Python::attach(|py| {
            if let Err(e) = py.check_signals() {
                self.keep(e);
            }
        });
        self.raised.lock().expect("not poisoned").is_some()
    }

    fn finish(&self) {
        self.call("finish", 0, "");
    }
}
