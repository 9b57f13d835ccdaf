//! SigLIP's tokenizer: a SentencePiece unigram model read from its `spiece.model`
//! and run as transformers' `SiglipTokenizer` runs it, so no Python is needed.
//!
//! The model file is a protobuf (`sentencepiece_model.proto`), parsed here by hand:
//! the pieces (text, score, type), the normaliser (its precompiled character map, a
//! Darts double-array trie, applied as SentencePiece applies it) and the trainer's
//! `model_type` and `byte_fallback`. Encoding is SentencePiece's: normalise
//! (the map, extra whitespace removed, spaces escaped as `▁`), then the Viterbi path
//! over the piece scores (`EncodeOptimized`: user-defined pieces preferred, an
//! unknown character scored `min_score - 10`), runs of unknown pieces merged or,
//! with byte fallback, spelled as byte pieces.
//!
//! Around it, `SiglipTokenizer`'s steps: the model's `add_dummy_prefix` turned off,
//! `▁` prepended to the text, lower case (`do_lower_case`), `canonicalize_text`
//! (ASCII punctuation removed, whitespace runs made one space, stripped), the text
//! encoded behind the unknown token's text and that prefix's pieces dropped, `</s>`
//! appended, cut to the context with `</s>` last (the zero-shot pipeline's
//! `truncation=True`) and padded to it (`padding="max_length"`: SigLIP's text tower
//! reads the last position). Text whose Python-side steps (`str.lower`, `\s`,
//! `strip`) this cannot prove equal is refused: a character outside printable ASCII
//! and the Latin-1 / Latin Extended-A letters, or a special token's text.

use super::tokenizer::reproduced;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// SentencePiece's escaped space (U+2581).
const SPACE: &str = "\u{2581}";
/// What an unknown character scores below the lowest piece.
const UNK_PENALTY: f32 = 10.0;
/// Python's `string.punctuation`, which `canonicalize_text` removes.
const PUNCTUATION: &str = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;

/// A piece's type (`ModelProto.SentencePiece.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

struct Piece {
    text: String,
    score: f32,
    kind: Kind,
}

/// A SentencePiece unigram model.
pub(crate) struct SentencePiece {
    pieces: Vec<Piece>,
    /// Normal, user-defined and unused pieces by text: what the lattice matches.
    matched: HashMap<String, u32>,
    /// Control, unknown and byte pieces by text (`PieceToId` looks here first).
    reserved: HashMap<String, u32>,
    unk: u32,
    /// Bytes of the longest matched piece.
    longest: usize,
    /// The lowest and highest scores of the normal pieces (the highest at least
    /// `f32::MIN_POSITIVE`, as SentencePiece starts it).
    min_score: f32,
    max_score: f32,
    byte_fallback: bool,
    normalizer: Normalizer,
}

/// `NormalizerSpec`: the character map and the whitespace rules.
struct Normalizer {
    charsmap: Option<CharsMap>,
    dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    /// `treat_whitespace_as_suffix` (of the trainer spec): the dummy space goes last.
    suffix: bool,
}

/// A precompiled character map: `<trie size: u32><Darts double array><NUL-separated
/// replacements>`.
struct CharsMap {
    units: Vec<u32>,
    replacements: Vec<u8>,
}

