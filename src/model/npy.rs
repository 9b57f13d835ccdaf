//! Reading NumPy `.npy` arrays and `.npz` archives (stored or deflated).

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I64(Vec<i64>),
    Str(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl Array {
    /// The values as `f32` (floating and integer arrays).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match &self.data {
            NpyData::F32(v) => v.clone(),
            NpyData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::Str(_) => bail!("array holds strings, not numbers"),
        })
    }
}

/// Parses one `.npy` file held in memory; malformed input is an error, never a panic.
pub fn parse_npy(bytes: &[u8]) -> Result<Array> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy array (bad magic)");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let len = bytes.get(8..12).context(".npy header length truncated")?;
            (u32::from_le_bytes(len.try_into()?) as usize, 12)
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let header = bytes
        .get(start..start + header_len)
        .context(".npy header truncated")?;
    let header = std::str::from_utf8(header).context("non-UTF-8 .npy header")?;
    let descr = quoted(field(header, "descr")?).context("bad descr")?;
    if field(header, "fortran_order")?.starts_with("True") {
        bail!("Fortran-ordered arrays are not supported");
    }
    let shape = parse_shape(field(header, "shape")?)?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .context("shape too large")?;
    let body = &bytes[start + header_len..];
    let need = |width: usize| -> Result<&[u8]> {
        let len = count.checked_mul(width).context("shape too large")?;
        body.get(..len)
            .with_context(|| format!("array data truncated: {} of {len} bytes", body.len()))
    };
    let data = match descr {
        "<f4" => NpyData::F32(
            need(4)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        "<f8" => NpyData::F32(
            need(8)?
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
        ),
        "<f2" => NpyData::F32(
            need(2)?
                .chunks_exact(2)
                .map(|b| crate::numeric::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        ),
        "|u1" | "<u1" => NpyData::U8(need(1)?.to_vec()),
        "<i8" => NpyData::I64(
            need(8)?
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        "<i4" => NpyData::I64(
            need(4)?
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                .collect(),
        ),
        d if d.starts_with("<U") => {
            let chars: usize = d[2..].parse().context("bad unicode width")?;
            if chars == 0 {
                bail!("unicode width 0");
            }
            let strings = need(chars.checked_mul(4).context("bad unicode width")?)?
                .chunks_exact(4 * chars)
                .map(|s| {
                    s.chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                        .take_while(|&c| c != 0)
                        .filter_map(char::from_u32)
                        .collect()
                })
                .collect();
            NpyData::Str(strings)
        }
        other => bail!("unsupported .npy dtype {other}"),
    };
    Ok(Array { shape, data })
}

/// The text after `'key':` in a `.npy` header dictionary.
fn field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let quoted_key = format!("'{key}'");
    let at = header
        .find(&quoted_key)
        .with_context(|| format!(".npy header lacks '{key}'"))?;
    let rest = &header[at + quoted_key.len()..];
    Ok(rest.trim_start().trim_start_matches(':').trim_start())
}

/// The contents of the quoted string `text` starts with.
fn quoted(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('\'')?;
    inner.get(..inner.find('\'')?)
}

/// `(a, b, )` to `[a, b]`.
fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.get(..t.find(')')?))
        .context("bad shape")?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().context("bad shape entry"))
        .collect()
}

/// All arrays of an `.npz` archive, keyed by name without the `.npy` suffix.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Array)>> {
    let file = crate::files::open(path)?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{}: not a valid .npz (zip) archive", path.display()))?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = entry.name()?.trim_end_matches(".npy").to_string();
        // The size an entry claims is only a hint: a corrupt one may claim any.
        let mut bytes = Vec::with_capacity((entry.size() as usize).min(1 << 26));
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read {name}", path.display()))?;
        let array =
            parse_npy(&bytes).with_context(|| format!("{}: array {name}", path.display()))?;
        out.push((name, array));
    }
    Ok(out)
}
