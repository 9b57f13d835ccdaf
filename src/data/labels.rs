//! Class folders to the model's class indices: by name (case and separators
//! forgiven), by a label-map file, or, when the names say nothing and the counts
//! agree, by sorted folder order (said so in a note). When the names say nothing
//! and the counts differ, a run that needs no labels (`--target predicted`) goes on
//! with the images unlabelled (said so in a note); a run that needs them stops.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// What decides a class folder's label.
#[derive(Clone, Copy, Debug, Default)]
pub struct Labels<'a> {
    /// The model's class names (`id2label`), when it has them.
    pub names: Option<&'a [String]>,
    /// The model's number of classes.
    pub classes: usize,
    /// A file mapping folder names to classes (`--label-map`).
    pub map: Option<&'a Path>,
    /// Whether the run needs every image's label (`--target label`, `prune`); when
    /// not, folders that name none of the classes leave their images unlabelled.
    pub required: bool,
}

/// Each folder's class index (none: unlabelled), and how they were found when not
/// by name.
pub struct Assigned {
    pub labels: Vec<Option<usize>>,
    pub note: Option<String>,
}

/// The class of each of `folders` (the class folders of `root`, sorted).
pub fn assign(root: &Path, folders: &[String], labels: &Labels) -> Result<Assigned> {
    if let Some(map) = labels.map {
        let labels = from_map(map, folders, labels)?;
        return Ok(Assigned {
            labels: labels.into_iter().map(Some).collect(),
            note: None,
        });
    }
    let matched: Vec<Option<usize>> = match labels.names {
        Some(names) => folders
            .iter()
            .map(|f| class_named(f, names))
            .collect::<Result<_>>()
            .with_context(|| format!("{}: give --label-map FILE", root.display()))?,
        None => vec![None; folders.len()],
    };
    let unmatched: Vec<&str> = folders
        .iter()
        .zip(&matched)
        .filter(|(_, m)| m.is_none())
        .map(|(f, _)| f.as_str())
        .collect();
    if unmatched.is_empty() {
        return Ok(Assigned {
            labels: matched,
            note: None,
        });
    }
    let hint = "give --label-map FILE (JSON {\"folder\": class index or name}, or a text file whose line i starts with class i's folder name)";
    if unmatched.len() < folders.len() {
        bail!(
            "{}: class folder(s) {} match none of the model's class names; {hint}",
            root.display(),
            shown(&unmatched)
        );
    }
    if folders.len() != labels.classes {
        if !labels.required {
            return Ok(Assigned {
                labels: vec![None; folders.len()],
                note: Some(format!(
                    "{}: the class folders ({}) name none of the model's classes, so their images are unlabelled (label null); to label them, {hint}",
                    root.display(),
                    shown(&unmatched),
                )),
            });
        }
        bail!(
            "{}: the {} class folders ({}) do not name the model's classes and the model has {} classes; {hint}",
            root.display(),
            folders.len(),
            shown(&unmatched),
            labels.classes
        );
    }
    Ok(Assigned {
        labels: (0..folders.len()).map(Some).collect(),
        note: Some(format!(
            "{}: the class folders do not name the model's classes; labels by sorted folder order ({} folders, {} classes)",
            root.display(),
            folders.len(),
            labels.classes
        )),
    })
}

/// The first few of `names`, for a message.
fn shown(names: &[&str]) -> String {
    let mut text = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

/// Lower case, letters and digits only: `Sea_Lion`, `sea-lion` and `sea lion` agree.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The class whose name (or one of its comma-separated synonyms) is `folder`.
fn class_named(folder: &str, names: &[String]) -> Result<Option<usize>> {
    let want = normalize(folder);
    let found: Vec<usize> = (0..names.len())
        .filter(|&c| {
            names[c]
                .split(',')
                .chain([names[c].as_str()])
                .any(|alias| !want.is_empty() && normalize(alias) == want)
        })
        .collect();
    match found[..] {
        [] => Ok(None),
        [c] => Ok(Some(c)),
        _ => bail!("class folder {folder} names several of the model's classes ({found:?})"),
    }
}

/// Labels from a label-map file: JSON `{"folder": index or name}`, or text whose
/// line i (blank lines skipped) starts with the folder name of class i, as
/// ImageNet's `LOC_synset_mapping.txt`.
fn from_map(map: &Path, folders: &[String], labels: &Labels) -> Result<Vec<usize>> {
    let text = crate::files::read_text(map)?;
    let table =
        parse_map(&text, labels).with_context(|| format!("{}: not a label map", map.display()))?;
    folders
        .iter()
        .map(|f| match table.get(f) {
            Some(&c) if c < labels.classes => Ok(c),
            Some(&c) => bail!(
                "{}: folder {f} has class {c}, but the model has {} classes",
                map.display(),
                labels.classes
            ),
            None => bail!("{}: no class for folder {f}", map.display()),
        })
        .collect()
}

/// A label map's table, folder to class; a folder given twice (two JSON keys, or
/// two lines) and JSON that is not an object are refused.
fn parse_map(text: &str, labels: &Labels) -> Result<HashMap<String, usize>> {
    let start = text.trim_start();
    if !(start.starts_with('{') || start.starts_with('[')) {
        let mut table = HashMap::new();
        let firsts = text.lines().filter_map(|l| l.split_whitespace().next());
        for (c, folder) in firsts.enumerate() {
            if let Some(first) = table.insert(folder.to_string(), c) {
                bail!("folder {folder} is given twice, for classes {first} and {c} (lines of the text are classes 0, 1, ...)");
            }
        }
        return Ok(table);
    }
    let json = crate::files::parse_json(text)?;
    let Some(object) = json.as_object() else {
        bail!(
            "a JSON {}, not an object {{\"folder\": class index or name}}",
            if json.is_array() { "array" } else { "value" }
        );
    };
    object
        .iter()
        .map(|(folder, class)| {
            let index = match class {
                serde_json::Value::Number(n) => n.as_u64().map(|c| c as usize),
                serde_json::Value::String(name) => {
                    class_named(name, labels.names.unwrap_or_default())?
                }
                _ => None,
            };
            match index {
                Some(c) => Ok((folder.clone(), c)),
                None => bail!(
                    "folder {folder}: {class} is neither a class index nor one of the model's class names"
                ),
            }
        })
        .collect()
}
