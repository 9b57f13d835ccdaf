//! What distinguishes one ViT family from another, as options of one engine:
//! the tokens before the patches, how the classifier reads the sequence, the FFN
//! non-linearity. Loaders read it off the checkpoint; the forward and backward
//! passes honour it; nothing else branches on the family.

use super::site::Tokens;
use std::fmt;

/// How the head reads the last block's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Readout {
    /// The final LayerNorm at the CLS token, then the head (ViT, DeiT without
    /// distillation).
    Cls,
    /// The mean of the patch tokens (prefix tokens excluded), then `fc_norm`, then
    /// the head (MAE fine-tuning with `global_pool`).
    MeanPatches,
}

/// The FFN non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FfnActivation {
    /// `x * Phi(x)`, the exact (erf) GELU.
    GeluErf,
}

/// A family's description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Family {
    /// Tokens before the patches, CLS first.
    pub prefix_tokens: usize,
    pub readout: Readout,
    pub activation: FfnActivation,
}

impl Family {
    /// The plain ViT: CLS, erf GELU, CLS readout.
    pub const VIT: Family = Family {
        prefix_tokens: 1,
        readout: Readout::Cls,
        activation: FfnActivation::GeluErf,
    };

    /// MAE fine-tuned with global pooling: as the ViT, read out by the patch mean.
    pub const MAE: Family = Family {
        readout: Readout::MeanPatches,
        ..Family::VIT
    };

    /// The tokens a neuron lives at by default: where the paper's code puts it for
    /// the family (the token the head reads; the patches for a mean readout).
    pub fn neuron_tokens(&self) -> Tokens {
        match self.readout {
            Readout::Cls => Tokens::Cls,
            Readout::MeanPatches => Tokens::Patches,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self.readout {
            Readout::Cls => "ViT (CLS token -> LayerNorm -> head)",
            Readout::MeanPatches => "MAE (mean of patch tokens -> fc_norm -> head)",
        })
    }
}

/// Which arithmetic to follow where the paper's code departs from the principled
/// form (`../shared/reference/QUIRKS.md` of the project lists each departure). For
/// the plain ViT the two agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compat {
    /// The model's own forward; scores normalised by the model's real token count.
    #[default]
    Principled,
    /// The authors' code, quirks included: for MAE `fc_norm` applied twice, scores
    /// divided by 196 whatever the patch count, and an influence search that skips
    /// the blocks of already-chosen layers.
    Reference,
}

impl Compat {
    pub const ALL: [Compat; 2] = [Compat::Principled, Compat::Reference];

    pub fn name(self) -> &'static str {
        match self {
            Compat::Principled => "principled",
            Compat::Reference => "reference",
        }
    }
}

impl std::str::FromStr for Compat {
    type Err = String;

    fn from_str(s: &str) -> Result<Compat, String> {
        Compat::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("{s:?}: expected principled or reference"))
    }
}
