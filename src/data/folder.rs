//! Which images to run: one file, or an ImageFolder tree (one sub-folder per
//! class). Class folders are matched to the model's classes by name; see
//! [`super::labels`].
//!
//! The walk never hangs or repeats: hidden entries (`.name`) and special files
//! (FIFOs, sockets, devices) are skipped and reported, a folder reached twice
//! (symbolic link loops) is walked once, and a key (the path relative to the root)
//! names its file exactly, also when the name is not UTF-8 (see [`key_of`]).

use super::labels::{self, Labels};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

#[derive(Clone, Debug)]
pub struct ImageEntry {
    pub path: PathBuf,
    /// Path relative to the `--images` root (the file name for a single file).
    pub key: String,
    /// The model's class index of the image's folder.
    pub label: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct ImageSet {
    pub root: PathBuf,
    /// Sorted class folder names; empty for a single file or a flat folder.
    pub classes: Vec<String>,
    pub entries: Vec<ImageEntry>,
    /// What was left out, and how labels were assigned when not by name, for the user.
    pub notes: Vec<String>,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
}

/// A folder's listing, walked once: visible entries sorted, split into folders and
/// image files; everything else that looks like an image is noted.
struct Walk {
    seen: HashSet<PathBuf>,
    notes: Vec<String>,
}

impl Walk {
    /// Whether `dir` is walked for the first time (else it is noted and skipped).
    fn first_visit(&mut self, dir: &Path) -> Result<bool> {
        let real = std::fs::canonicalize(dir)
            .with_context(|| format!("{}: cannot resolve", dir.display()))?;
        if self.seen.contains(&real) {
            self.notes.push(format!(
                "{}: skipped, a link to a folder listed already ({})",
                dir.display(),
                real.display()
            ));
            return Ok(false);
        }
        self.seen.insert(real);
        Ok(true)
    }

    /// `(folders, images)` of `dir`, visible entries sorted; a special file that
    /// looks like an image is noted.
    fn list(&mut self, dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        let mut items: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !is_hidden(p))
            .collect();
        items.sort();
        let (mut dirs, mut files) = (Vec::new(), Vec::new());
        for item in items {
            // Links are followed; a broken one or a special file is not an image.
            match std::fs::metadata(&item) {
                Ok(m) if m.is_dir() => dirs.push(item),
                Ok(m) if m.is_file() && is_image(&item) => files.push(item),
                Ok(_) if is_image(&item) => self
                    .notes
                    .push(format!("{}: skipped, not a regular file", item.display())),
                Err(e) if is_image(&item) => {
                    self.notes.push(format!("{}: skipped, {e}", item.display()))
                }
                _ => {}
            }
        }
        Ok((dirs, files))
    }

    /// Images below `dir` (recursively), sorted, as torchvision walks a class folder;
    /// a folder reached again (a link loop, a link to another class) is skipped.
    fn images_below(&mut self, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let (dirs, files) = self.list(dir)?;
        out.extend(files);
        for sub in dirs {
            if self.first_visit(&sub)? {
                self.images_below(&sub, out)?;
            }
        }
        Ok(())
    }
}

/// The key of `path` below `root`: `/`-separated, with `%` written `%25` and the
/// bytes of a name that are not UTF-8 written `%XX`, so that no two files share a
/// key and [`path_of`] finds the file again.
pub fn key_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel.iter().map(|p| escape(p.as_encoded_bytes())).collect();
    parts.join("/")
}

fn escape(bytes: &[u8]) -> String {
    bytes
        .utf8_chunks()
        .flat_map(|chunk| {
            let valid = chunk.valid().replace('%', "%25");
            let invalid = chunk.invalid().iter().map(|b| format!("%{b:02X}"));
            std::iter::once(valid).chain(invalid)
        })
        .collect()
}

/// The file a key names below `root` (the inverse of [`key_of`]).
pub fn path_of(root: &Path, key: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    for part in key.split('/') {
        path.push(from_bytes(unescape(part)));
    }
    path
}

#[cfg(unix)]
fn from_bytes(bytes: Vec<u8>) -> std::ffi::OsString {
    std::os::unix::ffi::OsStringExt::from_vec(bytes)
}

#[cfg(not(unix))]
fn from_bytes(bytes: Vec<u8>) -> std::ffi::OsString {
    String::from_utf8_lossy(&bytes).into_owned().into()
}

fn unescape(part: &str) -> Vec<u8> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if bytes[i] == b'%' => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

impl ImageSet {
    /// The images of `root`; class folders get the model's class indices from `labels`.
    pub fn open(root: &Path, labels: &Labels) -> Result<ImageSet> {
        let meta = std::fs::metadata(root)
            .with_context(|| format!("{}: no such image file or folder", root.display()))?;
        if meta.is_file() {
            return Ok(ImageSet::single(root));
        }
        if !meta.is_dir() {
            bail!("{}: neither an image file nor a folder", root.display());
        }
        let mut walk = Walk {
            seen: HashSet::new(),
            notes: Vec::new(),
        };
        let (dirs, files) = walk.list(root)?;
        // The root and every class folder are walked once, each as itself (a second
        // link to a class folder is no class of its own).
        walk.first_visit(root)?;
        let mut class_dirs = Vec::new();
        for dir in dirs {
            if walk.first_visit(&dir)? {
                class_dirs.push(dir);
            }
        }
        let entry = |path: PathBuf, label| ImageEntry {
            key: key_of(root, &path),
            path,
            label,
        };
        let mut entries = Vec::new();
        let classes: Vec<String> = class_dirs
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if classes.is_empty() {
            entries.extend(files.into_iter().map(|p| entry(p, None)));
        } else {
            let assigned = labels::assign(root, &classes, labels)?;
            walk.notes.extend(assigned.note);
            for (dir, label) in class_dirs.iter().zip(assigned.labels) {
                let mut found = Vec::new();
                walk.images_below(dir, &mut found)?;
                entries.extend(found.into_iter().map(|p| entry(p, label)));
            }
        }
        if entries.is_empty() {
            bail!("{}: no images (.jpg, .jpeg, .png) found", root.display());
        }
        Ok(ImageSet {
            root: root.to_path_buf(),
            classes,
            entries,
            notes: walk.notes,
        })
    }

    /// One image file, unlabelled.
    fn single(file: &Path) -> ImageSet {
        let key = file
            .file_name()
            .map(|n| escape(n.as_encoded_bytes()))
            .unwrap_or_default();
        ImageSet {
            root: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
            classes: vec![],
            entries: vec![ImageEntry {
                path: file.to_path_buf(),
                key,
                label: None,
            }],
            notes: vec![],
        }
    }
}
