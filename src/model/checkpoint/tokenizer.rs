//! CLIP's tokenizer: OpenAI's byte-level BPE (`simple_tokenizer.py`), as open_clip's
//! `SimpleTokenizer` and Hugging Face's `CLIPTokenizer` run it. The vocabulary comes
//! from a Hugging Face `tokenizer.json`, an open_clip merges file
//! (`bpe_simple_vocab_16e6.txt.gz`, gzipped or not), or the copy of OpenAI's bundled
//! here (`assets/clip-bpe`, what open_clip itself ships).
//!
//! Written here rather than taken from the `tokenizers` crate: CLIP needs only its
//! BPE, a few dozen lines, where that crate brings a regex engine (C's Oniguruma by
//! default), network downloads and a long build. What is not reproduced is refused:
//! the libraries clean text differently outside Latin letters (open_clip runs ftfy
//! and unescapes HTML entities, Hugging Face normalises to NFC), so a character
//! outside printable ASCII and the Latin-1 / Latin Extended-A letters, an HTML
//! entity for open_clip, or a special token's text is an error naming it.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// OpenAI's vocabulary, trimmed to the merges CLIP reads (the file's lines 1 to 48894).
const BUNDLED: &[u8] = include_bytes!("../../../assets/clip-bpe/bpe_simple_vocab_16e6.txt.gz");
/// The merges CLIP reads from a merges file: lines 1 to 49152 - 256 - 2.
const MERGES: usize = 49152 - 256 - 2;
/// Text the tokenizers turn into their start and end tokens.
const SPECIAL: [&str; 4] = [
    "<|startoftext|>",
    "<|endoftext|>",
    "<start_of_text>",
    "<end_of_text>",
];
/// The pre-tokenizer's alternatives after the special tokens, as a `tokenizer.json`
/// spells them: contractions, letter runs, single digits, other runs.
const PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Whose text cleaning to follow where the libraries differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    /// `SimpleTokenizer`: ftfy, HTML unescaping twice, whitespace, lower case.
    OpenClip,
    /// `CLIPTokenizer`: NFC, whitespace, lower case.
    HuggingFace,
}

/// CLIP's BPE with its vocabulary.
pub(crate) struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    sot: u32,
    eot: u32,
    /// A word already in the vocabulary is one token (`ignore_merges` of a tokenizer.json).
    ignore_merges: bool,
    flavour: Flavour,
    /// Where the vocabulary came from, for messages.
    source: String,
}

