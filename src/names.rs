//! The names of the library's choices (methods, rules, tokens, ...): one trait, so
//! that records serialise them by the same names the command line parses, and the
//! command line lists them with their help without the library knowing of it.

/// A choice among a fixed set, known by a name.
pub trait Named: Copy + Sized + Send + Sync + 'static {
    /// Every value, in the order `--help` lists them.
    const ALL: &'static [Self];
    /// As records write it and the command line takes it.
    fn name(self) -> &'static str;
    /// One line saying what it is.
    fn help(self) -> &'static str;
    /// The value named `name`.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

/// `Display` by [`Named::name`], for each type given.
macro_rules! display_by_name {
    ($($t:ty),+) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str($crate::names::Named::name(*self))
            }
        }
    )+};
}
pub(crate) use display_by_name;
