//! Direct logit attribution: what a write into the last block's output does to
//! the logits when the readout's norms are frozen at one image's scale, so the
//! readout is linear. Only the direct path: a neuron's effect through the later
//! layers is not in it.
//!
//! A write of `w` at some token rows reaches the readout at one place ([`Entry`]);
//! with the norms frozen, the change of the logits is `scale(image) * L(w)`: a
//! scalar of the image ([`Vit::frozen_scale`]) times a map of the weights alone
//! ([`Vit::unit_effect`]).

use super::engine::Passes;
use super::exec::Cpu;
use super::family::{Compat, Readout};
use super::forward::Keep;
use super::site::Tokens;
use super::vit::Vit;

/// Where a write at token rows enters the readout's features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// Normalised on its own as row `row`, read as feature block `block`.
    Row { row: usize, block: usize },
    /// Through the mean of the patch rows, read as feature block `block`; the norm
    /// comes before the mean (`per_row`) or after it.
    PatchMean { block: usize, per_row: bool },
}

impl Vit {
    /// The readout's entry for a write at `tokens`: `None` when the readout does not
    /// read those rows, or reads them at two places (CLS and distillation token).
    fn entry(&self, tokens: Tokens) -> Option<Entry> {
        let c = &self.config;
        let rows = c.rows(tokens);
        let patches = c.rows(Tokens::Patches);
        let reads_patches = rows.start < patches.end && patches.start < rows.end;
        match c.family.readout {
            Readout::Cls => rows.contains(&0).then_some(Entry::Row { row: 0, block: 0 }),
            Readout::ClsAndDistillation => {
                let read: Vec<usize> = (0..2).filter(|r| rows.contains(r)).collect();
                match read[..] {
                    [r] => Some(Entry::Row { row: r, block: r }),
                    _ => None,
                }
            }
            Readout::MeanPatches => reads_patches.then_some(Entry::PatchMean {
                block: 0,
                per_row: false,
            }),
            Readout::ClsAndMeanPatches => match (rows.contains(&0), reads_patches) {
                (true, false) => Some(Entry::Row { row: 0, block: 0 }),
                (false, true) => Some(Entry::PatchMean {
                    block: 1,
                    per_row: true,
                }),
                _ => None,
            },
            // The pooling head is not linear in a write: its attention weights and
            // its MLP depend on it.
            Readout::AttentionPool => None,
        }
    }

    /// `L(w)`: the change of every logit per unit of `direction` (`[hidden]`)
    /// written at every row of `tokens`, the norms frozen at scale 1 (no centring
    /// lost: the frozen norm still subtracts the mean). `None` as [`Vit::frozen_scale`].
    pub fn unit_effect(&self, tokens: Tokens, direction: &[f32]) -> Option<Vec<f32>> {
        let entry = self.entry(tokens)?;
        let c = &self.config;
        let d = c.hidden;
        let gamma = &self.weights.norm.gamma;
        let centred = |v: &[f32]| -> Vec<f32> {
            let mean = v.iter().sum::<f32>() / d as f32;
            v.iter().zip(gamma).map(|(x, g)| (x - mean) * g).collect()
        };
        let mut u = centred(direction);
        let block = match entry {
            Entry::Row { block, .. } => block,
            Entry::PatchMean { block, per_row } => {
                // The paper's code applies fc_norm twice (QUIRKS.md).
                if !per_row && self.compat == Compat::Reference {
                    u = centred(&u);
                }
                block
            }
        };
        let mut features = vec![0f32; c.family.readout.width(d)];
        features[block * d..(block + 1) * d].copy_from_slice(&u);
        let y: Vec<f32> = match &self.weights.head {
            Some(head) => head
                .w
                .chunks_exact(features.len())
                .map(|row| row.iter().zip(&features).map(|(a, b)| a * b).sum())
                .collect(),
            None => features,
        };
        let out = y.len();
        Some(match &self.weights.zero_shot {
            None => y,
            Some(zs) => zs
                .text
                .chunks_exact(out)
                .map(|t| zs.scale * t.iter().zip(&y).map(|(a, b)| a * b).sum::<f32>())
                .collect(),
        })
    }

    /// The scalar by which one image's frozen readout scales a write at `tokens`:
    /// the inverse standard deviation of the norm(s) there (averaged over the rows
    /// of a patch mean normalised per row, times the share of patches written), and
    /// for a zero-shot head the inverse length of the image embedding. `output` is
    /// the image's last block output, `[tokens, hidden]`.
    pub fn frozen_scale(&self, tokens: Tokens, output: &[f32]) -> Option<f32> {
        let entry = self.entry(tokens)?;
        let c = &self.config;
        let passes = Passes::new(self, &Cpu);
        let tape = passes
            .readout_forward(&output.to_vec(), 1, &[], Keep::TAPE)
            .tape;
        let rows = c.rows(tokens);
        let patches = c.rows(Tokens::Patches);
        let written = patches.clone().filter(|p| rows.contains(p));
        let n = patches.len() as f32;
        let norm_scale = match entry {
            Entry::Row { row, .. } => tape.norms[0].rstd[row],
            Entry::PatchMean { per_row: true, .. } => {
                written.map(|p| tape.norms[0].rstd[p]).sum::<f32>() / n
            }
            Entry::PatchMean { per_row: false, .. } => {
                let share = written.count() as f32 / n;
                share * tape.norms.iter().map(|n| n.rstd[0]).product::<f32>()
            }
        };
        let embedding = match &tape.embedding {
            None => 1.0,
            Some(e) => 1.0 / e.iter().map(|v| v * v).sum::<f32>().sqrt(),
        };
        Some(norm_scale * embedding)
    }

    /// Block `layer`'s FFN output weights for `neuron`: what a unit of its
    /// activation writes into the residual stream (`[hidden]`, layer scale folded in).
    pub fn neuron_direction(&self, layer: usize, neuron: usize) -> Vec<f32> {
        let f = self.config.intermediate;
        let w = &self.weights.blocks[layer].fc2.w;
        (0..self.config.hidden).map(|i| w[i * f + neuron]).collect()
    }
}