impl ClipTokenizer {
    /// A `tokenizer.json`, or an open_clip merges file (`.txt.gz` or `.txt`).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let bytes = crate::files::read(path, crate::files::TEXT)?;
        let name = path.display().to_string();
        let source = name.clone();
        let read = move || match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::from_tokenizer_json(&bytes, source),
            Some("gz") => Self::from_merges(&gunzip(&bytes)?, source),
            _ => Self::from_merges(&String::from_utf8(bytes).context("not UTF-8")?, source),
        };
        read().with_context(|| format!("{name}: not a CLIP BPE vocabulary"))
    }

    /// OpenAI's vocabulary (49408 tokens), as open_clip ships it.
    pub(crate) fn bundled() -> Self {
        let text = gunzip(BUNDLED).expect("the bundled vocabulary is a valid gzip");
        Self::from_merges(&text, "OpenAI's CLIP BPE (bundled)".into())
            .expect("the bundled vocabulary is valid")
    }

    /// open_clip's construction: the 256 byte symbols, the same with `</w>`, the
    /// merged pairs in order, then `<start_of_text>` and `<end_of_text>`.
    fn from_merges(text: &str, source: String) -> Result<Self> {
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(MERGES)
            .map(|line| {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                    _ => bail!("merge line {line:?} is not two symbols"),
                }
            })
            .collect::<Result<_>>()?;
        // In the order of GPT-2's `bytes_to_unicode()` dict: the printable bytes,
        // then the others.
        let (printable, other): (Vec<u8>, Vec<u8>) = (0..=255u8).partition(|&b| printable(b));
        let symbols: Vec<String> = printable
            .iter()
            .chain(&other)
            .map(|&b| byte_symbols()[b as usize].to_string())
            .collect();
        let mut vocab: Vec<String> = symbols.clone();
        vocab.extend(symbols.iter().map(|s| format!("{s}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend(["<start_of_text>".to_string(), "<end_of_text>".to_string()]);
        let eot = vocab.len() as u32 - 1;
        let encoder = vocab.into_iter().zip(0..).collect();
        Ok(ClipTokenizer {
            encoder,
            ranks: merges.into_iter().zip(0..).collect(),
            sot: eot - 1,
            eot,
            ignore_merges: false,
            flavour: Flavour::OpenClip,
            source,
        })
    }

    /// A Hugging Face `tokenizer.json` of CLIP's kind: a BPE model with the `</w>`
    /// suffix and CLIP's pre-tokenizer.
    fn from_tokenizer_json(bytes: &[u8], source: String) -> Result<Self> {
        let text = std::str::from_utf8(bytes).context("not UTF-8")?;
        let json = crate::files::parse_json(text).context("invalid JSON")?;
        let model = &json["model"];
        let kind = model["type"].as_str().unwrap_or("?");
        let suffix = model["end_of_word_suffix"].as_str().unwrap_or("");
        if kind != "BPE" || suffix != "</w>" {
            bail!("model type {kind:?} with end-of-word suffix {suffix:?}, expected CLIP's BPE (\"</w>\")");
        }
        if !json["pre_tokenizer"]
            .to_string()
            .contains(&PATTERN.replace('\\', "\\\\"))
        {
            bail!("its pre-tokenizer is not CLIP's ({PATTERN})");
        }
        let encoder: HashMap<String, u32> = model["vocab"]
            .as_object()
            .context("no model.vocab")?
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_u64().context("a vocabulary id")? as u32)))
            .collect::<Result<_>>()?;
        let merges = model["merges"]
            .as_array()
            .context("no model.merges")?
            .iter()
            .map(|m| {
                let pair = match m {
                    Value::String(s) => s.split_once(' ').map(|(a, b)| (a.into(), b.into())),
                    Value::Array(a) => a[..]
                        .iter()
                        .map(Value::as_str)
                        .collect::<Option<Vec<_>>>()
                        .and_then(|p| match p[..] {
                            [a, b] => Some((a.to_string(), b.to_string())),
                            _ => None,
                        }),
                    _ => None,
                };
                pair.with_context(|| format!("merge {m} is not a pair"))
            })
            .collect::<Result<Vec<(String, String)>>>()?;
        let id = |token: &str| {
            encoder
                .get(token)
                .copied()
                .with_context(|| format!("no {token} token"))
        };
        Ok(ClipTokenizer {
            sot: id("<|startoftext|>")?,
            eot: id("<|endoftext|>")?,
            ranks: merges.into_iter().zip(0..).collect(),
            encoder,
            ignore_merges: model["ignore_merges"].as_bool().unwrap_or(false),
            flavour: Flavour::HuggingFace,
            source,
        })
    }

    /// Tokens the vocabulary's ids reach (its largest id + 1).
    pub(crate) fn vocab_size(&self) -> usize {
        self.encoder.values().max().map_or(0, |&m| m as usize + 1)
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The end-of-text id.
    pub(crate) fn eot(&self) -> u32 {
        self.eot
    }

    /// `[SOT, text's tokens, EOT]`, cut to `context` with EOT last (as both
    /// libraries truncate).
    pub(crate) fn encode(&self, text: &str, context: usize) -> Result<Vec<u32>> {
        self.check(text)?;
        let cleaned: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let mut ids = vec![self.sot];
        for piece in pieces(&cleaned) {
            let mapped: String = piece.bytes().map(|b| byte_symbols()[b as usize]).collect();
            for symbol in self.bpe(&mapped) {
                let id = self.encoder.get(&symbol).with_context(|| {
                    format!("{}: no token {symbol:?} (in {text:?})", self.source)
                })?;
                ids.push(*id);
            }
        }
        ids.push(self.eot);
        if ids.len() > context {
            ids.truncate(context);
            ids[context - 1] = self.eot;
        }
        Ok(ids)
    }

    /// Refuses what this tokenizer would not tokenise as the library does.
    fn check(&self, text: &str) -> Result<()> {
        if let Some(special) = SPECIAL.iter().find(|s| text.contains(*s)) {
            bail!("{text:?} contains the special token {special}");
        }
        if let Some(c) = text.chars().find(|&c| !reproduced(c)) {
            bail!(
                "{text:?}: the character {c:?} (U+{:04X}) is outside what this tokenizer reproduces \
                 exactly (printable ASCII, Latin-1 and Latin Extended-A letters): the libraries clean \
                 such text differently (ftfy, NFC)",
                c as u32
            );
        }
        if self.flavour == Flavour::OpenClip {
            let bytes = text.as_bytes();
            let entity = bytes
                .windows(2)
                .any(|w| w[0] == b'&' && (w[1].is_ascii_alphanumeric() || w[1] == b'#'));
            if entity {
                bail!("{text:?}: open_clip reads `&` followed by a name as an HTML entity; write the character itself");
            }
        }
        Ok(())
    }

    /// The BPE symbols of one pre-tokenised piece (already byte-mapped): its
    /// characters, `</w>` on the last, merged by rank, lowest first, each merge
    /// applied left to right.
    fn bpe(&self, piece: &str) -> Vec<String> {
        let whole = format!("{piece}</w>");
        if self.ignore_merges && self.encoder.contains_key(&whole) {
            return vec![whole];
        }
        let chars: Vec<char> = piece.chars().collect();
        let mut word: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|w| self.ranks.get(&(w[0].clone(), w[1].clone())))
                .min();
            let Some(&rank) = best else { break };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len()
                    && self.ranks.get(&(word[i].clone(), word[i + 1].clone())) == Some(&rank)
                {
                    merged.push(format!("{}{}", word[i], word[i + 1]));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }
}

