//! `neuronpath.load` and the model: its description, the clean forward pass, JAS
//! of any neurons, and the paths run (`neuronpath::jobs::paths`, as the CLI runs it).

use crate::arrays::{array_arg, array_in, need_numpy, pixels_of, shape_error};
use crate::options::{JasOptions, PathsOptions};
use crate::progress::PyProgress;
use crate::to_py;
use anyhow::{bail, Result};
use neuronpath::attribution::{Attributor, ImageContext, NeuronPath, Target};
use neuronpath::data::{self, labels::Labels, ImageEntry, ImageSet, Preset};
use neuronpath::jobs::paths::{check_resumed, Input, PathsJob, Sink};
use neuronpath::model::{FfnActivation, LoadOptions, Probe, Vit};
use neuronpath::names::Named;
use neuronpath::record::{PathRecord, Record, RecordFile};
use numpy::ndarray::Array;
use numpy::{IntoPyArray, PyArray2, PyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};

/// A loaded checkpoint (every layout the command line loads).
#[pyclass(module = "neuronpath._native")]
pub struct Model {
    pub(crate) vit: Vit,
    /// The checkpoint as given (records name it so).
    pub(crate) file: PathBuf,
}

/// Loads a checkpoint: a Hugging Face, timm or open_clip folder, a timm
/// .safetensors, a PyTorch .pth/.pt/.bin state dict, or a Google ViT .npz (see
/// `neuronpath inspect`), with the options of the command line's model flags.
#[pyfunction]
#[pyo3(signature = (path, heads=None, classifier=None, logit_scale=None, logit_bias=None, class_names=None,
    classes=None, prompts=Vec::new(), tokenizer=None, activation=None, image_size=None,
    head=None, head_bias=None, gpu=None))]
#[allow(clippy::too_many_arguments)]
pub fn load(
    py: Python<'_>,
    path: PathBuf,
    heads: Option<usize>,
    classifier: Option<PathBuf>,
    logit_scale: Option<f32>,
    logit_bias: Option<f32>,
    class_names: Option<PathBuf>,
    classes: Option<Vec<String>>,
    prompts: Vec<String>,
    tokenizer: Option<PathBuf>,
    activation: Option<String>,
    image_size: Option<usize>,
    head: Option<PathBuf>,
    head_bias: Option<PathBuf>,
    gpu: Option<usize>,
) -> PyResult<Model> {
    let activation = match activation.as_deref() {
        None => None,
        Some("quick-gelu") => Some(FfnActivation::QuickGelu),
        Some("gelu") => Some(FfnActivation::GeluErf),
        Some(other) => {
            return Err(to_py(anyhow::anyhow!(
                "activation {other:?}: expected \"quick-gelu\" or \"gelu\""
            )))
        }
    };
    if head.is_none() && head_bias.is_some() {
        return Err(to_py(anyhow::anyhow!("head_bias goes with head")));
    }
    let options = LoadOptions {
        heads,
        classifier,
        logit_scale,
        logit_bias,
        class_names,
        classes,
        prompts,
        tokenizer,
        activation,
        image_size,
        head: head.map(|weight| Probe {
            weight,
            bias: head_bias,
        }),
    };
    let vit = py
        .detach(|| -> anyhow::Result<_> {
            let mut vit = neuronpath::model::load(&path, &options)?;
            if let Some(index) = gpu {
                vit.use_gpu(&neuronpath::model::exec::gpu::Device::open(index)?)?;
            }
            Ok(vit)
        })
        .map_err(to_py)?;
    let notes = neuronpath::model::checkpoint::notes(&path, &vit, &options).map_err(to_py)?;
    for note in notes {
        let message = std::ffi::CString::new(note).unwrap_or_default();
        PyErr::warn(
            py,
            &py.get_type::<pyo3::exceptions::PyUserWarning>(),
            &message,
            1,
        )?;
    }
    Ok(Model { vit, file: path })
}

/// The GPUs `load(..., gpu=N)` can name, as `neuronpath devices --json` lists them.
#[pyfunction]
pub fn devices(py: Python<'_>) -> PyResult<String> {
    let found = py.detach(neuronpath::model::exec::gpu::devices);
    serde_json::to_string(&found).map_err(|e| to_py(e.into()))
}

/// Logits and neuron activations.
type Forward<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArrayDyn<f32>>);
/// Pixels, labels and keys of images.
type Loaded<'py> = (Bound<'py, PyArrayDyn<f32>>, Vec<Option<usize>>, Vec<String>);

