fn main() -> std::process::ExitCode {
    rbox_runtime::cli::main()
}
