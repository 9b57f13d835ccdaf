//! One colour per method, the same in every figure, table and legend of the page,
//! so that a method is recognised at a glance.

use crate::attribution::Method;
use plotters::style::RGBColor;

/// The paper's method comes first; it is the one the per-class maps show.
pub const PRIMARY_METHOD: Method = Method::Jas;

/// Tableau's ten categorical colours: distinct, and readable on white.
const COLOURS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The methods of a report, in display order, each with its colour.
pub struct Palette {
    methods: Vec<Method>,
}

impl Palette {
    /// `jas` first when present, then the others in the order they first appear.
    pub fn new(methods: impl IntoIterator<Item = Method>) -> Palette {
        let mut ordered: Vec<Method> = Vec::new();
        for m in methods {
            if !ordered.contains(&m) {
                ordered.push(m);
            }
        }
        if let Some(i) = ordered.iter().position(|&m| m == PRIMARY_METHOD) {
            let primary = ordered.remove(i);
            ordered.insert(0, primary);
        }
        Palette { methods: ordered }
    }

    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// The method the per-class maps show: `jas` when present.
    pub fn primary(&self) -> Option<Method> {
        self.methods.first().copied()
    }

    /// Position of `method` in display order (unknown methods sort last).
    pub fn rank(&self, method: Method) -> usize {
        self.methods
            .iter()
            .position(|&m| m == method)
            .unwrap_or(self.methods.len())
    }

    pub fn colour(&self, method: Method) -> RGBColor {
        COLOURS[self.rank(method) % COLOURS.len()]
    }

    /// The colour as CSS, for legends and table swatches.
    pub fn css(&self, method: Method) -> String {
        let RGBColor(r, g, b) = self.colour(method);
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}
