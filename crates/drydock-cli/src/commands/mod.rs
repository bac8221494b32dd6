//! One module per subcommand.

pub mod ci;
pub mod deploy;
pub mod gc;
pub mod images;
pub mod releases;
pub mod run;
