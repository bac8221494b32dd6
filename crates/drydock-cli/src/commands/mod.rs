//! One module per subcommand.

pub mod gc;
pub mod images;
pub mod releases;
pub mod run;
