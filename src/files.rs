//! Opening the user's files, one way for every input: a file is checked to be a
//! regular file before it is read (a FIFO would hang the run, a link to
//! `/dev/zero` would never end), it is opened without blocking, and it is read
//! with a bound on its size; JSON with a key given twice is refused.

use anyhow::{bail, Context, Result};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The most bytes one kind of input may have.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub bytes: u64,
    /// What the input is, for the message.
    pub what: &'static str,
}

/// A JSON or text input (config.json, preprocessor_config.json, a label map, class
/// names, a stats file, a shard manifest).
pub const TEXT: Limit = Limit {
    bytes: 256 << 20,
    what: "a JSON or text input",
};

/// One line of a JSON-lines records file.
pub const LINE: Limit = Limit {
    bytes: 256 << 20,
    what: "a record line",
};

/// An image file: far more than any photograph of the pixel limit
/// ([`crate::data::decode::MAX_PIXELS`]) compresses to.
pub const IMAGE: Limit = Limit {
    bytes: 256 << 20,
    what: "an image file",
};

/// Weights and saved states, as large as they are (still regular files only).
pub const WHOLE: Limit = Limit {
    bytes: u64::MAX,
    what: "a file",
};

/// What a file that is not a regular one is, for the message.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// An error unless `path` (links followed) is a regular file.
pub fn check_regular(path: &Path) -> Result<std::fs::Metadata> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{}: {}, where a regular file is expected",
            path.display(),
            kind_of(&meta)
        );
    }
    Ok(meta)
}

/// Opens `path` with `options` once it is checked to be a regular file; it is
/// opened without blocking and checked again once open (a FIFO swapped in between
/// would otherwise hang).
pub fn open_with(path: &Path, options: &mut OpenOptions) -> Result<File> {
    if path.exists() {
        check_regular(path)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{}: {}, where a regular file is expected",
            path.display(),
            kind_of(&meta)
        );
    }
    Ok(file)
}

/// Opens a regular file for reading.
pub fn open(path: &Path) -> Result<File> {
    open_with(path, OpenOptions::new().read(true))
}

/// The error of an input over its limit.
fn too_large(path: &Path, size: u64, limit: Limit) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: {size} bytes or more, over the limit of {} MiB for {}",
        path.display(),
        limit.bytes >> 20,
        limit.what
    )
}

/// The bytes of a regular file of at most `limit`.
pub fn read(path: &Path, limit: Limit) -> Result<Vec<u8>> {
    let file = open(path)?;
    let size = file.metadata().map_or(0, |m| m.len());
    if size > limit.bytes {
        return Err(too_large(path, size, limit));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.len() as u64 > limit.bytes {
        return Err(too_large(path, bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// The text of a regular file of at most [`TEXT`] bytes.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path, TEXT)?)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))
}

/// A JSON file (at most [`TEXT`] bytes); a key given twice in one object is an
/// error naming it, not the last value silently.
pub fn read_json(path: &Path) -> Result<Value> {
    parse_json(&read_text(path)?).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// JSON text as a value; a key given twice in one object is an error naming it.
pub fn parse_json(text: &str) -> Result<Value> {
    let Strict(value) = serde_json::from_str(text)?;
    Ok(value)
}

/// A JSON value whose objects have no key twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("key {key:?} given twice")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// One line of a text file, without its newline.
pub struct Line {
    pub bytes: Vec<u8>,
    /// Whether a newline ended it (only a file's last line may lack one).
    pub terminated: bool,
}

/// The lines of a regular file, each of at most [`LINE`] bytes, read as they are
/// needed (a file of any length in bounded memory per line).
pub struct Lines {
    path: std::path::PathBuf,
    reader: BufReader<File>,
    number: usize,
}

/// The lines of `path`, a regular file.
pub fn lines(path: &Path) -> Result<Lines> {
    Ok(Lines {
        path: path.to_path_buf(),
        reader: BufReader::new(open(path)?),
        number: 0,
    })
}

impl Iterator for Lines {
    type Item = Result<Line>;

    fn next(&mut self) -> Option<Result<Line>> {
        let mut bytes = Vec::new();
        let mut bounded = (&mut self.reader).take(LINE.bytes + 1);
        match bounded.read_until(b'\n', &mut bytes) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                let error =
                    anyhow::Error::new(e).context(format!("{}: cannot read", self.path.display()));
                return Some(Err(error));
            }
        }
        self.number += 1;
        let terminated = bytes.last() == Some(&b'\n');
        if terminated {
            bytes.pop();
        } else if bytes.len() as u64 > LINE.bytes {
            return Some(Err(anyhow::anyhow!(
                "{}: line {} is over the limit of {} MiB for {}",
                self.path.display(),
                self.number,
                LINE.bytes >> 20,
                LINE.what
            )));
        }
        Some(Ok(Line { bytes, terminated }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        assert!(parse_json(r#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#).is_ok());
        let err = parse_json(r#"{"a": 1, "a": 2}"#).unwrap_err().to_string();
        assert!(err.contains("\"a\" given twice"), "{err}");
        let err = parse_json(r#"{"x": [{"k": 1, "k": 1}]}"#).unwrap_err();
        assert!(err.to_string().contains("\"k\" given twice"), "{err}");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("neuronpath-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo.json");
        let _ = std::fs::remove_file(&fifo);
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = format!("{:#}", read_json(&fifo).unwrap_err());
        assert!(err.contains("fifo.json: a FIFO"), "{err}");
        let err = format!("{:#}", read(Path::new("/dev/zero"), TEXT).unwrap_err());
        assert!(err.contains("/dev/zero: a device"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
