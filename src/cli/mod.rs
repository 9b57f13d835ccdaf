//! Argument parsing and the subcommands.

mod bench;
mod bench_scan;
mod demo;
mod inspect;
mod manipulate;
mod merge;
mod neurons;
mod paths;
mod prune;
mod report;
mod rss;
mod stats;
mod status;

use clap::{Parser, Subcommand};
use neuronpath::names::Named;
use std::process::ExitCode;

/// The bundled default model and images, so that commands run with no arguments.
pub const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/vit-cifar10");
pub const DEFAULT_IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images");

#[derive(Parser)]
#[command(
    name = "neuronpath",
    version,
    about = "Influential neuron paths in Vision Transformers (Wang et al., ICLR 2025)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Run the linear layers on this CUDA device (0 = the first); the rest stays on
    /// the CPU. Only in builds with `--features cuda`.
    #[cfg(feature = "cuda")]
    #[arg(long, global = true)]
    gpu: Option<usize>,
    /// Accepted only to say that this build has no CUDA.
    #[cfg(not(feature = "cuda"))]
    #[arg(long, global = true, hide = true)]
    gpu: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Find each image's influential neuron path (and baselines) into a JSON-lines file.
    Paths(paths::Args),
    /// Remove (x0) or enhance (x2) each image's path neurons; probability and accuracy deviation.
    Manipulate(manipulate::Args),
    /// Describe neurons from a dataset: top-activating images with heatmaps, class
    /// profile, direct effect on the logits.
    Neurons(neurons::Args),
    /// Class-level statistics of paths: neuron frequencies, class paths, class similarity.
    Stats(stats::Args),
    /// Keep each class's top-K path neurons, zero the rest; evaluate on held-out images.
    Prune(prune::Args),
    /// Print a checkpoint's architecture, parameter count and detected layout.
    Inspect(inspect::Args),
    /// Measure per-image time, peak memory and FLOP/s against the reference code.
    Bench(bench::Args),
    /// Turn path, manipulation and stats files into one self-contained HTML page.
    Report(report::Args),
    /// Run paths, manipulate, stats and report on the bundled model and images.
    Demo(demo::Args),
    /// Merge the outputs of the shards of a run (--shard I/N) into one file.
    Merge(merge::Args),
    /// Per-shard progress, failures and ETA of the sharded runs in a folder.
    Status(status::Args),
}

/// Model selection shared by the subcommands.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Checkpoint: a Hugging Face folder (config.json + model.safetensors), a timm
    /// .safetensors, a PyTorch .pth/.pt state dict with timm names (a bare state dict
    /// or {'model': ...} as the MAE release ships; read without running pickle), or a
    /// Google ViT .npz; the layout and the family (ViT, or MAE with fc_norm) are detected.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: std::path::PathBuf,
    /// Attention heads, for timm and .pth files, which do not record it (default:
    /// num_heads of a config.json beside the file, else width / 64).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Zero-shot classifier of a CLIP vision tower: a .npy of class text embeddings,
    /// [classes, embedding], one row per class (used as given; CLIP's are unit rows).
    /// Logits are the scale times the cosine of the image embedding and each row,
    /// softmaxed over these classes. Note: a neuron's direct effect on a CLIP logit
    /// understates its role; most of its effect runs through the later layers, which
    /// the path search and JAS do follow.
    #[arg(long)]
    pub classifier: Option<std::path::PathBuf>,
    /// The zero-shot logit scale, the multiplier itself (CLIP's logit_scale.exp());
    /// default: a logit_scale.npy beside --classifier, else 100.
    #[arg(long)]
    pub logit_scale: Option<f32>,
    /// Class names of the zero-shot classifier, one per line, in its row order.
    #[arg(long)]
    pub class_names: Option<std::path::PathBuf>,
}

/// The model, the images and the threads of a command that runs the model on images.
#[derive(clap::Args)]
pub struct ImageRun {
    #[command(flatten)]
    pub model: ModelArgs,
    /// An image file, or an ImageFolder tree (one sub-folder per class, matched to the
    /// model's class names; see --label-map); JPEG and PNG. Path records name images
    /// relative to it, so the experiments take the folder their paths were found on.
    #[arg(long, default_value = DEFAULT_IMAGES)]
    pub images: std::path::PathBuf,
    /// Worker threads, 1 to 1024 (default: all cores).
    #[arg(long, value_parser = in_range(1, 1024))]
    pub threads: Option<usize>,
}

/// `--shard`: one shard of a run split over many processes.
#[derive(clap::Args)]
pub struct Sharding {
    /// Run only shard I of N (0 <= I < N; a Slurm array task's
    /// $SLURM_ARRAY_TASK_ID/N): the images whose place among the run's image keys,
    /// sorted, is I modulo N; the same subset on any machine, and shards differ by at
    /// most one image. Each shard writes its own --out, resumable as a single run,
    /// and beside it <out>.shard.json (progress for `status`, what `merge` checks);
    /// `neuronpath merge` then writes the file one run would have.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<neuronpath::data::Shard>,
}

