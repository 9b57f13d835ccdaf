//! One shard of a run split over many processes (a Slurm job array): shard I of N
//! takes the images whose place among the run's image keys, sorted by their bytes,
//! is I modulo N. The subset depends only on the keys (not on the machine, the
//! locale, directory order or a hash seed), and the shards differ in size by at
//! most one image.

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count` (written `I/N`, 0 <= I < N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The whole run as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; an error unless `count >= 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            bail!("shard {index}/{count}: the shard count must be at least 1");
        }
        if index >= count {
            bail!(
                "shard {index}/{count}: the shard index must be below the count (0 to {})",
                count - 1
            );
        }
        Ok(Shard { index, count })
    }

    pub fn index(self) -> usize {
        self.index
    }

    pub fn count(self) -> usize {
        self.count
    }

    /// The keys of this shard among `keys` (repeats count once).
    pub fn pick<'a>(self, keys: impl IntoIterator<Item = &'a str>) -> HashSet<&'a str> {
        let mut sorted: Vec<&str> = keys.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
            .into_iter()
            .skip(self.index)
            .step_by(self.count)
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Shard> {
        let number = |part: &str, what: &str| {
            part.trim().parse::<usize>().with_context(|| {
                format!("shard {s:?}: the {what} is not a whole number; write I/N, as 0/4")
            })
        };
        let Some((index, count)) = s.split_once('/') else {
            bail!("shard {s:?}: write I/N, shard I (from 0) of N, as 0/4");
        };
        Shard::new(number(index, "index I")?, number(count, "count N")?)
    }
}

impl TryFrom<String> for Shard {
    type Error = anyhow::Error;

    fn try_from(s: String) -> Result<Shard> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(shard: Shard) -> String {
        shard.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_keys_evenly_whatever_their_order() {
        let keys: Vec<String> = (0..10).rev().map(|i| format!("k{i}")).collect();
        let mut seen = Vec::new();
        for i in 0..3 {
            let picked = Shard::new(i, 3)
                .unwrap()
                .pick(keys.iter().map(String::as_str));
            assert!((3..=4).contains(&picked.len()));
            seen.extend(picked.into_iter().map(String::from));
        }
        seen.sort();
        let mut all = keys.clone();
        all.sort();
        assert_eq!(seen, all);
    }

    #[test]
    fn bad_shards_are_refused_with_a_reason() {
        for (text, why) in [
            ("3/3", "below the count"),
            ("0/0", "at least 1"),
            ("1", "I/N"),
            ("a/2", "index I"),
            ("1/-2", "count N"),
        ] {
            let e = text.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
        assert_eq!("2/5".parse::<Shard>().unwrap().to_string(), "2/5");
    }
}
