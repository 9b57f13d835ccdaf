//! Argument parsing and the subcommands.

mod bench;
mod bench_scan;
mod demo;
mod devices;
mod inspect;
mod manipulate;
mod merge;
mod neurons;
mod paths;
mod prune;
mod report;
mod rss;
mod shard;
mod stats;
mod status;

use clap::{Parser, Subcommand};
use neuronpath::names::Named;
pub use shard::Sharding;
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
    /// List the GPUs (Vulkan, Metal, DX12) that --gpu N can name.
    Devices(devices::Args),
    /// Measure per-image time, peak memory and FLOP/s against the reference code.
    Bench(bench::Args),
    /// Turn path, manipulation and stats files into one self-contained HTML page.
    Report(report::Args),
    /// Run paths, manipulate, stats and report on the bundled model and images.
    Demo(demo::Args),
    /// Merge the outputs of the shards of a run (--shard I/N) into one file.
    Merge(merge::Args),
    /// Per-shard progress, failures and ETA of the sharded runs in a folder, and the
    /// command that resumes a shard that stopped.
    Status(status::Args),
}

/// Model selection shared by the subcommands.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Checkpoint: a Hugging Face folder (config.json + model.safetensors), a timm
    /// .safetensors, a PyTorch .pth/.pt state dict with timm names (a bare state dict
    /// or {'model': ...} as the MAE release ships; read without running pickle), an
    /// open_clip folder or state dict, or a Google ViT .npz; the layout and the family
    /// (ViT, MAE, DeiT, CLIP, SigLIP, DINOv2) are detected.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: std::path::PathBuf,
    /// Attention heads, for timm and .pth files, which do not record it (default:
    /// num_heads of a config.json beside the file, else width / 64).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Zero-shot classifier of a CLIP or SigLIP vision tower: a .npy of class text
    /// embeddings, [classes, embedding], one row per class (used as given; CLIP's are
    /// unit rows). Logits are the scale times the cosine of the image embedding and
    /// each row (plus SigLIP's bias), softmaxed over these classes (SigLIP: a sigmoid
    /// per class). Note: a neuron's direct effect on a CLIP logit understates its
    /// role; most of its effect runs through the later layers, which the path search
    /// and JAS do follow.
    #[arg(long)]
    pub classifier: Option<std::path::PathBuf>,
    /// The zero-shot logit scale, the multiplier itself (CLIP's logit_scale.exp());
    /// default: a logit_scale.npy beside --classifier, else the checkpoint's, else 100
    /// (SigLIP: no default).
    #[arg(long)]
    pub logit_scale: Option<f32>,
    /// SigLIP's zero-shot logit bias, added to every logit before each class's
    /// sigmoid (its logit_bias); default: a logit_bias.npy beside --classifier, else
    /// the checkpoint's. Refused for CLIP, whose softmax no bias changes.
    #[arg(long, allow_hyphen_values = true)]
    pub logit_bias: Option<f32>,
    /// Class names of the zero-shot classifier, one per line, in its row order.
    #[arg(long)]
    pub class_names: Option<std::path::PathBuf>,
    /// Zero-shot classes by name, their rows computed with the checkpoint's own text
    /// tower and tokenizer (a Hugging Face CLIPModel or SiglipModel, open_clip):
    /// "cat,dog,ship", or a file with one class per line. Logit scale (and SigLIP's
    /// bias): the checkpoint's (or --logit-scale, --logit-bias).
    #[arg(long, value_name = "A,B,C|FILE")]
    pub classes: Option<String>,
    /// The prompt a class name is put in for --classes, {} standing for the name
    /// (default: "a photo of a {}."). Repeated: each class's row is the normalised mean
    /// of its prompts' embeddings, as open_clip's zero-shot classifiers are built.
    #[arg(long = "prompt", value_name = "TEMPLATE")]
    pub prompts: Vec<String>,
    /// The text tower's vocabulary for --classes. CLIP: a tokenizer.json (or a folder
    /// holding one) or an open_clip BPE merges file (bpe_simple_vocab_16e6.txt.gz);
    /// default: the tokenizer.json of the checkpoint's folder, else OpenAI's CLIP
    /// vocabulary (bundled, the one open_clip ships). SigLIP: a SentencePiece
    /// spiece.model (or a folder holding one); default: the checkpoint folder's.
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// The FFN activation of a checkpoint that does not say it: timm's CLIP towers
    /// (quick-gelu for OpenAI's weights, gelu as timm runs vit_*_clip_* and for LAION's),
    /// open_clip state dicts without their open_clip_config.json.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// Run a DINOv2 checkpoint at this image size (a multiple of its patch size), its
    /// position embeddings interpolated (bicubic) as Hugging Face does at every forward
    /// (default: the centre crop of its preprocessor_config.json, else its config's size).
    #[arg(long, value_parser = in_range(1, 1 << 16))]
    pub image_size: Option<usize>,
    /// A linear head for a backbone saved without one (Dinov2Model, a timm model with
    /// num_classes=0, a CLIP vision tower without projection): W.npy [classes, features]
    /// and an optional bias b.npy [classes]. Features: the final norm at the CLS token
    /// (width d), or [CLS, mean of the patch tokens] (width 2d, DINOv2's linear probe).
    #[arg(long, value_name = "W.npy[,b.npy]", value_parser = parse_probe)]
    pub head: Option<neuronpath::model::Probe>,
}