/// How class folders map to the model's classes, when not by name.
#[derive(clap::Args)]
pub struct LabelMap {
    /// Class of each class folder, when the folder names are not the model's class
    /// names: JSON {"folder": class index or name}, or a text file whose line i
    /// starts with class i's folder name (as ImageNet's LOC_synset_mapping.txt).
    /// Without it, folders that name none of the classes (and are not as many as
    /// they) stop a run that needs labels (`paths --target label`) and leave the
    /// images unlabelled otherwise (label null, said in a note); folders of which
    /// only some name a class always stop the run.
    #[arg(long)]
    pub label_map: Option<std::path::PathBuf>,
}

/// Parses a whole number in `min..=max` (clap's message names the range).
pub fn in_range(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(min..=max)
}

/// The class folders of `images` mapped to `vit`'s classes (see `--label-map`);
/// what was skipped or assumed is printed. Unless the run `needs` labels, folders
/// that name none of the classes leave their images unlabelled.
pub fn image_set(
    images: &std::path::Path,
    vit: &neuronpath::model::Vit,
    label_map: Option<&std::path::Path>,
    needs: bool,
) -> anyhow::Result<neuronpath::data::ImageSet> {
    let labels = neuronpath::data::labels::Labels {
        names: vit.class_names.as_deref(),
        classes: vit.config.classes,
        map: label_map,
        required: needs,
    };
    let set = neuronpath::data::ImageSet::open(images, &labels)?;
    for note in &set.notes {
        eprintln!("note: {note}");
    }
    Ok(set)
}

/// An experiment's inputs: the model, the path records, the images they name.
#[derive(clap::Args)]
pub struct ExperimentRun {
    #[command(flatten)]
    pub run: ImageRun,
    /// Path records written by `neuronpath paths`.
    #[arg(long, default_value = "out/paths.jsonl")]
    pub paths: std::path::PathBuf,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<neuronpath::model::Vit> {
        neuronpath::model::load(
            &self.model,
            &neuronpath::model::LoadOptions {
                heads: self.heads,
                classifier: self.classifier.clone(),
                logit_scale: self.logit_scale,
                class_names: self.class_names.clone(),
            },
        )
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    neuronpath::model::kernels::reuse_freed_buffers();
    // Output piped into `head` should end the program quietly, as other Unix tools
    // do, not make `println!` panic on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Some(ordinal) = cli.gpu {
        if let Err(e) = enable_gpu(ordinal) {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "cuda")]
fn enable_gpu(ordinal: usize) -> anyhow::Result<()> {
    neuronpath::model::gpu::enable(ordinal)
}

#[cfg(not(feature = "cuda"))]
fn enable_gpu(ordinal: usize) -> anyhow::Result<()> {
    anyhow::bail!("--gpu {ordinal}: this build has no CUDA support; rebuild with `cargo build --release --features cuda`")
}

/// Runs one subcommand.
fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Paths(args) => paths::run(args),
        Command::Manipulate(args) => manipulate::run(args),
        Command::Neurons(args) => neurons::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Report(args) => report::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Status(args) => status::run(args),
    }
}

/// Parses one of the names of a library choice ([`Named`]: methods, rules, tokens,
/// ...), listing each with its help in `--help`.
pub fn named<T: Named + Clone>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = T::ALL
        .iter()
        .map(|v| PossibleValue::new(v.name()).help(v.help()));
    PossibleValuesParser::new(values).map(|s| T::from_name(&s).expect("a listed value"))
}

/// Names of library choices, comma-separated (for messages and settings).
pub fn names<T: Named>(values: &[T]) -> String {
    let names: Vec<&str> = values.iter().map(|v| v.name()).collect();
    names.join(", ")
}

/// What a path's unit is, as `paths --unit` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Unit {
    /// One FFN neuron (post-activation channel), the paper's unit.
    Neuron,
    /// One attention head's output before the output projection (`attn.z`).
    Head,
}

impl Unit {
    pub fn activation(self) -> neuronpath::model::Activation {
        match self {
            Unit::Neuron => neuronpath::model::Activation::MlpPost,
            Unit::Head => neuronpath::model::Activation::AttnZ,
        }
    }
}

/// A progress bar over `len` items named `unit`, with rate and ETA.
pub fn progress(len: usize, unit: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len as u64).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}  {{msg}}"
        ))
        .expect("valid template"),
    )
}

/// A progress bar the library reports to (see [`neuronpath::progress`]): drawn
/// afresh at each start, with rate and ETA.
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    pub fn new() -> Bar {
        Bar(indicatif::ProgressBar::hidden())
    }
}

impl neuronpath::progress::Progress for Bar {
    fn start(&self, total: usize, unit: &str) {
        self.0.finish_and_clear();
        self.0.set_style(progress(total, unit).style());
        self.0.set_length(total as u64);
        self.0.set_position(0);
        self.0.reset();
        self.0
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    fn advance(&self, n: usize) {
        self.0.inc(n as u64);
    }
    fn note(&self, message: &str) {
        self.0.suspend(|| eprintln!("{message}"));
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Runs `f` on a rayon pool of `threads` threads (all cores when `None`).
pub fn with_threads<T: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> T + Send,
) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()?;
    Ok(pool.install(f))
}
