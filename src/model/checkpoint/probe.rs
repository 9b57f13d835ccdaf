//! A linear head given as files (`--head W.npy[,b.npy]`), for a backbone saved
//! without one: the linear probe users train on frozen features.

use super::zero_shot::read_npy;
use crate::model::family::Readout;
use crate::model::vit::Linear;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A head's weight `[classes, width]` and optional bias `[classes]` (zeros without).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub weight: PathBuf,
    pub bias: Option<PathBuf>,
}

impl std::str::FromStr for Probe {
    type Err = String;

    /// `W.npy` or `W.npy,b.npy`.
    fn from_str(s: &str) -> Result<Probe, String> {
        let mut parts = s.splitn(2, ',');
        let weight = parts.next().filter(|w| !w.is_empty());
        let bias = parts.next();
        match (weight, bias) {
            (Some(w), None) => Ok(Probe {
                weight: w.into(),
                bias: None,
            }),
            (Some(w), Some(b)) if !b.is_empty() && !b.contains(',') => Ok(Probe {
                weight: w.into(),
                bias: Some(b.into()),
            }),
            _ => Err(format!("{s:?}: expected W.npy or W.npy,b.npy")),
        }
    }
}

impl Probe {
    /// The head on a model of width `hidden`, and the readout its width says: the
    /// final norm at the CLS token (`hidden`), or the final norm at every token, then
    /// `[CLS, mean of the patch tokens]` (`2 x hidden`, DINOv2's linear evaluation).
    pub(crate) fn read(&self, hidden: usize) -> Result<(Linear, Readout)> {
        let w = &self.weight;
        let weight = read_npy(w)?;
        let [classes, width] = match weight.shape[..] {
            [c, x] if c > 0 && x > 0 => [c, x],
            _ => bail!(
                "{}: expected a [classes, features] array, found shape {:?}",
                w.display(),
                weight.shape
            ),
        };
        let readout = match width {
            x if x == hidden => Readout::Cls,
            x if x == 2 * hidden => Readout::ClsAndMeanPatches,
            _ => bail!("{}: [{classes}, {width}], but a probe on this model reads {hidden} (CLS) or {} (CLS and the mean of the patches) features", w.display(), 2 * hidden),
        };
        let b = match &self.bias {
            None => vec![0.0; classes],
            Some(path) => {
                let bias = read_npy(path)?;
                if bias.shape != [classes] {
                    bail!(
                        "{}: shape {:?}, expected [{classes}] (one bias per row of {})",
                        path.display(),
                        bias.shape,
                        w.display()
                    );
                }
                finite(bias.to_f32(), path)?
            }
        };
        Ok((
            Linear {
                w: finite(weight.to_f32(), w)?,
                b,
            },
            readout,
        ))
    }
}

fn finite(values: Result<Vec<f32>>, path: &Path) -> Result<Vec<f32>> {
    let v = values.with_context(|| path.display().to_string())?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!("{}: holds a non-finite value at index {i}", path.display());
    }
    Ok(v)
}
