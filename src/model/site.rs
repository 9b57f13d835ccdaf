//! Intervention sites: where in the model a unit lives, and what is done to it.
//!
//! A [`Site`] names a block, an activation of that block and a set of token rows,
//! printed in the spirit of TransformerLens hook names: `blocks.3.mlp.post@cls` is
//! the post-activation FFN output of block 3 at the CLS token; `head.mlp.post` the
//! post-activation of an attention-pooling head's MLP (SigLIP), after every block. An
//! [`Intervention`] pairs a site with an [`Action`]; the forward pass applies it,
//! and the backward pass reports gradients keyed by site.

use crate::names::Named;
use anyhow::{bail, Context, Result};
use std::fmt;
use std::str::FromStr;

/// Which activation of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activation {
    /// The FFN hidden activation after its non-linearity (`mlp.post`): one unit
    /// per FFN channel, the paper's neuron.
    MlpPost,
    /// The attention output before the output projection (`attn.z`, TransformerLens'
    /// `hook_z`): one unit per head, its `head_dim` values.
    AttnZ,
    /// The attention-pooling head's MLP after its non-linearity (`head.mlp.post`,
    /// SigLIP): one unit per channel, at the head's one row (the probe's). Not in a
    /// block: its site is [`Site::HEAD_MLP`].
    HeadMlpPost,
}

impl Activation {
    /// The activations of a block.
    pub const ALL: [Activation; 2] = [Activation::MlpPost, Activation::AttnZ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::MlpPost => "mlp.post",
            Activation::AttnZ => "attn.z",
            Activation::HeadMlpPost => "head.mlp.post",
        }
    }
}

/// Which token rows of the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tokens {
    /// The CLS token (the paper's neuron for the plain ViT).
    Cls,
    /// The distillation token (DeiT distilled; the second token).
    Distillation,
    /// Every patch token, prefix tokens excluded (the paper's neuron for MAE: one
    /// FFN channel across the patches).
    Patches,
    /// Every token of the sequence.
    All,
}

crate::names::display_by_name!(Tokens);

impl Named for Tokens {
    const ALL: &'static [Tokens] = &[
        Tokens::Cls,
        Tokens::Distillation,
        Tokens::Patches,
        Tokens::All,
    ];

    fn name(self) -> &'static str {
        match self {
            Tokens::Cls => "cls",
            Tokens::Distillation => "dist",
            Tokens::Patches => "patches",
            Tokens::All => "all",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Tokens::Cls => "the CLS token",
            Tokens::Distillation => "DeiT's distillation token",
            Tokens::Patches => "one channel across the patch tokens (the paper's neuron for MAE)",
            Tokens::All => "one channel across every token",
        }
    }
}

impl FromStr for Tokens {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Tokens> {
        match Tokens::from_name(s) {
            Some(t) => Ok(t),
            None => bail!("unknown tokens {s:?} (known: cls, dist, patches, all)"),
        }
    }
}

/// One place to read or intervene: a block, an activation, a set of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub block: usize,
    pub activation: Activation,
    pub tokens: Tokens,
}

impl Site {
    /// The block index of a site after every block (the readout's).
    pub const AFTER_BLOCKS: usize = usize::MAX;

    /// The attention-pooling head's MLP post-activation (SigLIP), at its one row.
    pub const HEAD_MLP: Site = Site {
        block: Site::AFTER_BLOCKS,
        activation: Activation::HeadMlpPost,
        tokens: Tokens::All,
    };

    /// The FFN post-activation of `block` at `tokens`.
    pub fn mlp_post(block: usize, tokens: Tokens) -> Site {
        Site {
            block,
            activation: Activation::MlpPost,
            tokens,
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.activation == Activation::HeadMlpPost {
            return f.write_str(self.activation.name());
        }
        write!(
            f,
            "blocks.{}.{}@{}",
            self.block,
            self.activation.name(),
            self.tokens.name()
        )
    }
}

impl FromStr for Site {
    type Err = anyhow::Error;

    /// Parses `blocks.N.mlp.post@cls` (or `@patches`, `@all`), and `head.mlp.post`.
    fn from_str(s: &str) -> Result<Site> {
        if s == Site::HEAD_MLP.activation.name() {
            return Ok(Site::HEAD_MLP);
        }
        let bad =
            || format!("{s:?} is not a site name (e.g. blocks.3.mlp.post@cls, head.mlp.post)");
        let (hook, tokens) = s.split_once('@').with_context(bad)?;
        let rest = hook.strip_prefix("blocks.").with_context(bad)?;
        let (block, activation) = rest.split_once('.').with_context(bad)?;
        let block: usize = block.parse().with_context(bad)?;
        let Some(activation) = Activation::ALL.into_iter().find(|a| a.name() == activation) else {
            bail!("{s:?}: unknown activation {activation:?} (known: mlp.post, attn.z)");
        };
        let tokens: Tokens = tokens.parse().with_context(|| format!("{s:?}"))?;
        Ok(Site {
            block,
            activation,
            tokens,
        })
    }
}

impl serde::Serialize for Site {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Site {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Site, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What happens to the values at a site.
#[derive(Clone, Copy, Debug)]
pub enum Action<'a> {
    /// Overwritten by given values, `[S, rows, width]` (width: the FFN's for
    /// `mlp.post`, the model's for `attn.z`): upstream changes do not reach
    /// them and no gradient flows through them (the reference's `tmp_score`).
    Replace(&'a [f32]),
    /// Unit `n` (a neuron; a head's values) multiplied by `factor` at every row of
    /// the site, for each `(n, factor)` of a sequence's list: `[S][..]`.
    Scale(&'a [Vec<(usize, f32)>]),
}

/// An action at a site.
#[derive(Clone, Copy, Debug)]
pub struct Intervention<'a> {
    pub site: Site,
    pub action: Action<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (&tokens, activation) in Tokens::ALL.iter().zip(Activation::ALL.into_iter().cycle()) {
            let site = Site {
                block: 11,
                activation,
                tokens,
            };
            let name = site.to_string();
            assert_eq!(name.parse::<Site>().unwrap(), site);
            let json = serde_json::to_string(&site).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Site>(&json).unwrap(), site);
        }
        assert_eq!(
            Site::mlp_post(3, Tokens::Cls).to_string(),
            "blocks.3.mlp.post@cls"
        );
        let head = Site::HEAD_MLP;
        assert_eq!(head.to_string(), "head.mlp.post");
        assert_eq!("head.mlp.post".parse::<Site>().unwrap(), head);
        let json = serde_json::to_string(&head).unwrap();
        assert_eq!(serde_json::from_str::<Site>(&json).unwrap(), head);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "blocks.3.mlp.post",
            "blocks.x.mlp.post@cls",
            "blocks.3.attn.out@cls",
            "blocks.3.attn.z",
            "blocks.3.mlp.post@distillation",
            "layer.3.mlp.post@cls",
            "blocks.3.head.mlp.post@cls",
            "head.mlp.post@cls",
        ] {
            assert!(bad.parse::<Site>().is_err(), "{bad}");
        }
    }
}