/// Where a paths run's images come from.
enum Images<'a> {
    Set(ImageSet),
    Array(&'a [f32], Vec<Option<usize>>),
}

impl Images<'_> {
    fn inputs(&self) -> Vec<Input<'_>> {
        match self {
            Images::Set(set) => set.entries.iter().map(Input::File).collect(),
            Images::Array(pixels, labels) => {
                let per_image = pixels.len() / labels.len().max(1);
                let images = pixels.chunks_exact(per_image.max(1));
                (images.zip(labels).enumerate())
                    .map(|(i, (pixels, &label))| Input::Pixels {
                        key: i.to_string(),
                        label,
                        pixels,
                    })
                    .collect()
            }
        }
    }
}

/// The records of a run kept in memory, and appended to a file when one is given.
struct Records {
    file: Option<RecordFile<PathRecord>>,
    got: Vec<PathRecord>,
}

impl Sink for Records {
    fn has(&self, key: &str, method: neuronpath::attribution::Method) -> bool {
        self.file.as_ref().is_some_and(|f| f.has(key, method))
    }

    fn put(&mut self, record: PathRecord) -> Result<()> {
        if let Some(file) = &mut self.file {
            file.append(record.clone())?;
        }
        self.got.push(record);
        Ok(())
    }
}

impl Model {
    /// The labels given for `n` images (none: all unlabelled), checked: one per
    /// image, each one of the model's classes.
    fn given_labels(
        &self,
        labels: Option<Vec<Option<usize>>>,
        n: usize,
    ) -> Result<Vec<Option<usize>>> {
        let labels = labels.unwrap_or_else(|| vec![None; n]);
        if labels.len() != n {
            bail!("labels: {} for {n} images", labels.len());
        }
        let classes = self.vit.config.classes;
        if let Some((i, l)) = (labels.iter().enumerate())
            .find_map(|(i, l)| l.filter(|&l| l >= classes).map(|l| (i, l)))
        {
            bail!("labels: label {l} of image {i} is outside the model's {classes} classes");
        }
        Ok(labels)
    }

    /// Runs `f`, which sets the model up for a run (arithmetic, neuron tokens,
    /// unit), and sets it back as loaded.
    pub(crate) fn set_up<T>(&mut self, f: impl FnOnce(&mut Vit) -> Result<T>) -> Result<T> {
        let loaded = (self.vit.compat, self.vit.neuron_tokens, self.vit.unit);
        let result = f(&mut self.vit);
        (self.vit.compat, self.vit.neuron_tokens, self.vit.unit) = loaded;
        result
    }

    /// The images of a folder, a file or a list of files (`labels` for a list). Unless
    /// the run `needs` labels, class folders that name none of the model's classes
    /// leave their images unlabelled (with a note).
    pub(crate) fn image_set(
        &self,
        images: &Bound<'_, PyAny>,
        labels: Option<Vec<Option<usize>>>,
        label_map: Option<&Path>,
        needs: bool,
    ) -> Result<ImageSet> {
        let labels_of = Labels {
            names: self.vit.class_names.as_deref(),
            classes: self.vit.config.classes,
            map: label_map,
            required: needs,
        };
        if let Ok(root) = images.extract::<PathBuf>() {
            if labels.is_some() {
                bail!("labels: for a list of files or an array; a folder's class folders give its labels");
            }
            return ImageSet::open(&root, &labels_of);
        }
        let Ok(files) = images.extract::<Vec<PathBuf>>() else {
            bail!("images: a folder, an image file, a list of image files, or a [N, 3, H, W] float32 numpy array");
        };
        let labels = self.given_labels(labels, files.len())?;
        let entries = files
            .into_iter()
            .zip(labels)
            .map(|(path, label)| ImageEntry {
                key: path.display().to_string(),
                path,
                label,
            });
        Ok(ImageSet {
            root: PathBuf::new(),
            classes: Vec::new(),
            entries: entries.collect(),
            notes: Vec::new(),
        })
    }
}