/// The text of a gzip, at most the bound of text inputs once inflated.
fn gunzip(bytes: &[u8]) -> Result<String> {
    let limit = crate::files::TEXT;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .take(limit.bytes + 1)
        .read_to_string(&mut text)
        .context("not a gzipped UTF-8 text")?;
    if text.len() as u64 > limit.bytes {
        bail!(
            "inflates to over the limit of {} MiB for {}",
            limit.bytes >> 20,
            limit.what
        );
    }
    Ok(text)
}

/// Characters the tokenizer handles exactly as both libraries: printable ASCII and
/// whitespace, and the letters of Latin-1 and Latin Extended-A (which NFC leaves
/// alone and which lower-case to one letter); not `İ`, whose lower case is two.
pub(super) fn reproduced(c: char) -> bool {
    matches!(c, ' '..='~' | '\t' | '\n' | '\r')
        || (('\u{C0}'..='\u{17F}').contains(&c) && !matches!(c, '\u{D7}' | '\u{F7}' | '\u{130}'))
}

/// What the pre-tokenizer's class of a (reproduced, lower-cased) character is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Space,
    Other,
}

fn class(c: char) -> Class {
    match c {
        c if c.is_ascii_alphabetic() || ('\u{C0}'..='\u{17F}').contains(&c) => Class::Letter,
        c if c.is_ascii_digit() => Class::Digit,
        c if c.is_whitespace() => Class::Space,
        _ => Class::Other,
    }
}

/// The pre-tokenizer: `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
/// leftmost alternative first, whitespace dropped.
fn pieces(text: &str) -> Vec<&str> {
    const CONTRACTIONS: [&str; 7] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(k) = CONTRACTIONS.iter().find(|k| rest.starts_with(*k)) {
            out.push(&rest[..k.len()]);
            rest = &rest[k.len()..];
            continue;
        }
        let kind = class(c);
        let len = match kind {
            Class::Digit | Class::Space => c.len_utf8(),
            Class::Letter | Class::Other => rest
                .char_indices()
                .find(|&(_, x)| class(x) != kind)
                .map_or(rest.len(), |(i, _)| i),
        };
        if kind != Class::Space {
            out.push(&rest[..len]);
        }
        rest = &rest[len..];
    }
    out
}

