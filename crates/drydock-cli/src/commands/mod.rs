//! One module per subcommand.

pub mod ci;
pub mod deploy;
pub mod gc;
pub mod images;
pub mod ledger;
pub mod product;
pub mod releases;
pub mod run;
pub mod schema;
pub mod validate;
pub mod watch;