#[pymethods]
impl Model {
    /// The architecture: family, layers, neurons (per layer), classes, and more.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (vit, c) = (&self.vit, &self.vit.config);
        let info = PyDict::new(py);
        info.set_item("family", c.family.to_string())?;
        info.set_item("layout", vit.layout.to_string())?;
        info.set_item("layers", c.layers)?;
        info.set_item("neurons", c.intermediate)?;
        info.set_item("classes", c.classes)?;
        info.set_item("class_names", vit.class_names.clone())?;
        info.set_item("hidden", c.hidden)?;
        info.set_item("heads", c.heads)?;
        info.set_item("image_size", c.image_size)?;
        info.set_item("patch_size", c.patch_size)?;
        info.set_item("tokens", c.tokens())?;
        info.set_item("parameters", vit.parameter_count())?;
        info.set_item("checkpoint", self.file.display().to_string())?;
        Ok(info)
    }

    /// The clean forward pass of `[N, 3, H, W]` normalised pixels: logits `[N,
    /// classes]` and each layer's FFN activations at the neuron tokens (the CLS token
    /// for a ViT), `[N, layers, neurons]` (`[N, layers, tokens, neurons]` for a site
    /// of several tokens, as MAE's patches).
    fn forward<'py>(&self, py: Python<'py>, pixels: &Bound<'py, PyAny>) -> PyResult<Forward<'py>> {
        let pixels = array_arg(pixels, "Model.forward")?;
        let data = pixels_of(&self.vit, &pixels)?;
        let vit = &self.vit;
        let n = pixels.shape()[0];
        let (logits, neurons) = py.detach(|| {
            let (mut logits, mut neurons) = (Vec::new(), Vec::new());
            for image in data.chunks_exact(3 * vit.config.image_size.pow(2)) {
                let clean = vit.clean_forward(image);
                logits.extend(clean.logits);
                neurons.extend(clean.neurons.into_iter().flatten());
            }
            (logits, neurons)
        });
        let (layers, rows, width) = (vit.config.layers, vit.neuron_rows(), vit.unit_width());
        let shape = match rows {
            1 => vec![n, layers, width],
            _ => vec![n, layers, rows, width],
        };
        let logits = Array::from_shape_vec((n, vit.config.classes), logits).map_err(shape_error)?;
        let neurons = Array::from_shape_vec(shape, neurons).map_err(shape_error)?;
        Ok((logits.into_pyarray(py), neurons.into_pyarray(py)))
    }

    /// The JAS of one neuron set (a path: per layer a neuron, or a list of them) on
    /// each image of `[N, 3, H, W]` pixels for its target class; one score dict
    /// (JSON text) per image.
    fn jas(
        &self,
        py: Python<'_>,
        pixels: &Bound<'_, PyAny>,
        neurons: &str,
        targets: Vec<usize>,
        options: JasOptions,
    ) -> PyResult<Vec<String>> {
        let pixels = array_arg(pixels, "Model.jas")?;
        let data = pixels_of(&self.vit, &pixels)?;
        let attributor = Attributor {
            vit: &self.vit,
            rule: options.rule().map_err(to_py)?,
            form: crate::options::score_form(&options.score_form).map_err(to_py)?,
        };
        let path = self.path_of(neurons).map_err(to_py)?;
        let scores = py.detach(|| jas_of(&attributor, data, &path, &targets));
        let scores = scores.map_err(to_py)?;
        scores.iter().map(json).collect()
    }

    /// The normalised pixels `[N, 3, H, W]` of a folder, an image file or a list of
    /// files, as `paths` prepares them; with the images' labels (none where the
    /// folders name no class) and keys. Notes go to `progress`.
    #[pyo3(signature = (images, preprocess="checkpoint", label_map=None, progress=None))]
    fn pixels<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        preprocess: &str,
        label_map: Option<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Loaded<'py>> {
        need_numpy(py, "Model.pixels")?;
        let set = self
            .image_set(images, None, label_map.as_deref(), false)
            .map_err(to_py)?;
        PyProgress::new(progress).notes(&set.notes);
        let preset = Preset::from_name(preprocess).ok_or_else(|| {
            to_py(anyhow::anyhow!(
                "preprocess {preprocess:?}: one of checkpoint, reference"
            ))
        })?;
        let norm = data::normalization(&self.vit, preset);
        let vit = &self.vit;
        let loaded: Result<Vec<Vec<f32>>> = py.detach(|| {
            let load = |e: &ImageEntry| {
                data::load_image(&e.path, vit, &norm)
                    .map_err(|err| err.context(e.path.display().to_string()))
            };
            set.entries.iter().map(load).collect()
        });
        let size = vit.config.image_size;
        let shape = vec![set.entries.len(), 3, size, size];
        let pixels =
            Array::from_shape_vec(shape, loaded.map_err(to_py)?.concat()).map_err(shape_error)?;
        let labels = set.entries.iter().map(|e| e.label).collect();
        let keys = set.entries.iter().map(|e| e.key.clone()).collect();
        Ok((pixels.into_pyarray(py), labels, keys))
    }

    /// Finds the paths of `images` (a folder, a file, a list of files, or `[N, 3, H,
    /// W]` pixels) as `neuronpath paths` does; records as JSON text. With `out`, they
    /// are appended to that file and what it holds is skipped (resumed).
    #[pyo3(signature = (images, options, out=None, progress=None))]
    fn paths(
        &mut self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        options: PathsOptions,
        out: Option<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<String>> {
        let job = options.job().map_err(to_py)?;
        let array = array_in(images)?;
        let source = match &array {
            Some(a) => {
                let labels = self.given_labels(options.labels.clone(), a.shape()[0]);
                Images::Array(pixels_of(&self.vit, a)?, labels.map_err(to_py)?)
            }
            None => {
                let (labels, map) = (options.labels.clone(), options.label_map.as_deref());
                let needs_labels = job.target == Target::Label;
                Images::Set(
                    self.image_set(images, labels, map, needs_labels)
                        .map_err(to_py)?,
                )
            }
        };
        let progress = PyProgress::new(progress);
        let file = self.file.clone();
        let found = progress.watch(py, || {
            self.set_up(|vit| {
                job.configure(vit)?;
                run_paths(vit, &job, &file, &source, out.as_deref(), &progress)
            })
        });
        progress.result(found)?.iter().map(json).collect()
    }
}