/// The bytes that GPT-2's byte-to-symbol map leaves as themselves.
fn printable(b: u8) -> bool {
    matches!(b, 33..=126 | 161..=172 | 174..=255)
}

/// GPT-2's byte-to-symbol map: printable Latin-1 bytes stand for themselves, the
/// others for the code points from 256 up, in byte order.
fn byte_symbols() -> &'static [char; 256] {
    static MAP: std::sync::OnceLock<[char; 256]> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut next = 256u32;
        for (b, slot) in map.iter_mut().enumerate() {
            *slot = if printable(b as u8) {
                char::from(b as u8)
            } else {
                next += 1;
                char::from_u32(next - 1).expect("below the surrogates")
            };
        }
        map
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenizer_follows_the_pattern() {
        assert_eq!(
            pieces("it's a x-'s ''s 1984!! déjà"),
            ["it", "'s", "a", "x", "-'", "s", "''", "s", "1", "9", "8", "4", "!!", "déjà"]
        );
    }

    fn repo(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    /// The bundled vocabulary gives open_clip's ids (and Hugging Face's, which the
    /// fixture script checked equal) for ImageNet's 1000 class prompts and tricky text.
    #[test]
    fn bundled_vocabulary_matches_open_clip() {
        let text = std::fs::read_to_string(repo("tests/fixtures/clip-bpe/tokens.json")).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        let t = ClipTokenizer::bundled();
        assert_eq!(t.vocab_size(), 49408);
        let texts = json["texts"].as_array().unwrap();
        assert_eq!(texts.len(), 1000 + 9);
        for (text, ids) in texts.iter().zip(json["ids"].as_array().unwrap()) {
            let want: Vec<u32> = ids
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            let text = text.as_str().unwrap();
            assert_eq!(t.encode(text, 77).unwrap(), want, "{text:?}");
        }
    }

    /// Each fixture's tokenizer, read as its library saved it, gives the ids its
    /// library gave the class prompts (`input_ids` of the references, padding removed).
    #[test]
    fn fixture_tokenizers_match_their_libraries() {
        let prompts: Vec<String> = [
            "tench",
            "goldfish",
            "great white shark",
            "jack-o'-lantern",
            "potter's wheel",
        ]
        .iter()
        .map(|c| super::super::DEFAULT_PROMPT.replace("{}", c))
        .collect();
        for (vocab, fixture) in [
            ("tests/fixtures/families/clip-hf/tokenizer.json", "clip-hf"),
            (
                "tests/fixtures/families/open-clip/vocab.txt.gz",
                "open-clip",
            ),
        ] {
            let t = ClipTokenizer::open(&repo(vocab)).unwrap();
            let reference = crate::model::npy::read_npz(&repo(&format!(
                "tests/fixtures/families/{fixture}/reference.npz"
            )))
            .unwrap();
            let ids = &reference.iter().find(|(n, _)| n == "input_ids").unwrap().1;
            let ids = ids.to_f32().unwrap();
            for (prompt, row) in prompts.iter().zip(ids.chunks_exact(77)) {
                let got = t.encode(prompt, 77).unwrap();
                let want: Vec<u32> = row[..got.len()].iter().map(|&i| i as u32).collect();
                assert_eq!(got, want, "{fixture} {prompt:?}");
                assert!(
                    row[got.len()..]
                        .iter()
                        .all(|&p| p == 0.0 || p as u32 == t.eot),
                    "{fixture}: padding"
                );
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let t = ClipTokenizer::bundled();
        assert!(t.encode("a photo of a café", 77).is_ok());
        for bad in ["naïve ½", "日本", "a <|endoftext|>", "A&amp;W", "\u{130}"] {
            assert!(t.encode(bad, 77).is_err(), "{bad}");
        }
    }
}
