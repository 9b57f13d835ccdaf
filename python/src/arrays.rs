//! numpy where arrays cross, and only there: the package imports and runs on
//! folders and files without numpy; an array argument or result without it is a
//! `NeuronpathError` saying to install it, never a panic (the numpy crate panics
//! when it cannot reach numpy's C API, so nothing here touches an array type before
//! numpy is known to be there).

use crate::to_py;
use neuronpath::model::Vit;
use numpy::{PyReadonlyArray4, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyModule;

/// Errors unless numpy can be imported: `what` (a function, an input) needs it.
pub fn need_numpy(py: Python<'_>, what: &str) -> PyResult<()> {
    match py.import("numpy") {
        Ok(_) => Ok(()),
        Err(e) => Err(to_py(anyhow::anyhow!(
            "{what} needs numpy, which cannot be imported ({e}): pip install numpy"
        ))),
    }
}

/// Whether numpy is imported already (`sys.modules` holds it): until then no value
/// can be a numpy array, and nothing imports numpy to find out.
fn numpy_loaded(py: Python<'_>) -> bool {
    let numpy = py
        .import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|modules| modules.get_item("numpy"));
    numpy.is_ok_and(|m| m.is_instance_of::<PyModule>())
}

/// `images` as a `[N, 3, H, W]` float32 numpy array, when it is a numpy array (an
/// error when it is one of another dimension or type); none when it is none (a
/// folder, a file, a list of files, or anything else).
pub fn array_in<'py>(images: &Bound<'py, PyAny>) -> PyResult<Option<PyReadonlyArray4<'py, f32>>> {
    if !numpy_loaded(images.py()) {
        return Ok(None);
    }
    let Ok(array) = images.cast::<PyUntypedArray>() else {
        return Ok(None);
    };
    match images.extract() {
        Ok(pixels) => Ok(Some(pixels)),
        Err(_) => Err(to_py(anyhow::anyhow!(
            "pixels of shape {:?} and type {}: a [N, 3, H, W] float32 array is wanted",
            array.shape(),
            array.dtype()
        ))),
    }
}

/// `pixels`, the argument of `what`, as a `[N, 3, H, W]` float32 numpy array.
pub fn array_arg<'py>(
    pixels: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArray4<'py, f32>> {
    need_numpy(pixels.py(), what)?;
    array_in(pixels)?.ok_or_else(|| {
        to_py(anyhow::anyhow!(
            "{what}: pixels must be a [N, 3, H, W] float32 numpy array"
        ))
    })
}

/// Checks `pixels` as `[N, 3, size, size]` for `vit`, in place: its data, C-contiguous.
pub fn pixels_of<'a>(vit: &Vit, pixels: &'a PyReadonlyArray4<'_, f32>) -> PyResult<&'a [f32]> {
    let size = vit.config.image_size;
    let shape = pixels.shape();
    if shape[1..] != [3, size, size] {
        return Err(to_py(anyhow::anyhow!(
            "pixels of shape {shape:?}: the model takes [N, 3, {size}, {size}] (normalised)"
        )));
    }
    pixels.as_slice().map_err(|e| {
        to_py(anyhow::anyhow!(
            "pixels: {e} (pass a C-contiguous float32 array)"
        ))
    })
}

pub fn shape_error(e: numpy::ndarray::ShapeError) -> PyErr {
    to_py(anyhow::anyhow!("array shape: {e}"))
}
