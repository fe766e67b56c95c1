//! The `rampart` binary.

fn main() -> std::process::ExitCode {
    rampart_server::cli::main()
}