impl SentencePiece {
    /// Parses a serialised `ModelProto`.
    fn parse(bytes: &[u8]) -> Result<SentencePiece> {
        let mut pieces = Vec::new();
        let mut normalizer = Normalizer {
            charsmap: None,
            dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
            suffix: false,
        };
        let (mut unigram, mut byte_fallback) = (true, false);
        for (field, value) in fields(bytes)? {
            match field {
                1 => pieces.push(piece(value.bytes()?)?),
                2 => {
                    for (f, v) in fields(value.bytes()?)? {
                        match f {
                            3 => unigram = v.varint()? == 1,
                            24 => normalizer.suffix = v.varint()? != 0,
                            35 => byte_fallback = v.varint()? != 0,
                            _ => {}
                        }
                    }
                }
                3 => {
                    for (f, v) in fields(value.bytes()?)? {
                        match f {
                            2 => normalizer.charsmap = Some(CharsMap::parse(v.bytes()?)?),
                            3 => normalizer.dummy_prefix = v.varint()? != 0,
                            4 => normalizer.remove_extra_whitespaces = v.varint()? != 0,
                            5 => normalizer.escape_whitespaces = v.varint()? != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if !unigram {
            bail!("not a unigram model (SentencePiece's BPE, word and char models are not read)");
        }
        Self::new(pieces, normalizer, byte_fallback)
    }

    /// The model of `pieces`, checked as SentencePiece checks it when loading.
    fn new(pieces: Vec<Piece>, normalizer: Normalizer, byte_fallback: bool) -> Result<Self> {
        let (mut matched, mut reserved) = (HashMap::new(), HashMap::new());
        let mut unk = None;
        for (id, p) in pieces.iter().enumerate() {
            let id = u32::try_from(id).context("too many pieces")?;
            if p.text.is_empty() {
                bail!("piece {id} is empty");
            }
            let table = match p.kind {
                Kind::Normal | Kind::UserDefined | Kind::Unused => &mut matched,
                Kind::Unknown | Kind::Control | Kind::Byte => &mut reserved,
            };
            if table.insert(p.text.clone(), id).is_some() {
                bail!("piece {:?} is defined twice", p.text);
            }
            match p.kind {
                Kind::Unknown if unk.is_some() => bail!("two unknown pieces"),
                Kind::Unknown => unk = Some(id),
                Kind::Byte if !byte_fallback => {
                    bail!("byte piece {:?} without byte_fallback", p.text)
                }
                _ => {}
            }
        }
        if byte_fallback && (0..=255u8).any(|b| !reserved.contains_key(&byte_piece(b))) {
            bail!("byte_fallback without the 256 byte pieces");
        }
        let normal = || pieces.iter().filter(|p| p.kind == Kind::Normal);
        Ok(SentencePiece {
            unk: unk.context("no unknown piece")?,
            longest: matched.keys().map(String::len).max().unwrap_or(0),
            min_score: normal().map(|p| p.score).fold(f32::MAX, f32::min),
            max_score: normal().map(|p| p.score).fold(f32::MIN_POSITIVE, f32::max),
            matched,
            reserved,
            pieces,
            byte_fallback,
            normalizer,
        })
    }

    /// Pieces in the model (`get_piece_size`).
    fn len(&self) -> usize {
        self.pieces.len()
    }

    /// `PieceToId`: a reserved piece, else a matched one, else the unknown id.
    fn id(&self, piece: &str) -> u32 {
        self.reserved
            .get(piece)
            .or_else(|| self.matched.get(piece))
            .copied()
            .unwrap_or(self.unk)
    }

    /// `encode(text, out_type=str)`: the pieces of `text`.
    fn encode(&self, text: &str) -> Result<Vec<String>> {
        let normalized = self
            .normalizer
            .normalize(text, |rest| self.user_defined(rest))?;
        let mut out: Vec<String> = Vec::new();
        let mut previous_unknown = false;
        for (range, id) in self.viterbi(&normalized) {
            let piece = &normalized[range];
            let unknown = id == self.unk;
            match (unknown, self.byte_fallback) {
                (true, true) => out.extend(piece.bytes().map(byte_piece)),
                (true, false) if previous_unknown => {
                    out.last_mut().expect("after a piece").push_str(piece)
                }
                _ => out.push(piece.to_string()),
            }
            previous_unknown = unknown;
        }
        Ok(out)
    }

    /// Bytes of the longest user-defined piece `rest` starts with (0: none).
    fn user_defined(&self, rest: &[u8]) -> usize {
        (1..=self.longest.min(rest.len()))
            .rev()
            .find(|&n| {
                std::str::from_utf8(&rest[..n])
                    .ok()
                    .and_then(|s| self.matched.get(s))
                    .is_some_and(|&id| self.pieces[id as usize].kind == Kind::UserDefined)
            })
            .unwrap_or(0)
    }

    /// `EncodeOptimized`: the best-scoring segmentation of a normalised text, as
    /// byte ranges and ids (the unknown id for a character no piece starts with).
    /// Scores accumulate as SentencePiece's do: a piece's candidate in `f64` (its
    /// score is a `double` there), an unknown's in `f32`, each best stored as `f32`.
    fn viterbi(&self, s: &str) -> Vec<(std::ops::Range<usize>, u32)> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f32,
            start: Option<usize>,
        }
        let empty = Best {
            id: self.unk,
            score: 0.0,
            start: None,
        };
        let mut best = vec![empty; s.len() + 1];
        let unk_score = self.min_score - UNK_PENALTY;
        for (start, c) in s.char_indices() {
            let here = best[start].score;
            let mut single = false;
            let ends = s[start..]
                .char_indices()
                .map(|(i, c)| start + i + c.len_utf8())
                .take_while(|&end| end - start <= self.longest);
            for end in ends {
                let Some(&id) = self.matched.get(&s[start..end]) else {
                    continue;
                };
                let piece = &self.pieces[id as usize];
                let score = match piece.kind {
                    Kind::Unused => continue,
                    Kind::UserDefined => ((end - start) as f32 * self.max_score) as f64 - 0.1,
                    _ => piece.score as f64,
                };
                let candidate = score + here as f64;
                let target = &mut best[end];
                if target.start.is_none() || candidate > target.score as f64 {
                    *target = Best {
                        id,
                        score: candidate as f32,
                        start: Some(start),
                    };
                }
                single |= end - start == c.len_utf8();
            }
            let end = start + c.len_utf8();
            let candidate = unk_score + here;
            if !single && (best[end].start.is_none() || candidate > best[end].score) {
                best[end] = Best {
                    id: self.unk,
                    score: candidate,
                    start: Some(start),
                };
            }
        }
        let mut path = Vec::new();
        let mut end = s.len();
        while end > 0 {
            let node = best[end];
            let start = node.start.expect("every character ends a path");
            path.push((start..end, node.id));
            end = start;
        }
        path.reverse();
        path
    }
}

/// A byte's piece with byte fallback: `<0x41>`.
fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

impl Normalizer {
    /// `Normalizer::Normalize`: the map applied prefix by prefix (a user-defined
    /// piece, found by `user`, is kept as it is), leading, trailing and repeated
    /// spaces removed, spaces escaped, the dummy prefix added.
    fn normalize(&self, text: &str, user: impl Fn(&[u8]) -> usize) -> Result<String> {
        let prefix = |rest: &[u8]| -> Result<(Vec<u8>, usize)> {
            let n = user(rest);
            if n > 0 {
                return Ok((rest[..n].to_vec(), n));
            }
            if let Some(map) = &self.charsmap {
                if let Some((n, replacement)) = map.longest(rest)? {
                    return Ok((replacement.to_vec(), n));
                }
            }
            let n = utf8_len(rest[0]).min(rest.len());
            match std::str::from_utf8(&rest[..n]) {
                Ok(_) => Ok((rest[..n].to_vec(), n)),
                Err(_) => Ok(("\u{FFFD}".as_bytes().to_vec(), 1)),
            }
        };
        let mut rest = text.as_bytes();
        if self.remove_extra_whitespaces {
            while !rest.is_empty() {
                let (p, n) = prefix(rest)?;
                if p != b" " {
                    break;
                }
                rest = &rest[n..];
            }
        }
        if rest.is_empty() {
            return Ok(String::new());
        }
        let space: &[u8] = match self.escape_whitespaces {
            true => SPACE.as_bytes(),
            false => b" ",
        };
        let mut out = Vec::with_capacity(rest.len() * 3);
        if self.dummy_prefix && !self.suffix {
            out.extend_from_slice(space);
        }
        let mut previous_space = self.remove_extra_whitespaces;
        while !rest.is_empty() {
            let (p, n) = prefix(rest)?;
            let mut p = &p[..];
            while previous_space && p.first() == Some(&b' ') {
                p = &p[1..];
            }
            if !p.is_empty() {
                for &b in p {
                    match b {
                        b' ' => out.extend_from_slice(space),
                        _ => out.push(b),
                    }
                }
                previous_space = p.ends_with(b" ");
            }
            rest = &rest[n..];
            previous_space &= self.remove_extra_whitespaces;
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        if self.dummy_prefix && self.suffix {
            out.extend_from_slice(space);
        }
        String::from_utf8(out).context("its character map gives text that is not UTF-8")
    }
}

/// SentencePiece's `OneCharLen`: the length a UTF-8 lead byte announces.
fn utf8_len(lead: u8) -> usize {
    match lead >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

impl CharsMap {
    fn parse(blob: &[u8]) -> Result<CharsMap> {
        let broken = || anyhow::anyhow!("its precompiled character map is broken");
        let size = blob.get(..4).ok_or_else(broken)?;
        let size = u32::from_le_bytes(size.try_into().expect("four bytes")) as usize;
        let trie = blob.get(4..4 + size).filter(|t| t.len() % 4 == 0);
        let trie = trie.ok_or_else(broken)?;
        Ok(CharsMap {
            units: trie
                .chunks_exact(4)
                .map(|u| u32::from_le_bytes(u.try_into().expect("four bytes")))
                .collect(),
            replacements: blob[4 + size..].to_vec(),
        })
    }

    /// The longest key `input` starts with (Darts' `commonPrefixSearch`) and its
    /// replacement (NUL-terminated in the map).
    fn longest(&self, input: &[u8]) -> Result<Option<(usize, &[u8])>> {
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let value = |u: u32| (u & ((1 << 31) - 1)) as usize;
        let label = |u: u32| u & ((1 << 31) | 0xFF);
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let mut found = None;
        let Some(&root) = self.units.first() else {
            return Ok(None);
        };
        let mut node = offset(root);
        for (i, &b) in input.iter().enumerate() {
            node ^= b as usize;
            let Some(&unit) = self.units.get(node) else {
                break;
            };
            if label(unit) != b as u32 {
                break;
            }
            node ^= offset(unit);
            if has_leaf(unit) {
                let leaf = self.units.get(node).copied();
                found = Some((i + 1, leaf.map(value)));
            }
        }
        let Some((length, at)) = found else {
            return Ok(None);
        };
        let replacement = at
            .and_then(|at| self.replacements.get(at..))
            .and_then(|r| r.split(|&b| b == 0).next())
            .context("its precompiled character map is broken")?;
        Ok(Some((length, replacement)))
    }
}

/// One field's value in the protobuf wire format.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
    Fixed64,
}

impl<'a> Wire<'a> {
    fn varint(&self) -> Result<u64> {
        match self {
            Wire::Varint(v) => Ok(*v),
            _ => bail!("a field that should be an integer is not"),
        }
    }

    fn bytes(&self) -> Result<&'a [u8]> {
        match self {
            Wire::Bytes(b) => Ok(b),
            _ => bail!("a field that should be a message or string is not"),
        }
    }
}

/// The `(field number, value)` pairs of a protobuf message, in order.
fn fields(mut bytes: &[u8]) -> Result<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut bytes)?),
            1 => {
                take(&mut bytes, 8)?;
                Wire::Fixed64
            }
            2 => {
                let n = usize::try_from(varint(&mut bytes)?).context("a length")?;
                Wire::Bytes(take(&mut bytes, n)?)
            }
            5 => Wire::Fixed32(take(&mut bytes, 4)?.try_into().expect("four bytes")),
            w => bail!("protobuf wire type {w} is not read"),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn varint(bytes: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes
            .split_first()
            .context("the protobuf ends inside a number")?;
        *bytes = rest;
        value |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return Ok(value);
        }
    }
    bail!("a protobuf number is longer than 10 bytes")
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if bytes.len() < n {
        bail!("the protobuf ends inside a field");
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// A `ModelProto.SentencePiece`.
fn piece(bytes: &[u8]) -> Result<Piece> {
    let mut p = Piece {
        text: String::new(),
        score: 0.0,
        kind: Kind::Normal,
    };
    for (field, value) in fields(bytes)? {
        match (field, value) {
            (1, Wire::Bytes(b)) => {
                p.text = String::from_utf8(b.to_vec()).context("a piece is not UTF-8")?
            }
            (2, Wire::Fixed32(b)) => p.score = f32::from_le_bytes(b),
            (3, Wire::Varint(t)) => {
                p.kind = match t {
                    1 => Kind::Normal,
                    2 => Kind::Unknown,
                    3 => Kind::Control,
                    4 => Kind::UserDefined,
                    5 => Kind::Unused,
                    6 => Kind::Byte,
                    _ => bail!("piece type {t} is unknown"),
                }
            }
            (1..=3, _) => bail!("a piece's field {field} has the wrong type"),
            _ => {}
        }
    }
    Ok(p)
}

/// transformers' `SiglipTokenizer` over its `spiece.model`.
pub(crate) struct SiglipTokenizer {
    model: SentencePiece,
    lower_case: bool,
    unk_text: String,
    eos: u32,
    pad: u32,
    /// The special tokens' texts, which the tokenizer would not encode as text.
    specials: Vec<String>,
    source: String,
}

impl SiglipTokenizer {
    /// A `spiece.model`, with the `tokenizer_config.json` beside it when there is
    /// one (`do_lower_case`, the special tokens; else `SiglipTokenizer`'s defaults).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let source = path.display().to_string();
        let bytes = crate::files::read(path, crate::files::WHOLE)?;
        let mut model = SentencePiece::parse(&bytes)
            .with_context(|| format!("{source}: not a SentencePiece model"))?;
        model.normalizer.dummy_prefix = false;
        let config_path = path.with_file_name("tokenizer_config.json");
        let config = match config_path.exists() {
            true => crate::files::read_json(&config_path)?,
            false => Value::Null,
        };
        let text = |key: &str, default: &str| -> String {
            let v = &config[key];
            v.as_str()
                .or_else(|| v["content"].as_str())
                .unwrap_or(default)
                .to_string()
        };
        let (eos, unk, pad) = (
            text("eos_token", "</s>"),
            text("unk_token", "<unk>"),
            text("pad_token", "</s>"),
        );
        let id = |token: &str| {
            model
                .reserved
                .get(token)
                .or_else(|| model.matched.get(token))
                .copied()
                .with_context(|| {
                    format!("{source}: no piece {token:?} (the tokenizer's special token)")
                })
        };
        let (eos_id, pad_id) = (id(&eos)?, id(&pad)?);
        let mut specials = vec![eos, unk.clone(), pad];
        let added = config["added_tokens_decoder"]
            .as_object()
            .into_iter()
            .flatten();
        specials.extend(added.filter_map(|(_, t)| t["content"].as_str().map(String::from)));
        let lower_case = config["do_lower_case"].as_bool().unwrap_or(true);
        Ok(SiglipTokenizer {
            model,
            lower_case,
            unk_text: unk,
            eos: eos_id,
            pad: pad_id,
            specials,
            source,
        })
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.model.len()
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn eos(&self) -> u32 {
        self.eos
    }

    /// `tokenizer(text, padding="max_length", max_length=context, truncation=True)`'s
    /// `input_ids`: the text's ids, `</s>`, padding to `context`.
    pub(crate) fn encode(&self, text: &str, context: usize) -> Result<Vec<u32>> {
        self.check(text)?;
        let mut text = format!("{SPACE}{}", text.replace(SPACE, " "));
        if self.lower_case {
            text = text.to_lowercase();
        }
        let canonical: String = text.chars().filter(|c| !PUNCTUATION.contains(*c)).collect();
        let canonical = canonical.split_whitespace().collect::<Vec<_>>().join(" ");
        let skip = self.model.encode(&self.unk_text)?.len();
        let pieces = self
            .model
            .encode(&format!("{}{canonical}", self.unk_text))?;
        let mut ids: Vec<u32> = match pieces.len() >= skip {
            true => &pieces[skip..],
            false => &pieces[..],
        }
        .iter()
        .map(|p| self.model.id(p))
        .collect();
        ids.truncate(context.saturating_sub(1));
        ids.push(self.eos);
        ids.resize(context, self.pad);
        Ok(ids)
    }

    /// Refuses what this tokenizer would not tokenise as transformers does.
    fn check(&self, text: &str) -> Result<()> {
        let lower = text.to_lowercase();
        if let Some(special) = self
            .specials
            .iter()
            .find(|s| !s.is_empty() && lower.contains(&s.to_lowercase()))
        {
            bail!(
                "{}: {text:?} contains the special token {special}",
                self.source
            );
        }
        if let Some(c) = text.chars().find(|&c| !reproduced(c)) {
            bail!(
                "{}: {text:?}: the character {c:?} (U+{:04X}) is outside what this tokenizer reproduces \
                 exactly (printable ASCII, Latin-1 and Latin Extended-A letters): pass --classifier text.npy \
                 (class rows computed with transformers) instead",
                self.source,
                c as u32
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    /// The fixture's `spiece.model` gives transformers' `input_ids` of the class
    /// prompts (padded to 32).
    #[test]
    fn fixture_ids_match_transformers() {
        let dir = "tests/fixtures/families/siglip";
        let t = SiglipTokenizer::open(&repo(&format!("{dir}/spiece.model"))).unwrap();
        assert_eq!(t.vocab_size(), 40);
        let reference =
            crate::model::npy::read_npz(&repo(&format!("{dir}/reference.npz"))).unwrap();
        let ids = reference
            .iter()
            .find(|(n, _)| n == "input_ids")
            .unwrap()
            .1
            .to_f32()
            .unwrap();
        let classes = [
            "tench",
            "goldfish",
            "great white shark",
            "jack-o'-lantern",
            "potter's wheel",
        ];
        for (class, row) in classes.iter().zip(ids.chunks_exact(32)) {
            let prompt = super::super::DEFAULT_PROMPT.replace("{}", class);
            let want: Vec<u32> = row.iter().map(|&i| i as u32).collect();
            assert_eq!(t.encode(&prompt, 32).unwrap(), want, "{prompt:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let t =
            SiglipTokenizer::open(&repo("tests/fixtures/families/siglip/spiece.model")).unwrap();
        for bad in ["naïve ½", "日本", "a </s>", "<UNK>"] {
            let e = t.encode(bad, 32).unwrap_err().to_string();
            assert!(e.contains("spiece.model"), "{e}");
        }
        assert!(t.encode("a photo of a café", 32).is_ok());
    }

    /// The fixture's map is nmt_nfkc: NFKC's own replacements come out of the trie.
    #[test]
    fn character_map_applies_nfkc() {
        let bytes = std::fs::read(repo("tests/fixtures/families/siglip/spiece.model")).unwrap();
        let m = SentencePiece::parse(&bytes).unwrap();
        let n = |s: &str| m.normalizer.normalize(s, |_| 0).unwrap();
        assert_eq!(n("\u{FF21}b"), "\u{2581}Ab");
        assert_eq!(n("\u{FB01}x"), "\u{2581}fix");
        assert_eq!(n("  a   b "), "\u{2581}a\u{2581}b");
    }
}
