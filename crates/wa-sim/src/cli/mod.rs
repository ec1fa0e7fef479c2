//! The `wa-sim` binary's parts: its flags, the channels it reads from the database, and one
//! file per subcommand (`graph`, `trigger`, `load`, `outbound-bench`).

pub(crate) mod channels;
pub(crate) mod flags;
pub(crate) mod graph;
pub(crate) mod load;
pub(crate) mod outbound_bench;
pub(crate) mod trigger;

pub(crate) use flags::Flags;
