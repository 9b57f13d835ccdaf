//! `neuronpath inspect`: what a checkpoint is.

use super::ModelArgs;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let vit = args.model.load()?;
    let c = &vit.config;
    println!("checkpoint   {}", args.model.model.display());
    println!("layout       {}", vit.layout);
    println!("family       {}", c.family);
    for (what, value) in c.family.options() {
        println!("  {what:<19} {value}");
    }
    println!(
        "input        {0}x{0}x{1}, patch {2} -> {3} tokens ({4} prefix + {5} patches)",
        c.image_size,
        c.channels,
        c.patch_size,
        c.tokens(),
        c.family.prefix_tokens(),
        c.patches()
    );
    println!(
        "blocks       {} x (hidden {}, {} heads of {}, FFN {})",
        c.layers,
        c.hidden,
        c.heads,
        c.head_dim(),
        c.intermediate
    );
    println!(
        "neurons      {} per layer, {} in all, at {} (N = 0..{})",
        c.intermediate,
        c.intermediate * c.layers,
        vit.neuron_site(0)
            .to_string()
            .replace("blocks.0.", "blocks.N."),
        c.layers - 1
    );
    println!("classes      {}", c.classes);
    if let Some(names) = &vit.class_names {
        let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
        println!(
            "class names  {}{}",
            shown.join(", "),
            if names.len() > 10 { ", ..." } else { "" }
        );
    }
    println!("LayerNorm    eps {:e}", c.layer_norm_eps);
    println!(
        "parameters   {} ({:.2} M)",
        vit.parameter_count(),
        vit.parameter_count() as f64 / 1e6
    );
    let n = &vit.normalization;
    println!(
        "normalise    mean {:?} std {:?} ({})",
        n.mean, n.std, n.source
    );
    let g = &n.geometry;
    let resize = match (g.shortest_edge, g.size) {
        (Some(edge), _) => format!("shortest edge to {edge}"),
        (None, Some((h, w))) => format!("to {w}x{h}"),
        (None, None) => format!("to {0}x{0}", c.image_size),
    };
    let crop = if g.crop {
        format!(", centre crop {0}x{0}", c.image_size)
    } else {
        String::new()
    };
    println!("resize       {resize} ({:?}){crop}", g.filter);
    Ok(ExitCode::SUCCESS)
}
