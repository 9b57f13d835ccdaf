//! `neuronpath stats`: class-level neuron statistics of a paths file.

use anyhow::{Context, Result};
use neuronpath::experiments::stats::all_stats;
use neuronpath::record::read_paths;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Path records written by `neuronpath paths`.
    #[arg(long, default_value = "out/paths.jsonl")]
    paths: PathBuf,
    /// Output JSON: per method, per class and layer the frequency of each neuron,
    /// the class path, its concentration, and the class-by-class similarity.
    #[arg(long, default_value = "out/stats.json")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    super::note_if_being_written(&args.paths);
    let records = read_paths(&args.paths)?;
    let stats = all_stats(&records).with_context(|| args.paths.display().to_string())?;
    let json = serde_json::to_vec(&stats)?;
    neuronpath::record::write_output(&args.out, &json, "{\"methods\":")?;
    for method in &stats.methods {
        println!(
            "{}: {} paths, JAS mean {:.4}, median {:.4}",
            method.method, method.paths, method.mean_score, method.median_score
        );
        let name = |c: usize| {
            method
                .classes
                .iter()
                .find(|s| s.class == c)
                .and_then(|s| s.name.clone())
                .unwrap_or_else(|| c.to_string())
        };
        for c in &method.classes {
            let concentration =
                c.concentration.iter().sum::<f64>() / c.concentration.len().max(1) as f64;
            println!(
                "  {:<12} {:>5} paths  class path {:?}  concentration {:>5.1}%  most similar {}  least {}",
                name(c.class),
                c.images,
                c.class_path,
                100.0 * concentration,
                c.most_similar.map_or("-".into(), name),
                c.least_similar.map_or("-".into(), name),
            );
        }
    }
    eprintln!("written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
