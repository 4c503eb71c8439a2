//! The `ragd` binary (see the `ragd_cli` library for its commands).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ragd_cli::cli::{BenchCommand, Cli, Command, EvalCommand, TrainCommand};
use ragd_cli::{config_file, ingest_cmd, models_cmd, telemetry};
use ragd_server::serve;

/// mimalloc keeps freed pages for reuse: candle allocates large activation
/// tensors on every forward pass, and with the system allocator each one is a
/// fresh mmap whose pages fault in and are zeroed again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--config FILE`, `--config=FILE` or `RAGD_CONFIG`, read before clap so the
/// file's values can act as defaults of the flags.
fn config_path() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("RAGD_CONFIG").map(PathBuf::from)
}

fn main() -> ExitCode {
    if let Some(path) = config_path() {
        if let Err(e) = config_file::apply_as_env_defaults(&path) {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    let otlp = match &cli.command {
        Command::Serve(args) => args.otlp.config(),
        _ => None,
    };
    // Dropped last: it exports the spans still buffered.
    let _telemetry = match telemetry::init_with_traces(cli.log_format, otlp) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => args.into_config().and_then(|config| {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve::run(config))
        }),
        Command::Models(cmd) => models_cmd::run(cmd),
        Command::Bench(BenchCommand::Embed(args)) => ragd_bench::embed::run(args),
        Command::Bench(BenchCommand::Generate(args)) => ragd_bench::generate::run(args),
        Command::Bench(BenchCommand::Node(args)) => ragd_bench::node::run(*args),
        Command::Ingest(args) => ingest_cmd::run_ingest(args),
        Command::Query(args) => ingest_cmd::run_query(args),
        Command::Eval(EvalCommand::Rag(args)) => ragd_bench::eval::rag::run(args),
        Command::Eval(EvalCommand::Guard(args)) => ragd_bench::eval::guard::run(args),
        Command::Train(TrainCommand::Guard(args)) => ragd_bench::train::guard::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
