//! What distinguishes one ViT family from another, as options of one engine:
//! the tokens before the patches, how the classifier reads the sequence, the FFN
//! non-linearity, layer scale, a norm before block 0, and how logits become
//! probabilities. Loaders read it off the checkpoint; the forward and backward
//! passes honour it; nothing else branches on the family.

use super::site::Tokens;
use crate::names::Named;
use crate::numeric;
use std::fmt;
use std::ops::Range;

/// How the head reads the last block's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Readout {
    /// The final norm at the CLS token, then the head (ViT; CLIP, whose norm is
    /// `post_layernorm`).
    Cls,
    /// The final norm at the CLS and the distillation token, a head on each, the
    /// two logits averaged (DeiT distilled; the head holds both, side by side).
    ClsAndDistillation,
    /// The mean of the patch tokens (prefix tokens excluded), then `fc_norm`, then
    /// the head (MAE fine-tuning with `global_pool`).
    MeanPatches,
    /// The final norm at every token, then the CLS token and the mean of the patch
    /// tokens (registers excluded) side by side, then the head (DINOv2's classifier).
    ClsAndMeanPatches,
    /// The final norm at every token, then an attention-pooling head: a learned
    /// probe is the one query of a multi-head attention over the tokens, then
    /// `x + MLP(LN(x))` (SigLIP's `vision_model.head`), then the head.
    AttentionPool,
}

impl Readout {
    /// Rows of the last block the readout reads (the block computes only those).
    pub fn rows(self, tokens: usize) -> usize {
        match self {
            Readout::Cls => 1,
            Readout::ClsAndDistillation => 2,
            Readout::MeanPatches | Readout::ClsAndMeanPatches | Readout::AttentionPool => tokens,
        }
    }

    /// Width of the head's input for a model of width `hidden`.
    pub fn width(self, hidden: usize) -> usize {
        match self {
            Readout::Cls | Readout::MeanPatches | Readout::AttentionPool => hidden,
            Readout::ClsAndDistillation | Readout::ClsAndMeanPatches => 2 * hidden,
        }
    }
}

/// The FFN non-linearity; a neuron is one unit of its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FfnActivation {
    /// `x * Phi(x)`, the exact (erf) GELU.
    GeluErf,
    /// `x * sigmoid(1.702 x)` (CLIP's `quick_gelu`).
    QuickGelu,
    /// The tanh approximation of GELU (`gelu_pytorch_tanh`, `gelu_new`).
    GeluTanh,
    /// `silu(gate) * up` from a fused `[gate | up]` projection (DINOv2 giant).
    SwiGlu,
}

impl FfnActivation {
    /// Width of fc1's output for `neurons` neurons.
    pub fn fc1_width(self, neurons: usize) -> usize {
        match self {
            FfnActivation::SwiGlu => 2 * neurons,
            _ => neurons,
        }
    }
}

/// How the logits become the probability of a class: the target probability the
/// method differentiates, and every probability a record or an experiment reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Probability {
    /// Over all classes at once (classifiers trained with cross-entropy; CLIP).
    Softmax,
    /// Each class on its own, `sigmoid(logit)` (SigLIP, trained with a sigmoid loss
    /// per image-text pair).
    Sigmoid,
}

impl Probability {
    fn is_softmax(&self) -> bool {
        *self == Probability::Softmax
    }

    /// The probabilities of `[S, classes]` logits.
    pub fn of(self, logits: &[f32], classes: usize) -> Vec<f32> {
        match self {
            Probability::Softmax => numeric::softmax(logits, classes),
            Probability::Sigmoid => logits.iter().map(|&l| numeric::sigmoid(l)).collect(),
        }
    }

