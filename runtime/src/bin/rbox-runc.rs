fn main() -> std::process::ExitCode {
    rbox_runtime::runc::main()
}
