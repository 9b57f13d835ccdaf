//! A streaming top-K: the K best (score, image) pairs seen so far, best first.
//! Ties go to the image whose key sorts first, so the list does not depend on the
//! order images come in, and top-K lists of disjoint image sets merge exactly.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// One image's score, the image named by its key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub score: f32,
    pub image: String,
}

impl Hit {
    /// Best first: the higher score, then the smaller key (scores are finite: a
    /// scan skips an image whose pass is not).
    fn order(&self, other: &Hit) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.image.cmp(&other.image))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopK {
    pub hits: Vec<Hit>,
}

impl TopK {
    /// Whether `score` would enter a full list of `k` (cheap: no key compared
    /// unless the score ties the last).
    pub fn admits(&self, k: usize, score: f32) -> bool {
        self.hits.len() < k
            || self
                .hits
                .last()
                .is_some_and(|last| score.total_cmp(&last.score).is_ge())
    }

    /// Adds `hit` when it is among the `k` best.
    pub fn offer(&mut self, k: usize, hit: Hit) {
        let at = self
            .hits
            .partition_point(|h| h.order(&hit) == Ordering::Less);
        if at < k {
            self.hits.insert(at, hit);
            self.hits.truncate(k);
        }
    }

    /// The `k` best of both lists.
    pub fn merge(&mut self, k: usize, other: TopK) {
        for hit in other.hits {
            self.offer(k, hit);
        }
    }
}
