//! `seed`: sends votes to the vote service. See the library for the design.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = common::config::parse::<seed::Cli>();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("seed: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(seed::main(cli))
}
