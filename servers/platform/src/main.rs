//! `corral-server`: see `corral-server --help`.
use clap::Parser;
use corral_server::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.load_config(&corral_server::config::ProcessEnv) {
        Ok(cfg) => {
            print!("{}", cfg.to_toml());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corral-server: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
