//! `neuronpath merge`: the outputs of a run's shards into the file one run writes.

use anyhow::Result;
use neuronpath::experiments::manipulate::ManipulationRecord;
use neuronpath::record::PathRecord;
use neuronpath::roles::NeuronRecord;
use neuronpath::shards::{merge, merge::listing, Kind, Parts};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The merged file: the records one unsharded run writes, in the run's image
    /// order. An existing file is replaced only when it is an earlier merge's output
    /// (with the <out>.shard.json a merge writes); anything else is left untouched.
    #[arg(long)]
    out: PathBuf,
    /// The shards' --out files (each with its <file>.shard.json), every shard of the
    /// run once, in any order. Refused, naming what: shards of different commands,
    /// models, settings or images, a shard missing (with its images) or given twice,
    /// a shard not finished (resume it first), an image in two shard files.
    #[arg(required = true, value_name = "SHARD")]
    shards: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let parts = Parts::read(&args.shards)?;
    let merged = match parts.kind() {
        Kind::Paths => merge::<PathRecord>(&parts, &args.out)?,
        Kind::Manipulate => merge::<ManipulationRecord>(&parts, &args.out)?,
        Kind::Neurons => merge::<NeuronRecord>(&parts, &args.out)?,
    };
    eprintln!(
        "merged {} shards: {} records of {} images into {}",
        merged.shards,
        merged.records,
        merged.images,
        args.out.display()
    );
    if !merged.failed.is_empty() {
        eprintln!(
            "{} images failed in their shards and have no records, as in one run: {}",
            merged.failed.len(),
            listing(&merged.failed)
        );
    }
    Ok(ExitCode::SUCCESS)
}
