//! `neuronpath devices`: the GPUs `--gpu N` can name.

use neuronpath::model::exec::gpu;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print the list as JSON, one object per device.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let found = gpu::devices();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("no GPU found: no Vulkan, Metal or DX12 device (on Linux: the Vulkan loader libvulkan.so.1 and a driver; Debian's mesa-vulkan-drivers gives lavapipe, a software device)");
        return Ok(ExitCode::SUCCESS);
    }
    for d in &found {
        let software = if d.is_software() {
            " (software: runs on the CPU's cores, for testing; slower than the CPU engine)"
        } else {
            ""
        };
        println!(
            "{}  {}  [{}, {}]{software}",
            d.index, d.name, d.backend, d.kind
        );
        println!("   driver: {}", d.driver);
        if let Some(why) = &d.unusable {
            println!("   not usable: {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
