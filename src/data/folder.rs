//! Which images to run: one file, or an ImageFolder tree (one sub-folder per
//! class; class index = position in sorted folder order, as torchvision).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

#[derive(Clone, Debug)]
pub struct ImageEntry {
    pub path: PathBuf,
    /// Path relative to the `--images` root (the file name for a single file).
    pub key: String,
    pub label: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct ImageSet {
    pub root: PathBuf,
    /// Sorted class folder names; empty for a single file or a flat folder.
    pub classes: Vec<String>,
    pub entries: Vec<ImageEntry>,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut items: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    items.sort();
    Ok(items)
}

/// Images below `dir` (recursively), sorted, as torchvision walks a class folder.
fn images_below(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for item in sorted_dir(dir)? {
        if item.is_dir() {
            images_below(&item, out)?;
        } else if is_image(&item) {
            out.push(item);
        }
    }
    Ok(())
}

impl ImageSet {
    pub fn open(root: &Path) -> Result<ImageSet> {
        if root.is_file() {
            let key = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let entries = vec![ImageEntry {
                path: root.to_path_buf(),
                key,
                label: None,
            }];
            return Ok(ImageSet {
                root: root.parent().unwrap_or(Path::new(".")).to_path_buf(),
                classes: vec![],
                entries,
            });
        }
        if !root.is_dir() {
            bail!("{}: no such image file or folder", root.display());
        }
        let items = sorted_dir(root)?;
        let class_dirs: Vec<&PathBuf> = items.iter().filter(|p| p.is_dir()).collect();
        let key_of = |p: &Path| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/")
        };
        let mut entries = Vec::new();
        let classes: Vec<String>;
        if class_dirs.is_empty() {
            classes = vec![];
            for p in items.iter().filter(|p| is_image(p)) {
                entries.push(ImageEntry {
                    path: p.clone(),
                    key: key_of(p),
                    label: None,
                });
            }
        } else {
            classes = class_dirs
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            for (label, dir) in class_dirs.iter().enumerate() {
                let mut files = Vec::new();
                images_below(dir, &mut files)?;
                entries.extend(files.into_iter().map(|p| ImageEntry {
                    key: key_of(&p),
                    path: p,
                    label: Some(label),
                }));
            }
        }
        if entries.is_empty() {
            bail!("{}: no images (.jpg, .jpeg, .png) found", root.display());
        }
        Ok(ImageSet {
            root: root.to_path_buf(),
            classes,
            entries,
        })
    }
}