impl Model {
    /// A neuron set as the records write a path, checked against the model.
    fn path_of(&self, neurons: &str) -> Result<NeuronPath> {
        let path: NeuronPath = serde_json::from_str(neurons).map_err(|e| {
            anyhow::anyhow!("neurons: not a path (per layer a neuron or a list of neurons): {e}")
        })?;
        let (layers, units) = (self.vit.config.layers, self.vit.units());
        if path.layers() != layers {
            bail!(
                "neurons: {} layers, but the model has {layers}",
                path.layers()
            );
        }
        if let Some((l, n)) = path.neurons().find(|&(_, n)| n >= units) {
            bail!("neurons: neuron {n} at layer {l} is out of range: the model's layers have {units} neurons");
        }
        Ok(path)
    }
}

/// The JAS of `path` on each image of `data` for its target.
fn jas_of(
    attributor: &Attributor,
    data: &[f32],
    path: &NeuronPath,
    targets: &[usize],
) -> Result<Vec<neuronpath::attribution::PathScore>> {
    let vit = attributor.vit;
    let images: Vec<&[f32]> = data
        .chunks_exact(3 * vit.config.image_size.pow(2))
        .collect();
    if targets.len() != images.len() {
        bail!("targets: {} for {} images", targets.len(), images.len());
    }
    if images.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(t) = targets.iter().find(|&&t| t >= vit.config.classes) {
        bail!(
            "target {t}: outside the model's {} classes",
            vit.config.classes
        );
    }
    let contexts: Vec<ImageContext> = (images.iter().zip(targets).enumerate())
        .map(|(i, (pixels, &target))| {
            ImageContext::new(vit, i.to_string(), pixels.to_vec(), target)
        })
        .collect();
    let items: Vec<(&ImageContext, &NeuronPath)> = contexts.iter().map(|c| (c, path)).collect();
    Ok(attributor.score(&items))
}

/// A paths run of `job` on `vit` (set up for it), into memory and `out`.
fn run_paths(
    vit: &Vit,
    job: &PathsJob,
    model: &Path,
    images: &Images,
    out: Option<&Path>,
    progress: &PyProgress,
) -> Result<Vec<PathRecord>> {
    if let Images::Set(set) = images {
        progress.notes(&set.notes);
    }
    let run = job.prepare(vit, model, progress)?;
    let mut inputs = images.inputs();
    let file = match out {
        Some(path) => {
            let file = RecordFile::open(path, &run.common.settings())?;
            check_resumed(&file, &inputs, path)?;
            Some(file)
        }
        None => None,
    };
    let mut records = Records {
        file,
        got: Vec::new(),
    };
    inputs.retain(|input| run.methods.iter().any(|&m| !records.has(input.key(), m)));
    run.run(&inputs, &mut records, progress)?;
    Ok(records.got)
}

/// A value as JSON text (a record, exactly as the JSON lines hold it).
pub fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| to_py(e.into()))
}