/// `--activation`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ActivationArg {
    /// x * sigmoid(1.702 x), OpenAI CLIP's.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
}

fn parse_probe(s: &str) -> Result<neuronpath::model::Probe, String> {
    s.parse()
}

/// `--classes`: a file with one class per line, else comma-separated names.
fn class_list(value: &str) -> anyhow::Result<Vec<String>> {
    let path = std::path::Path::new(value);
    let text = match path.is_file() {
        true => neuronpath::files::read_text(path)?,
        false => value.replace(',', "\n"),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
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
    /// Run the model on GPU N of `neuronpath devices` (Vulkan, Metal or DX12), its
    /// whole pass on the device: the weights are uploaded once, images go in and
    /// records come out. Arithmetic is f32 as on the CPU, so paths are the same up
    /// to rounding. Default: the CPU.
    #[arg(long, value_name = "N")]
    pub gpu: Option<usize>,
}

impl ImageRun {
    /// The model, placed on `--gpu` when given.
    pub fn load(&self) -> anyhow::Result<neuronpath::model::Vit> {
        let mut vit = self.model.load()?;
        if let Some(index) = self.gpu {
            let device = neuronpath::model::exec::gpu::Device::open(index)?;
            vit.use_gpu(&device)?;
            eprintln!("running on GPU {index}: {}", device.name());
        }
        Ok(vit)
    }
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

/// Notes that another run is still writing `file` (it is read as it is now).
pub fn note_if_being_written(file: &std::path::Path) {
    if neuronpath::record::being_written(file) {
        eprintln!(
            "note: {}: another neuronpath run is still writing it; read as it is now (the records so far)",
            file.display()
        );
    }
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
    /// The model, and a note of what was assumed about it (a guessed head count).
    pub fn load(&self) -> anyhow::Result<neuronpath::model::Vit> {
        use neuronpath::model::FfnActivation;
        let options = neuronpath::model::LoadOptions {
            heads: self.heads,
            classifier: self.classifier.clone(),
            logit_scale: self.logit_scale,
            logit_bias: self.logit_bias,
            class_names: self.class_names.clone(),
            classes: self.classes.as_deref().map(class_list).transpose()?,
            prompts: self.prompts.clone(),
            tokenizer: self.tokenizer.clone(),
            activation: self.activation.map(|a| match a {
                ActivationArg::QuickGelu => FfnActivation::QuickGelu,
                ActivationArg::Gelu => FfnActivation::GeluErf,
            }),
            image_size: self.image_size,
            head: self.head.clone(),
        };
        let vit = neuronpath::model::load(&self.model, &options)?;
        for note in neuronpath::model::checkpoint::notes(&self.model, &vit, &options)? {
            eprintln!("note: {note}");
        }
        Ok(vit)
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    neuronpath::model::reuse_freed_buffers();
    // Output piped into `head` should end the program quietly, as other Unix tools
    // do, not make `println!` panic on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Before any thread starts: a shard killed by a signal says so in its manifest.
    #[cfg(unix)]
    shard::handle_signals();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            shard::failed(&e);
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        Command::Devices(args) => devices::run(args),
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
