//! Runs over many images, as the command line and the Python package both run
//! them: the images loaded in batches, the work done, one record written per
//! result (resumably, by the caller's sink), progress reported and a stop
//! honoured through [`crate::progress::Progress`].

pub mod manipulate;
pub mod paths;

use crate::model::{Normalization, Vit};
use anyhow::{bail, Result};
use std::path::Path;

/// Where an experiment's images come from, by the keys its path records name them by.
#[derive(Clone, Copy)]
pub enum Pixels<'a> {
    /// Files below a root (the folder given to `paths`), read, decoded and normalised.
    Files(&'a Path),
    /// Prepared pixels, `[N, 3, H, W]` flattened; image `i` has key `i`.
    Array(&'a [f32]),
}

impl Pixels<'_> {
    /// The normalised pixels of the image with `key`; an error names the image.
    pub fn load(&self, key: &str, vit: &Vit, norm: &Normalization) -> Result<Vec<f32>> {
        match *self {
            Pixels::Files(root) => {
                let path = crate::data::folder::path_of(root, key);
                crate::data::load_image(&path, vit, norm)
                    .map_err(|e| e.context(path.display().to_string()))
            }
            Pixels::Array(all) => {
                let per_image = 3 * vit.config.image_size * vit.config.image_size;
                let n = all.len() / per_image;
                match key.parse::<usize>() {
                    Ok(i) if i < n => Ok(all[i * per_image..(i + 1) * per_image].to_vec()),
                    _ => bail!("image {key}: no such image among the {n} of the array"),
                }
            }
        }
    }
}
