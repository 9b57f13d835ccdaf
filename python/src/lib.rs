//! `neuronpath._native`: the Python package's binding of the neuronpath library (a
//! thin layer: the runs themselves live in `neuronpath::jobs`). Records cross as
//! JSON text (exactly the command line's JSON lines), arrays as numpy arrays.

mod arrays;
mod experiments;
mod model;
mod options;
mod progress;
mod roles;

use pyo3::prelude::*;

pyo3::create_exception!(
    _native,
    NeuronpathError,
    pyo3::exceptions::PyValueError,
    "An error of neuronpath, with the command line's message (naming the file, tensor or image)."
);

/// The library's error as a Python exception, with the CLI's message.
fn to_py(e: anyhow::Error) -> PyErr {
    NeuronpathError::new_err(format!("{e:#}"))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // As the CLI does: freed activation buffers stay in the heap (glibc would map and
    // zero-fault them afresh on every pass); the process keeps up to 1 GiB free heap.
    neuronpath::model::reuse_freed_buffers();
    m.add("NeuronpathError", m.py().get_type::<NeuronpathError>())?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(model::devices, m)?)?;
    m.add_function(wrap_pyfunction!(experiments::manipulate, m)?)?;
    m.add_function(wrap_pyfunction!(experiments::summarize, m)?)?;
    m.add_function(wrap_pyfunction!(experiments::stats, m)?)?;
    m.add_function(wrap_pyfunction!(experiments::report, m)?)?;
    m.add_function(wrap_pyfunction!(roles::neurons, m)?)?;
    Ok(())
}