    /// `d p_t / d logits` of every sequence `i` for its target `targets[i]`, and the
    /// probabilities `p_t`: `p_t (e_t - p)` for a softmax, `p_t (1 - p_t) e_t` for a
    /// sigmoid.
    pub fn gradient(
        self,
        logits: &[f32],
        targets: &[usize],
        classes: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let probs = self.of(logits, classes);
        let mut dlogits = vec![0f32; targets.len() * classes];
        let mut probability = Vec::with_capacity(targets.len());
        for ((&target, p), g) in targets
            .iter()
            .zip(probs.chunks_exact(classes))
            .zip(dlogits.chunks_exact_mut(classes))
        {
            let pt = p[target];
            probability.push(pt);
            match self {
                Probability::Softmax => {
                    for (k, g) in g.iter_mut().enumerate() {
                        *g = pt * (f32::from(k == target) - p[k]);
                    }
                }
                Probability::Sigmoid => g[target] = pt * (1.0 - pt),
            }
        }
        (dlogits, probability)
    }
}

/// A family's description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Family {
    /// What the family is called, for people.
    pub name: &'static str,
    /// A CLS token first (every family but SigLIP, whose sequence is its patches).
    /// Left out of the serialised description when set, as are the other options
    /// added since fingerprints named families, at their old values.
    #[serde(skip_serializing_if = "is_true")]
    pub cls: bool,
    /// A distillation token after CLS (DeiT distilled).
    pub distillation: bool,
    /// Register tokens after CLS (DINOv2 with registers; they have no position
    /// embedding and are not patches).
    pub registers: usize,
    pub readout: Readout,
    pub activation: FfnActivation,
    /// Per-channel scales of each residual branch (DINOv2), folded into the
    /// attention output and fc2 weights at load.
    pub layer_scale: bool,
    /// A LayerNorm on the embeddings before block 0 (CLIP's `pre_layrnorm`).
    pub norm_pre: bool,
    /// Logits are a scaled cosine between the projected image embedding and
    /// per-class text embeddings (CLIP zero-shot), not a linear head.
    pub zero_shot: bool,
    #[serde(skip_serializing_if = "Probability::is_softmax")]
    pub probability: Probability,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Family {
    /// The plain ViT: CLS, erf GELU, CLS readout.
    pub const VIT: Family = Family {
        name: "ViT",
        cls: true,
        distillation: false,
        registers: 0,
        readout: Readout::Cls,
        activation: FfnActivation::GeluErf,
        layer_scale: false,
        norm_pre: false,
        zero_shot: false,
        probability: Probability::Softmax,
    };

    /// MAE fine-tuned with global pooling: as the ViT, read out by the patch mean.
    pub const MAE: Family = Family {
        name: "MAE",
        readout: Readout::MeanPatches,
        ..Family::VIT
    };

    /// SigLIP's vision tower: no CLS token, tanh GELU, the final norm at every
    /// token, the attention-pooling head, zero-shot with a sigmoid per class.
    pub const SIGLIP: Family = Family {
        name: "SigLIP vision tower",
        cls: false,
        readout: Readout::AttentionPool,
        activation: FfnActivation::GeluTanh,
        zero_shot: true,
        probability: Probability::Sigmoid,
        ..Family::VIT
    };

    /// Tokens before the patches: CLS, then the distillation token or registers.
    pub fn prefix_tokens(&self) -> usize {
        usize::from(self.cls) + usize::from(self.distillation) + self.registers
    }

    /// The tokens a neuron lives at by default: where the paper's code puts it for
    /// the family (the CLS token; the patches for a readout that reads them all, as
    /// its MAE code does for MAE's patch mean; SigLIP, without a CLS token, likewise).
    pub fn neuron_tokens(&self) -> Tokens {
        match self.readout {
            Readout::MeanPatches | Readout::AttentionPool => Tokens::Patches,
            _ => Tokens::Cls,
        }
    }

    /// The rows `tokens` occupy in a sequence of `total` rows (empty when the
    /// family has no such token).
    pub fn rows(&self, tokens: Tokens, total: usize) -> Range<usize> {
        match tokens {
            Tokens::Cls => 0..usize::from(self.cls),
            Tokens::Distillation if self.distillation => 1..2,
            Tokens::Distillation => 1..1,
            Tokens::Patches => self.prefix_tokens()..total,
            Tokens::All => 0..total,
        }
    }

    /// The options, one line each, for `inspect`.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        let mut tokens: Vec<String> = self.cls.then(|| "CLS".to_string()).into_iter().collect();
        if self.distillation {
            tokens.push("distillation".into());
        }
        if self.registers > 0 {
            tokens.push(format!("{} registers", self.registers));
        }
        tokens.push("patches".into());
        let readout = match self.readout {
            Readout::Cls => "CLS token -> norm -> head",
            Readout::ClsAndDistillation => "mean of a CLS head and a distillation head",
            Readout::MeanPatches => "mean of the patch tokens -> fc_norm -> head",
            Readout::ClsAndMeanPatches => "norm -> [CLS, mean of the patch tokens] -> head",
            Readout::AttentionPool => {
                "norm -> attention pooling (a probe query over every token) -> x + MLP(LN(x))"
            }
        };
        let probability = match self.probability {
            Probability::Softmax => "softmax over the classes",
            Probability::Sigmoid => "sigmoid per class",
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        vec![
            ("tokens", tokens.join(", ")),
            (
                "readout",
                match (self.zero_shot, self.probability) {
                    (true, Probability::Softmax) => {
                        format!("{readout} (projection), cosine with class text embeddings x scale")
                    }
                    (true, Probability::Sigmoid) => {
                        format!("{readout}, cosine with class text embeddings x scale + bias")
                    }
                    (false, _) => readout.into(),
                },
            ),
            ("probability", probability.into()),
            ("activation", format!("{:?}", self.activation)),
            ("layer scale", yes_no(self.layer_scale)),
            ("norm before block 0", yes_no(self.norm_pre)),
        ]
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name)
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

crate::names::display_by_name!(Compat);

impl Named for Compat {
    const ALL: &'static [Compat] = &[Compat::Principled, Compat::Reference];

    fn name(self) -> &'static str {
        match self {
            Compat::Principled => "principled",
            Compat::Reference => "reference",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Compat::Principled => "the model's own forward, and a score over a neuron that spans tokens divided by their number",
            Compat::Reference => "the authors' code exactly, quirks included (implies --preprocess reference)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rows() {
        let vit = Family::VIT;
        assert_eq!(vit.rows(Tokens::Cls, 65), 0..1);
        assert_eq!(vit.rows(Tokens::Patches, 65), 1..65);
        assert_eq!(vit.rows(Tokens::All, 65), 0..65);
        assert!(vit.rows(Tokens::Distillation, 65).is_empty());
        let deit = Family {
            distillation: true,
            ..Family::VIT
        };
        assert_eq!(deit.rows(Tokens::Distillation, 66), 1..2);
        assert_eq!(deit.rows(Tokens::Patches, 66), 2..66);
        let dinov2 = Family {
            registers: 4,
            ..Family::VIT
        };
        assert_eq!(dinov2.rows(Tokens::Patches, 21), 5..21);
        let siglip = Family::SIGLIP;
        assert!(siglip.rows(Tokens::Cls, 16).is_empty());
        assert_eq!(siglip.rows(Tokens::Patches, 16), 0..16);
    }

    /// Both gradients against central differences of their own probabilities.
    #[test]
    fn probability_gradients() {
        let logits = [0.3f32, -1.2, 2.0, 0.1];
        for p in [Probability::Softmax, Probability::Sigmoid] {
            let (grad, pt) = p.gradient(&logits, &[2], 4);
            assert_eq!(pt[0], p.of(&logits, 4)[2]);
            for k in 0..4 {
                let at = |h: f32| {
                    let mut l = logits;
                    l[k] += h;
                    p.of(&l, 4)[2]
                };
                let numeric = (at(1e-3) - at(-1e-3)) / 2e-3;
                assert!(
                    (grad[k] - numeric).abs() < 1e-4,
                    "{p:?} {k}: {} vs {numeric}",
                    grad[k]
                );
            }
        }
    }
}
