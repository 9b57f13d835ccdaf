//! How a long run reports progress and learns that it should stop, without the
//! library knowing who listens: the CLI draws a progress bar, the Python package
//! calls back into a notebook (and stops on Ctrl-C).

/// A listener for a run over many items (images, usually). Every method has a
/// do-nothing default, so a listener implements only what it shows.
pub trait Progress: Sync {
    /// The run has `total` items to do (`unit` names them: "images").
    fn start(&self, _total: usize, _unit: &str) {}
    /// `n` more items are done (written, or skipped as failed).
    fn advance(&self, _n: usize) {}
    /// A message for the user that does not stop the run ("skipped x.jpg: ...").
    fn note(&self, _message: &str) {}
    /// True when the run should stop after the batch in flight; what is done so
    /// far is kept (written, and resumable).
    fn stopped(&self) -> bool {
        false
    }
    /// The run is over.
    fn finish(&self) {}
}

/// Shows nothing and never stops a run.
pub struct Silent;

impl Progress for Silent {}
