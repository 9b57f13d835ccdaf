//! The report's inputs must describe one run: manipulations, statistics and
//! neuron descriptions of the paths' model (and manipulations of these very path
//! records), and the images folder the paths were found on.

use super::Inputs;
use crate::record::{PathRecord, Record};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::Path;

/// What each input is called in messages (its file, for the command line).
pub struct Names<'a> {
    pub paths: &'a str,
    pub manipulate: &'a str,
    pub stats: &'a str,
    pub neurons: &'a str,
}

/// Refuses inputs of another model than the paths' (their fingerprints), a
/// manipulation made from another path record than the paths hold, and an image
/// whose file changed since its paths were found.
pub fn check(inputs: &Inputs, names: &Names) -> Result<()> {
    let Some(first) = inputs.records.first() else {
        return Ok(());
    };
    let model = first.model_fingerprint.as_deref();
    let other = |what: &str, theirs: Option<&str>| -> Result<()> {
        match (model, theirs) {
            (Some(ours), Some(theirs)) if ours != theirs => bail!(
                "{what} was made with another model (fingerprint {theirs}) than the paths in {} (fingerprint {ours}); give the files of one run",
                names.paths
            ),
            _ => Ok(()),
        }
    };
    let paths: HashMap<String, &PathRecord> =
        (inputs.records.iter()).map(|r| (r.key(), r)).collect();
    for m in &inputs.manipulations {
        let what = format!(
            "{}: the {} record of {} ({})",
            names.manipulate, m.op, m.image, m.method
        );
        other(&what, m.model_fingerprint.as_deref())?;
        let path = paths.get(&PathRecord::key_of(&m.image, m.method));
        match (path, &m.path_fingerprint) {
            (None, _) => bail!(
                "{what} edits a path that {} does not hold; give the files of one run",
                names.paths
            ),
            (Some(p), Some(print)) if &p.fingerprint() != print => bail!(
                "{what} was made from another path record than {} holds; give the files of one run",
                names.paths
            ),
            _ => {}
        }
    }
    if let Some(stats) = &inputs.stats {
        other(names.stats, stats.model_fingerprint.as_deref())?;
    }
    for n in &inputs.neurons {
        let what = format!("{}: neuron {}:{}", names.neurons, n.layer, n.neuron);
        other(&what, Some(&n.model_fingerprint))?;
    }
    crate::experiments::check_images(&inputs.records, &inputs.images, Path::new(names.paths))
}
