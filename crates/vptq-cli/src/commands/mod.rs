//! One module per subcommand, each with its clap `Args` and a `run`.

pub mod bench;
pub mod chat;
pub mod convert;
pub mod fetch;
pub mod generate;
pub mod inspect;
pub mod ppl;
pub mod quantize;
